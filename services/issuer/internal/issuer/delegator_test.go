package issuer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/subjecttoken"
)

// testSubjectToken stands for a delegator's subject token. The verifier
// of these tests is a stand-in (the real one, against a real identity
// provider, is tested in package subjecttoken and in test/e2e); what is
// tested here is what the issuer does with its answer.
const testSubjectToken = "header.payload.signature-of-alice"

// verifierFunc adapts a function to issuer.SubjectTokenVerifier.
type verifierFunc func(ctx context.Context, token string, typ subjecttoken.TokenType) (*subjecttoken.Result, error)

func (f verifierFunc) Verify(ctx context.Context, token string, typ subjecttoken.TokenType) (*subjecttoken.Result, error) {
	return f(ctx, token, typ)
}

func withVerifier(v issuer.SubjectTokenVerifier) func(*issuer.Config) {
	return func(c *issuer.Config) { c.SubjectTokens = v }
}

// provedAs is a verifier for which testSubjectToken proves d, and every
// other token is forged.
func provedAs(d *identityv1.Delegator) verifierFunc {
	return func(_ context.Context, token string, _ subjecttoken.TokenType) (*subjecttoken.Result, error) {
		if token != testSubjectToken {
			return nil, fmt.Errorf("%w: not signed by a known key", subjecttoken.ErrBadSignature)
		}
		res := &subjecttoken.Result{
			DelegatorID:  d.GetId(),
			Attributes:   map[string]string{},
			Entitlements: d.GetEntitlements(),
			TimeZone:     d.GetTimeZone(),
		}
		for k, v := range d.GetAttributes() {
			res.Attributes[k] = v
		}
		if at := d.GetAuthenticateTime(); at != nil {
			res.AuthenticatedAt = at.AsTime()
		}
		return res, nil
	}
}

// recordingPolicy allows every requested scope and keeps the requests.
type recordingPolicy struct {
	mu   sync.Mutex
	reqs []*policyv1.EvaluateRequest
	// decide, when set, answers instead.
	decide func(*policyv1.EvaluateRequest) *identityv1.Decision
}

func (p *recordingPolicy) evaluate(_ context.Context, r *policyv1.EvaluateRequest) (*identityv1.Decision, error) {
	p.mu.Lock()
	p.reqs = append(p.reqs, r)
	p.mu.Unlock()
	if p.decide != nil {
		return p.decide(r), nil
	}
	return &identityv1.Decision{Allow: true, GrantedScopes: r.Scopes, MaxTtl: durationpb.New(time.Hour), DecisionId: "d-1"}, nil
}

func (p *recordingPolicy) requests() []*policyv1.EvaluateRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*policyv1.EvaluateRequest(nil), p.reqs...)
}

// alice is the delegator the identity provider proves in these tests.
func alice() *identityv1.Delegator {
	return &identityv1.Delegator{
		Id:               "user:alice@example.com",
		Attributes:       map[string]string{"age_verified": "true", "mfa": "true"},
		Entitlements:     []string{"tickets:hold", "tickets:read"},
		TimeZone:         "Europe/Paris",
		AuthenticateTime: timestamppb.New(t0.Add(-2 * time.Minute)),
	}
}

func tokenRequest() *issuer.IssueRequest {
	r := validRequest()
	r.Delegator = nil
	r.SubjectToken, r.SubjectTokenType = testSubjectToken, string(subjecttoken.TypeIDToken)
	return r
}

// A platform that sends no subject token asserts the delegator: policy is
// told so, and sees the platform; what no platform can vouch for (the
// delegator's attributes, its authentication time) is dropped on the way,
// and the credential names who asserted it.
func TestAssertedDelegatorKeepsOnlyWhatAPlatformCanVouchFor(t *testing.T) {
	t.Parallel()
	p := &recordingPolicy{}
	f := newFixture(t, p.evaluate, t0)
	r := validRequest()
	r.Delegator = alice()
	got, err := f.iss.Issue(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	reqs := p.requests()
	if len(reqs) != 1 {
		t.Fatalf("policy asked %d times, want 1", len(reqs))
	}
	want := &identityv1.Delegator{Id: "user:alice@example.com", Entitlements: []string{"tickets:hold", "tickets:read"}, TimeZone: "Europe/Paris"}
	if diff := cmp.Diff(want, reqs[0].GetDelegator(), protocmp.Transform()); diff != "" {
		t.Errorf("delegator policy saw (-want +got):\n%s", diff)
	}
	if !reqs[0].GetDelegatorAsserted() || reqs[0].GetPlatform() != testPlatform {
		t.Errorf("policy saw delegator_asserted=%v platform=%q, want true and %q", reqs[0].GetDelegatorAsserted(), reqs[0].GetPlatform(), testPlatform)
	}
	if reqs[0].GetDecisionTime() != nil {
		t.Errorf("issuer sent decision_time %v: decision time is policy's clock", reqs[0].GetDecisionTime())
	}
	if got.Credential.AssertedBy != testPlatform {
		t.Errorf("credential asserted_by = %q, want %q", got.Credential.AssertedBy, testPlatform)
	}
	if diff := cmp.Diff(want, got.Credential.Delegator, protocmp.Transform()); diff != "" {
		t.Errorf("credential's delegator (-want +got):\n%s", diff)
	}
	// The request is not changed either.
	if r.Delegator.GetAttributes()["age_verified"] != "true" {
		t.Error("the caller's request was modified")
	}
}

// A platform policy does not let assert delegators gets DELEGATOR_UNPROVEN:
// the denial is recorded as any other, and nothing is issued.
func TestDelegatorUnprovenIsRefused(t *testing.T) {
	t.Parallel()
	p := &recordingPolicy{decide: func(*policyv1.EvaluateRequest) *identityv1.Decision {
		return &identityv1.Decision{DelegatorUnproven: true, Reasons: []string{"platform may not assert delegators"}, DecisionId: "d-7"}
	}}
	f := newFixture(t, p.evaluate, t0)
	_, err := f.iss.Issue(t.Context(), validRequest())
	if !errors.Is(err, issuer.ErrDelegatorUnproven) || !errors.Is(err, issuer.ErrDenied) {
		t.Fatalf("Issue() = %v, want ErrDelegatorUnproven", err)
	}
	n, evs := f.store.snapshot()
	if n != 0 || len(evs) != 1 || evs[0].GetType() != eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED || !evs[0].GetDecision().GetDelegatorUnproven() {
		t.Errorf("store holds %d credentials and events %v, want one denied event", n, evs)
	}

	// An ordinary denial is not unproven.
	p2 := &recordingPolicy{decide: func(*policyv1.EvaluateRequest) *identityv1.Decision {
		return &identityv1.Decision{Reasons: []string{"no"}}
	}}
	f2 := newFixture(t, p2.evaluate, t0)
	if _, err := f2.iss.Issue(t.Context(), validRequest()); !errors.Is(err, issuer.ErrDenied) || errors.Is(err, issuer.ErrDelegatorUnproven) {
		t.Errorf("Issue() = %v, want a denial that is not ErrDelegatorUnproven", err)
	}
}

// With a subject token the delegator is the token's: policy, the
// credential and its events carry the verified claims, the delegator is
// not asserted, and no scope outside the token's entitlements is granted,
// whatever policy says.
func TestDelegatorFromTheTokenReachesTheCredential(t *testing.T) {
	t.Parallel()
	p := &recordingPolicy{decide: func(*policyv1.EvaluateRequest) *identityv1.Decision {
		return &identityv1.Decision{Allow: true, GrantedScopes: []string{"tickets:hold", "tickets:buy"}, DecisionId: "d-1"}
	}}
	f := newFixture(t, p.evaluate, t0, withVerifier(provedAs(alice())))
	r := tokenRequest()
	r.Scopes = []string{"tickets:hold", "tickets:buy"}
	got, err := f.iss.Issue(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	reqs := p.requests()
	if len(reqs) != 1 {
		t.Fatalf("policy asked %d times, want 1", len(reqs))
	}
	if diff := cmp.Diff(alice(), reqs[0].GetDelegator(), protocmp.Transform()); diff != "" {
		t.Errorf("delegator policy saw (-want +got):\n%s", diff)
	}
	if reqs[0].GetDelegatorAsserted() || reqs[0].GetPlatform() != testPlatform {
		t.Errorf("policy saw delegator_asserted=%v platform=%q, want false and %q", reqs[0].GetDelegatorAsserted(), reqs[0].GetPlatform(), testPlatform)
	}
	if diff := cmp.Diff(alice(), got.Credential.Delegator, protocmp.Transform()); diff != "" {
		t.Errorf("credential's delegator (-want +got):\n%s", diff)
	}
	if got.Credential.AssertedBy != "" {
		t.Errorf("credential asserted_by = %q, want empty: the token proved the delegator", got.Credential.AssertedBy)
	}
	if diff := cmp.Diff([]string{"tickets:hold"}, got.Credential.Scopes); diff != "" {
		t.Errorf("scopes (-want +got), tickets:buy is not in the token's entitlements:\n%s", diff)
	}
	_, evs := f.store.snapshot()
	for _, ev := range evs {
		if diff := cmp.Diff(alice(), ev.GetDelegator(), protocmp.Transform()); diff != "" {
			t.Errorf("%v event's delegator (-want +got):\n%s", ev.GetType(), diff)
		}
	}
	assertNoToken(t, testSubjectToken, evs)
}

// A request field that disagrees with the token, or an attribute the token
// does not carry, is refused before policy is asked.
func TestDelegatorThatDisagreesWithTheTokenIsInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		delegator *identityv1.Delegator
		field     string
	}{
		{"another id", &identityv1.Delegator{Id: "user:ceo@example.com"}, "delegator.id"},
		{"an attribute the token lacks", &identityv1.Delegator{Id: "user:alice@example.com", Attributes: map[string]string{"clearance": "top"}}, "delegator.attributes.clearance"},
		{"another attribute value", &identityv1.Delegator{Id: "user:alice@example.com", Attributes: map[string]string{"age_verified": "false"}}, "delegator.attributes.age_verified"},
		{"more entitlements", &identityv1.Delegator{Id: "user:alice@example.com", Entitlements: []string{"tickets:hold", "tickets:read", "admin:*"}}, "delegator.entitlements"},
		{"another time zone", &identityv1.Delegator{Id: "user:alice@example.com", TimeZone: "Asia/Tokyo"}, "delegator.time_zone"},
		{"a later authentication", &identityv1.Delegator{Id: "user:alice@example.com", AuthenticateTime: timestamppb.New(t0)}, "delegator.authenticate_time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := &recordingPolicy{}
			f := newFixture(t, p.evaluate, t0, withVerifier(provedAs(alice())))
			r := tokenRequest()
			r.Delegator = tt.delegator
			_, err := f.iss.Issue(t.Context(), r)
			var ia *issuer.InvalidArgumentError
			if !errors.As(err, &ia) || ia.Field != tt.field {
				t.Fatalf("Issue() = %v, want an invalid %s", err, tt.field)
			}
			if len(p.requests()) != 0 {
				t.Error("policy was asked")
			}
		})
	}

	// Fields that agree are accepted.
	p := &recordingPolicy{}
	f := newFixture(t, p.evaluate, t0, withVerifier(provedAs(alice())))
	r := tokenRequest()
	r.Delegator = &identityv1.Delegator{Id: "user:alice@example.com", Attributes: map[string]string{"age_verified": "true"}, TimeZone: "Europe/Paris"}
	if _, err := f.iss.Issue(t.Context(), r); err != nil {
		t.Errorf("Issue() with agreeing fields = %v", err)
	}
}

// Every way a token can fail maps to one domain error; none holds the token,
// and policy is never asked.
func TestSubjectTokenRefusals(t *testing.T) {
	t.Parallel()
	failing := func(err error) issuer.SubjectTokenVerifier {
		return verifierFunc(func(context.Context, string, subjecttoken.TokenType) (*subjecttoken.Result, error) {
			return nil, fmt.Errorf("%w: detail", err)
		})
	}
	tests := []struct {
		name     string
		verifier issuer.SubjectTokenVerifier
		want     error
	}{
		{"forged", failing(subjecttoken.ErrBadSignature), subjecttoken.ErrBadSignature},
		{"expired", failing(subjecttoken.ErrExpired), subjecttoken.ErrExpired},
		{"wrong audience", failing(subjecttoken.ErrWrongAudience), subjecttoken.ErrWrongAudience},
		{"future auth_time", failing(subjecttoken.ErrFutureAuthTime), subjecttoken.ErrFutureAuthTime},
		{"untrusted issuer", failing(subjecttoken.ErrUntrustedIssuer), subjecttoken.ErrUntrustedIssuer},
		{"too old", failing(subjecttoken.ErrTooOld), subjecttoken.ErrTooOld},
		{"malformed", failing(subjecttoken.ErrMalformed), subjecttoken.ErrMalformed},
		{"provider down", failing(subjecttoken.ErrProviderUnavailable), issuer.ErrIdentityProviderUnavailable},
		{"type not trusted", failing(subjecttoken.ErrUnsupportedType), issuer.ErrInvalidArgument},
		{"no provider trusted", nil, issuer.ErrSubjectTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := &recordingPolicy{}
			f := newFixture(t, p.evaluate, t0, withVerifier(tt.verifier))
			if tt.verifier == nil {
				f = newFixture(t, p.evaluate, t0)
			}
			_, err := f.iss.Issue(t.Context(), tokenRequest())
			if !errors.Is(err, tt.want) {
				t.Fatalf("Issue() = %v, want %v", err, tt.want)
			}
			if errors.Is(tt.want, subjecttoken.ErrBadSignature) && !errors.Is(err, issuer.ErrSubjectTokenInvalid) {
				t.Errorf("Issue() = %v, want ErrSubjectTokenInvalid", err)
			}
			if strings.Contains(err.Error(), testSubjectToken) {
				t.Errorf("error %q holds the token", err)
			}
			if len(p.requests()) != 0 {
				t.Error("policy was asked")
			}
			if n, evs := f.store.snapshot(); n != 0 || len(evs) != 0 {
				t.Errorf("store holds %d credentials, %d events; want none", n, len(evs))
			}
		})
	}
}

// A request without a caller gets nothing; a subject token needs its type.
func TestIssueNeedsACallerAndATokenType(t *testing.T) {
	t.Parallel()
	p := &recordingPolicy{}
	f := newFixture(t, p.evaluate, t0, withVerifier(provedAs(alice())))
	r := validRequest()
	r.Caller = ""
	if _, err := f.iss.Issue(t.Context(), r); !errors.Is(err, issuer.ErrUnauthenticated) {
		t.Errorf("Issue() without a caller = %v, want ErrUnauthenticated", err)
	}
	r = tokenRequest()
	r.SubjectTokenType = ""
	var ia *issuer.InvalidArgumentError
	if _, err := f.iss.Issue(t.Context(), r); !errors.As(err, &ia) || ia.Field != "subject_token_type" {
		t.Errorf("Issue() without a token type = %v, want an invalid subject_token_type", err)
	}
	if len(p.requests()) != 0 {
		t.Error("policy was asked")
	}
}
