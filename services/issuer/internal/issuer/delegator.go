package issuer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/issuer/internal/subjecttoken"
)

// SubjectTokenVerifier verifies a delegator's subject token (RFC 8693) and
// maps its claims; *subjecttoken.Verifier implements it.
type SubjectTokenVerifier interface {
	Verify(ctx context.Context, token string, typ subjecttoken.TokenType) (*subjecttoken.Result, error)
}

// subjectTokenRefusals are the subjecttoken sentinels that say the token
// itself is refused, in the order their messages are preferred. Their text
// names what failed, never the token.
var subjectTokenRefusals = []error{
	subjecttoken.ErrMalformed,
	subjecttoken.ErrTypeMismatch,
	subjecttoken.ErrUntrustedIssuer,
	subjecttoken.ErrBadSignature,
	subjecttoken.ErrExpired,
	subjecttoken.ErrNotYetValid,
	subjecttoken.ErrWrongAudience,
	subjecttoken.ErrFutureAuthTime,
	subjecttoken.ErrTooOld,
	subjecttoken.ErrClaimMissing,
	subjecttoken.ErrInvalidClaim,
}

// SubjectTokenError says why a delegator's subject token was refused. Its
// text is the refusal's kind (expired, wrong audience, …); it never holds
// the token nor the provider's answer.
type SubjectTokenError struct {
	// Kind is the subjecttoken sentinel that refused the token, or nil
	// when no identity provider is trusted at all.
	Kind error
}

func (e *SubjectTokenError) Error() string {
	if e.Kind == nil {
		return "subject_token refused: this issuer trusts no identity provider (-idp-config)"
	}
	return "subject_token refused: " + e.Kind.Error()
}

// Is makes errors.Is(err, ErrSubjectTokenInvalid) true, and errors.Is with
// the subjecttoken sentinel that refused the token.
func (e *SubjectTokenError) Is(target error) bool {
	return target == ErrSubjectTokenInvalid || (e.Kind != nil && target == e.Kind)
}

// provenDelegator is the delegator a request is decided and issued for.
type provenDelegator struct {
	delegator *identityv1.Delegator
	// assertedBy is the caller when it vouches for the delegator without a
	// token; empty when a token proved it.
	assertedBy string
	// held, when not nil, are the scopes the token says the delegator
	// holds: the issuer grants no scope outside them, whatever policy says.
	held []string
}

// delegator works out whom r is for. With a subject token, the delegator's
// id, attributes, entitlements, time zone and authentication time are the
// token's verified claims, and a request field that disagrees with them is
// refused. Without one, the caller asserts the delegator: its id,
// entitlements and time zone are kept, but not its attributes nor its
// authentication time, which no platform can vouch for (age_verified, an
// MFA time); policy must then permit the caller to assert.
func (s *Issuer) delegator(ctx context.Context, r *IssueRequest) (*provenDelegator, error) {
	if r.SubjectToken == "" {
		d := r.Delegator
		return &provenDelegator{
			delegator: &identityv1.Delegator{
				Id:           d.GetId(),
				Entitlements: slices.Clone(d.GetEntitlements()),
				TimeZone:     d.GetTimeZone(),
			},
			assertedBy: r.Caller,
		}, nil
	}
	if s.cfg.SubjectTokens == nil {
		return nil, &SubjectTokenError{}
	}
	res, err := s.cfg.SubjectTokens.Verify(ctx, r.SubjectToken, subjecttoken.TokenType(r.SubjectTokenType))
	if err != nil {
		return nil, subjectTokenErr(err)
	}
	asserted := subjecttoken.Asserted{
		ID:           r.Delegator.GetId(),
		Attributes:   r.Delegator.GetAttributes(),
		Entitlements: r.Delegator.GetEntitlements(),
		TimeZone:     r.Delegator.GetTimeZone(),
	}
	if at := r.Delegator.GetAuthenticateTime(); at != nil {
		asserted.AuthenticatedAt = at.AsTime()
	}
	if err := subjecttoken.CheckAsserted(asserted, res); err != nil {
		var ae *subjecttoken.AssertionError
		if errors.As(err, &ae) {
			field := "delegator." + ae.Field
			if ae.Field == "authenticated_at" {
				field = "delegator.authenticate_time"
			}
			if ae.Unproven {
				return nil, invalid(field, "is not in the subject token: a request cannot add what its token does not prove")
			}
			return nil, invalid(field, "disagrees with the subject token: leave it out or send the token's value")
		}
		return nil, err
	}
	return &provenDelegator{
		delegator: &identityv1.Delegator{
			Id:               res.DelegatorID,
			Attributes:       maps.Clone(res.Attributes),
			Entitlements:     slices.Clone(res.Entitlements),
			TimeZone:         res.TimeZone,
			AuthenticateTime: timestamppb.New(res.AuthenticatedAt),
		},
		held: res.Entitlements,
	}, nil
}

// subjectTokenErr is the domain error for a failed verification: the
// provider unreachable (ErrIdentityProviderUnavailable), a type the issuer
// does not take (*InvalidArgumentError), or the token refused
// (*SubjectTokenError). The cause is kept only as its kind.
func subjectTokenErr(err error) error {
	switch {
	case errors.Is(err, subjecttoken.ErrProviderUnavailable):
		return fmt.Errorf("%w: %v", ErrIdentityProviderUnavailable, err) //nolint:errorlint // the sentinel is what callers match; the cause is detail, kept out of errors.As and status.FromError
	case errors.Is(err, subjecttoken.ErrUnsupportedType):
		return invalid("subject_token_type", "is not a type the token's identity provider is trusted for")
	}
	for _, kind := range subjectTokenRefusals {
		if errors.Is(err, kind) {
			return &SubjectTokenError{Kind: kind}
		}
	}
	return &SubjectTokenError{Kind: subjecttoken.ErrMalformed}
}
