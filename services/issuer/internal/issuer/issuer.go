// Package issuer is the domain of the issuer service: it validates a
// request, asks policy for a decision, mints a task-scoped credential whose
// life is the shortest of every bound, and keeps the credential's lifecycle
// (introspection, revocation, task completion) with one event per state
// change. It knows nothing of gRPC, Redis or NATS: policy, storage and
// signing come in through the small interfaces below.
package issuer

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"

	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
)

// decider is the policy decision point.
type decider interface {
	// Evaluate returns the decision for req. Any error means no decision.
	Evaluate(ctx context.Context, req *policyv1.EvaluateRequest) (*identityv1.Decision, error)
}

// signer mints and checks tokens. Package signing implements it.
type signer interface {
	// Sign returns the signed token of c.
	Sign(c *Credential) (string, error)
	// Verify checks a token offline (signature, algorithm, type, key,
	// issuer, validity window) and returns the credential it describes.
	Verify(token string) (*Credential, error)
	// CheckProof checks the DPoP proof (RFC 9449) presented with token, a
	// credential bound to the key whose thumbprint is c.CnfJKT.
	CheckProof(token string, c *Credential, p Proof) error
	// JWKS returns the JSON Web Key Set of the public keys.
	JWKS() []byte
}

// IDSource returns a new unique id, used for credential ids (jti) and event ids.
type IDSource func() string

// NewUUIDv7 returns a UUID version 7: unique and ordered by time, so that
// ids sort in the order events happened.
func NewUUIDv7() string { return uuid.Must(uuid.NewV7()).String() }

// Config configures an Issuer.
type Config struct {
	// Issuer is the "iss" of every credential. Required.
	Issuer string
	// DefaultAudience is the "aud" when a request names none. Required.
	DefaultAudience string
	// MaxTTL caps every credential's life, whatever policy allows. Required.
	MaxTTL time.Duration
	// Clock is time.Now when nil.
	Clock func() time.Time
	// Logger is slog.Default() when nil.
	Logger *slog.Logger
	// NewID makes credential ids (jti) and event ids; NewUUIDv7 when nil.
	NewID IDSource
	// MaxChainDepth is how many agents may stand above a sub-agent (1: a
	// credential issued directly may be exchanged once, its child not
	// again); DefaultMaxChainDepth when zero.
	MaxChainDepth int
	// RecentAuthentication is how recent the delegator's authentication must
	// be for the mfa_recent obligation; DefaultRecentAuthentication when zero.
	RecentAuthentication time.Duration
	// Admins are the callers that may act on every platform's credentials
	// and tasks: list, revoke (by agent or delegator across platforms),
	// complete and introspect.
	Admins []string
	// ResourceServers maps an audience to the callers that serve it, besides
	// a caller whose id is the audience itself: they may introspect the
	// credentials issued for that audience (RFC 7662 §4).
	ResourceServers map[string][]string
	// Self is the caller named by the events the issuer causes on its own
	// (expired): its SPIFFE ID on TLS; DefaultSelf when empty.
	Self string
	// SubjectTokens verifies the delegators' subject tokens; nil when no
	// identity provider is trusted, and then a request with a subject token
	// is refused (ErrSubjectTokenInvalid).
	SubjectTokens SubjectTokenVerifier
}

// DefaultSelf is Config.Self when empty.
const DefaultSelf = "issuer"

// DefaultMaxChainDepth is Config.MaxChainDepth when zero.
const DefaultMaxChainDepth = 4

// Proof is a DPoP proof (RFC 9449) and the request it was made for.
type Proof struct {
	JWT    string
	Method string
	URI    string
}

// Issuer issues credentials and keeps their lifecycle.
type Issuer struct {
	cfg    Config
	policy decider
	store  store
	signer signer
	now    func() time.Time
	newID  IDSource
	log    *slog.Logger
}

// New returns an Issuer. It fails when a required setting is missing.
func New(cfg Config, policy decider, st store, sg signer) (*Issuer, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("issuer: Config.Issuer is required")
	case cfg.DefaultAudience == "":
		return nil, errors.New("issuer: Config.DefaultAudience is required")
	case cfg.MaxTTL <= 0:
		return nil, errors.New("issuer: Config.MaxTTL must be positive")
	case cfg.MaxChainDepth < 0:
		return nil, errors.New("issuer: Config.MaxChainDepth must not be negative")
	case policy == nil || st == nil || sg == nil:
		return nil, errors.New("issuer: policy, store and signer are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxChainDepth == 0 {
		cfg.MaxChainDepth = DefaultMaxChainDepth
	}
	if cfg.NewID == nil {
		cfg.NewID = NewUUIDv7
	}
	if cfg.Self == "" {
		cfg.Self = DefaultSelf
	}
	return &Issuer{
		cfg:    cfg,
		policy: policy,
		store:  st,
		signer: sg,
		now:    cfg.Clock,
		newID:  cfg.NewID,
		log:    cfg.Logger,
	}, nil
}

// IssuerName returns the "iss" of the credentials.
func (s *Issuer) IssuerName() string { return s.cfg.Issuer }

// MaxTTL returns the ceiling on any credential's life.
func (s *Issuer) MaxTTL() time.Duration { return s.cfg.MaxTTL }

// SigningKeys returns the JSON Web Key Set that verifies credentials.
func (s *Issuer) SigningKeys() []byte { return s.signer.JWKS() }
