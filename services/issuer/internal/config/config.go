// Package config is the issuer's configuration: one typed Config, read from
// flags and JITID_* environment variables (docs/configuration.md) and
// validated once, before anything starts.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jitid/jitid/pkg/mtls"
	"github.com/jitid/jitid/pkg/servicecmd"
	"github.com/jitid/jitid/pkg/storeauth"
	"github.com/jitid/jitid/services/issuer/internal/subjecttoken"
)

// ErrInvalid is wrapped by every error that reports a setting that cannot
// work.
var ErrInvalid = servicecmd.ErrInvalid

// Config is everything the issuer binary is told.
type Config struct {
	// Common to every service: addresses, pprof, logging.
	servicecmd.Common

	// Redis.
	RedisAddrs    []string // several for Redis Cluster
	RedisUsername string   // ACL user; "default" when empty
	// RedisPasswordFile holds the Redis password: a flag or variable would
	// show it in ps or /proc/<pid>/environ.
	RedisPasswordFile string
	RedisTLS          storeauth.TLSFiles
	KeyPrefix         string
	Shards            int

	// NATS JetStream.
	NATSURL       string
	Stream        string
	SubjectPrefix string
	// NATS credentials and TLS.
	NATSAuth storeauth.NATS

	// Policy.
	PolicyAddr    string
	PolicyTimeout time.Duration
	// PolicyID is the allow-list of the policy service's SPIFFE IDs (or
	// trust domains) the issuer talks to over mTLS; required with TLS.
	PolicyID []string

	// Credentials.
	Issuer          string
	DefaultAudience string
	KeyDir          string // empty: a generated development key
	MaxTTL          time.Duration
	SweepInterval   time.Duration
	// Key rotation: a key that appears in KeyDir is published KeyPublishDelay
	// before it signs; the directory is read every KeyPollInterval.
	KeyPublishDelay time.Duration
	KeyPollInterval time.Duration
	// MaxChainDepth is how many agents may stand above a sub-agent.
	MaxChainDepth int

	// Discovery: PublicURL is where /.well-known/* is reachable (the issuer
	// when empty), PublicGRPCURL the gRPC API (grpc://<grpc-addr> when
	// empty), PublicHTTPAddr a listener serving only /.well-known/* (the
	// admin server serves them too).
	PublicURL      string
	PublicGRPCURL  string
	PublicHTTPAddr string
	// RedisCheckInterval is how often Redis is pinged for the health status.
	RedisCheckInterval time.Duration

	// Authorization by caller. ResourceServers maps an audience to the
	// callers that may introspect its credentials besides a caller whose
	// id is the audience (-resource-servers aud=id,...). DelegatorQuota is
	// how many live credentials one delegator may hold; 0 turns it off.
	ResourceServers map[string][]string
	DelegatorQuota  int
	// IDPConfig is the -idp-config file (IDPFile) naming the identity
	// providers whose subject tokens prove delegators; empty: none is
	// trusted, and every delegator must be asserted by its platform.
	IDPConfig string
	// SubjectTokens is IDPConfig's content, read and checked by Load; nil
	// without IDPConfig.
	SubjectTokens *subjecttoken.Config
}

// DefaultDelegatorQuota is -delegator-quota's default.
const DefaultDelegatorQuota = 100

// JWKSMaxAge is the Cache-Control max-age of /.well-known/jwks.json
// (wellknown.JWKSMaxAge, repeated here to keep config free of HTTP): the
// publish delay must cover it.
const JWKSMaxAge = time.Minute

// Load parses args (without the program name) and the environment, looked
// up with lookupEnv (os.LookupEnv when nil), and validates the result,
// reporting every bad setting at once (errors wrap ErrInvalid). -help
// prints the flags to output and returns flag.ErrHelp; -version returns
// servicecmd.ErrVersion.
func Load(args []string, lookupEnv func(string) (string, bool), output io.Writer) (Config, error) {
	var (
		c         Config
		redisAddr string
	)
	fs := flag.NewFlagSet("issuer", flag.ContinueOnError)
	if output != nil {
		fs.SetOutput(output)
	}
	common := servicecmd.AddFlags(fs, &c.Common, "127.0.0.1:50051", "127.0.0.1:9091")
	fs.StringVar(&redisAddr, "redis-addr", "127.0.0.1:6379", "Redis address; several, comma separated, for Redis Cluster")
	fs.StringVar(&c.RedisUsername, "redis-username", "", "Redis ACL user, with -redis-password-file")
	fs.StringVar(&c.RedisPasswordFile, "redis-password-file", "", "file holding the Redis password (mode 0600)")
	fs.StringVar(&c.RedisTLS.CA, "redis-tls-ca", "", "PEM CA certificates the Redis server is verified against; turns on TLS")
	fs.StringVar(&c.RedisTLS.Cert, "redis-tls-cert", "", "PEM client certificate for Redis, with -redis-tls-key")
	fs.StringVar(&c.RedisTLS.Key, "redis-tls-key", "", "PEM private key of -redis-tls-cert (mode 0600)")
	fs.StringVar(&c.KeyPrefix, "key-prefix", "jitid", "first part of every Redis key")
	fs.IntVar(&c.Shards, "shards", 16, "hash-tag shards; fixed for the life of a deployment")
	fs.StringVar(&c.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server(s) with JetStream")
	fs.StringVar(&c.Stream, "stream", "JITID_EVENTS", "JetStream stream of lifecycle events")
	fs.StringVar(&c.SubjectPrefix, "subject-prefix", "jitid.events", "subjects are <prefix>.credential.issued, …")
	c.NATSAuth.AddFlags(fs)
	fs.StringVar(&c.PolicyAddr, "policy-addr", "127.0.0.1:50052", "policy service address")
	fs.Func("policy-id", "comma-separated SPIFFE IDs (or trust domains) the policy service may present over mTLS; required with TLS", func(v string) error {
		c.PolicyID = servicecmd.SplitList(v)
		return nil
	})
	fs.DurationVar(&c.PolicyTimeout, "policy-timeout", 500*time.Millisecond, "deadline of a policy call; past it the issuer refuses (UNAVAILABLE)")
	fs.StringVar(&c.Issuer, "issuer", "https://jitid.local", "the iss of every credential")
	fs.StringVar(&c.DefaultAudience, "default-audience", "jitid", "aud when a request names none")
	fs.StringVar(&c.KeyDir, "key-dir", "", "directory of signing keys (PEM or JWK); a development key is generated when empty")
	fs.DurationVar(&c.MaxTTL, "max-ttl", time.Hour, "no credential lives longer, whatever policy allows; revocation marks are kept this long plus 5m")
	fs.DurationVar(&c.SweepInterval, "sweep-interval", 500*time.Millisecond, "how often expired credentials are swept and reported")
	fs.DurationVar(&c.KeyPublishDelay, "key-publish-delay", 5*time.Minute, "a key added to -key-dir is published this long before it signs (at least the JWKS max-age, 60s, plus -key-poll-interval)")
	fs.DurationVar(&c.KeyPollInterval, "key-poll-interval", 10*time.Second, "how often -key-dir is read again")
	fs.IntVar(&c.MaxChainDepth, "max-chain-depth", 4, "how many agents may stand above a sub-agent (ExchangeCredential)")
	fs.StringVar(&c.PublicURL, "public-url", "", "base URL of /.well-known/jwks.json and /.well-known/oauth-authorization-server; -issuer when empty")
	fs.StringVar(&c.PublicGRPCURL, "public-grpc-url", "", "the gRPC API as clients reach it, named in the metadata; grpc://<grpc-addr> when empty")
	fs.StringVar(&c.PublicHTTPAddr, "public-http-addr", "", "listener serving only /.well-known/*; empty: only the admin server serves them")
	fs.DurationVar(&c.RedisCheckInterval, "redis-check-interval", time.Second, "how often Redis is pinged; IssuerService health is NOT_SERVING while it does not answer")
	fs.Func("resource-servers", "comma-separated audience=caller pairs: the caller (a SPIFFE ID) may introspect credentials of that audience, besides a caller whose id is the audience; e.g. tickets-api=spiffe://acme.example/rs/tickets", func(v string) error {
		rs, err := ParseResourceServers(v)
		if err != nil {
			return err
		}
		c.ResourceServers = rs
		return nil
	})
	fs.IntVar(&c.DelegatorQuota, "delegator-quota", DefaultDelegatorQuota, "live credentials one delegator may hold at once, across tasks and platforms; past it RESOURCE_EXHAUSTED with RetryInfo; 0 turns the quota off")
	fs.StringVar(&c.IDPConfig, "idp-config", "", "JSON file of the identity providers whose subject tokens prove delegators (docs/configuration.md); none trusted when empty")
	if err := common.Parse(args, lookupEnv); err != nil {
		return Config{}, err
	}
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	// The variable that used to hold the password is refused rather than
	// ignored: an operator who still sets it would get an issuer that
	// cannot log in, and the password would stay in its environment.
	var envErrs []error
	if _, set := lookupEnv(RemovedPasswordEnv); set {
		envErrs = append(envErrs, fmt.Errorf("%w: %s is no longer read (the environment shows in /proc/<pid>/environ): put the password in a file readable only by the issuer and pass -redis-password-file", ErrInvalid, RemovedPasswordEnv))
	}
	for _, a := range strings.Split(redisAddr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.RedisAddrs = append(c.RedisAddrs, a)
		}
	}
	if c.PublicURL == "" {
		c.PublicURL = c.Issuer
	}
	if c.PublicGRPCURL == "" {
		c.PublicGRPCURL = "grpc://" + c.GRPCAddr
	}
	if c.IDPConfig != "" {
		st, err := LoadIDPConfig(c.IDPConfig)
		if err != nil {
			for _, e := range unjoin(err) {
				envErrs = append(envErrs, servicecmd.Invalid("idp-config", "%s: %v", c.IDPConfig, e))
			}
		} else {
			c.SubjectTokens = &st
		}
	}
	if err := errors.Join(append(append(envErrs, common.Errors()...), c.validate()...)...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// unjoin returns the errors err joins, one per line of the report.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok { //nolint:errorlint // a joined error's parts, not a chain to search
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// RemovedPasswordEnv is the variable that held the Redis password before it
// moved to -redis-password-file; Load refuses it.
const RemovedPasswordEnv = "JITID_REDIS_PASSWORD" //nolint:gosec // G101: the name of a variable that is refused, not a credential

// Validate reports every setting that cannot work, all at once.
func (c Config) Validate() error {
	return errors.Join(append(c.Common.Validate(), c.validate()...)...)
}

// validate returns the problems of the issuer's own settings.
func (c Config) validate() []error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, servicecmd.Invalid(flag, format, args...))
	}
	hostPort := func(flag, addr string) {
		if err := servicecmd.CheckHostPort(flag, addr); err != nil {
			errs = append(errs, err)
		}
	}
	positive := func(flag string, d time.Duration) {
		if d <= 0 {
			bad(flag, "must be positive, got %v", d)
		}
	}

	if len(c.RedisAddrs) == 0 {
		bad("redis-addr", "is required")
	}
	for _, a := range c.RedisAddrs {
		hostPort("redis-addr", a)
	}
	if c.KeyPrefix == "" || strings.ContainsAny(c.KeyPrefix, "{} ") {
		bad("key-prefix", "%q: want a non-empty prefix without braces or spaces", c.KeyPrefix)
	}
	if c.RedisUsername != "" && c.RedisPasswordFile == "" {
		bad("redis-username", "needs -redis-password-file")
	}
	errs = append(errs, c.RedisTLS.Validate("redis")...)
	errs = append(errs, c.NATSAuth.Validate()...)
	if c.Shards < 1 {
		bad("shards", "must be at least 1, got %d", c.Shards)
	}
	if c.NATSURL == "" {
		bad("nats-url", "is required")
	}
	if c.Stream == "" || strings.ContainsAny(c.Stream, ". *>") {
		bad("stream", "%q: want a stream name without '.', '*', '>' or spaces", c.Stream)
	}
	if c.SubjectPrefix == "" || strings.ContainsAny(c.SubjectPrefix, " *>") {
		bad("subject-prefix", "%q: want a subject without wildcards or spaces", c.SubjectPrefix)
	}
	if c.PolicyAddr == "" {
		bad("policy-addr", "is required")
	}
	switch {
	case !c.TLSEnabled() && len(c.PolicyID) > 0:
		bad("policy-id", "needs TLS (-tls-cert, -tls-key, -tls-bundle or -spiffe-socket)")
	case c.TLSEnabled():
		if _, err := mtls.ParseAllowList(c.PolicyID); err != nil {
			bad("policy-id", "%v", err)
		}
	}
	positive("policy-timeout", c.PolicyTimeout)
	if c.Issuer == "" {
		bad("issuer", "is required")
	}
	if c.DefaultAudience == "" {
		bad("default-audience", "is required")
	}
	positive("max-ttl", c.MaxTTL)
	positive("sweep-interval", c.SweepInterval)
	positive("key-poll-interval", c.KeyPollInterval)
	if minDelay := JWKSMaxAge + c.KeyPollInterval; c.KeyPublishDelay < minDelay {
		bad("key-publish-delay", "%v is shorter than the JWKS max-age (%v) plus -key-poll-interval: verifiers could meet a token before its key", c.KeyPublishDelay, JWKSMaxAge)
	}
	if c.MaxChainDepth < 1 {
		bad("max-chain-depth", "must be at least 1, got %d", c.MaxChainDepth)
	}
	for _, u := range []struct{ flag, v string }{{"public-url", c.PublicURL}, {"public-grpc-url", c.PublicGRPCURL}} {
		if p, err := url.Parse(u.v); err != nil || p.Scheme == "" || p.Host == "" {
			bad(u.flag, "%q is not an absolute URL", u.v)
		}
	}
	if c.PublicHTTPAddr != "" {
		hostPort("public-http-addr", c.PublicHTTPAddr)
	}
	positive("redis-check-interval", c.RedisCheckInterval)
	if c.DelegatorQuota < 0 {
		bad("delegator-quota", "must not be negative (0 turns it off), got %d", c.DelegatorQuota)
	}
	return errs
}

// ParseResourceServers parses -resource-servers: comma-separated
// audience=caller pairs; an audience may appear in several.
func ParseResourceServers(v string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, pair := range servicecmd.SplitList(v) {
		aud, caller, ok := strings.Cut(pair, "=")
		aud, caller = strings.TrimSpace(aud), strings.TrimSpace(caller)
		if !ok || aud == "" || caller == "" {
			return nil, fmt.Errorf("%q: want audience=caller", pair)
		}
		out[aud] = append(out[aud], caller)
	}
	return out, nil
}
