package e2e_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/statusreason"
	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
	"github.com/jitid/jitid/testkit/gobin"
	"github.com/jitid/jitid/testkit/launch"
)

// The token types of RFC 8693 the tests send.
const (
	typeIDToken     = "urn:ietf:params:oauth:token-type:id_token"
	typeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
)

// policySetDir is the built-in policy set in this tree, which the e2e
// policy files start from.
const policySetDir = "../../services/policy/policies"

// policyEnforcesAssertion reports whether the policy service of this tree
// judges delegator_asserted (its schema has the field): before it does,
// every platform may assert, and a set naming the assertion action would
// not validate.
func policyEnforcesAssertion(t testing.TB) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(policySetDir, "jitid.cedarschema"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), "delegator_asserted")
}

// assertionPolicyArgs are the policy service flags of a set that is the
// built-in one plus a permit, for each platform, to assert delegators
// without a subject token. It is the one place the e2e tests write Cedar
// for the assertion check; nil while the policy service does not judge
// assertions (policyEnforcesAssertion).
func assertionPolicyArgs(t testing.TB, platforms []string) []string {
	t.Helper()
	if !policyEnforcesAssertion(t) {
		return nil
	}
	dir := t.TempDir()
	entries, err := os.ReadDir(policySetDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, ".cedar") || strings.HasSuffix(name, ".cedarschema") || strings.HasSuffix(name, ".yaml")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(policySetDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var cedar strings.Builder
	for i, p := range platforms {
		fmt.Fprintf(&cedar, `@id("e2e-platform-may-assert-%d")
permit (principal == Jitid::Platform::%q, action == Jitid::Action::"delegator:assert", resource is Jitid::Delegator);
`, i, p)
	}
	if err := os.WriteFile(filepath.Join(dir, "e2e-assert.cedar"), []byte(cedar.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"-policy-file", dir}
}

// idpUsers are the demo provider's users of these tests: alice is in
// finance, signed in with a second factor and is age verified; the others
// get tokens a relying party must refuse.
const idpUsers = `{"users": [
 {"id": "alice@example.com", "client_id": "alice", "client_secret": "alice-secret", "audience": ["jitid"],
  "groups": ["finance", "staff"], "amr": ["pwd", "otp"], "auth_age": "1m", "zoneinfo": "Europe/Paris",
  "claims": {"age_verified": true}},
 {"id": "stale@example.com", "client_id": "stale", "client_secret": "stale-secret", "audience": ["jitid"],
  "groups": ["staff"], "token_lifetime": "-10m"},
 {"id": "future@example.com", "client_id": "future", "client_secret": "future-secret", "audience": ["jitid"],
  "groups": ["staff"], "auth_age": "-1h"},
 {"id": "elsewhere@example.com", "client_id": "elsewhere", "client_secret": "elsewhere-secret", "audience": ["another-api"],
  "groups": ["staff"]}
]}`

// idp is a running jitid-idp process: a real OpenID Provider, with
// discovery, JWKS and token endpoints over HTTP.
type idp struct {
	url  string
	proc *launch.Process
}

// startIDP builds and starts the demo OpenID Provider on a port the kernel
// chooses and reads its address from its serving line.
func startIDP(t testing.TB) *idp {
	t.Helper()
	bin := gobin.Build(t, gobin.Target{Module: "github.com/jitid/jitid/dev", Package: "./cmd/jitid-idp"})
	dir := t.TempDir()
	users := filepath.Join(dir, "users.json")
	if err := os.WriteFile(users, []byte(idpUsers), 0o600); err != nil {
		t.Fatal(err)
	}
	p := launch.ForTest(t, launch.Spec{
		Name: "idp", Path: bin, LogPath: filepath.Join(dir, "idp.log"),
		Args:  []string{"-http", "127.0.0.1:0", "-users", users},
		Ready: launch.LogLine("serving"),
	})
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &idp{url: "http://" + p.Addr("http"), proc: p}
}

// config writes the issuer's -idp-config trusting the provider.
func (p *idp) config(t testing.TB) string {
	t.Helper()
	doc := fmt.Sprintf(`{"providers":[{"issuer":%q,"audiences":["jitid"],"algorithms":["RS256"],
 "token_types":[%q,%q,"urn:ietf:params:oauth:token-type:jwt"],"max_age":"12h",
 "mapping":{"id_claim":"sub","id_prefix":"user:","entitlements_claim":"groups",
  "entitlements":{"finance":["tickets:purchase","payments:read"],"staff":["tickets:read","tickets:hold"]},
  "attributes":{"age_verified":"age_verified"},"mfa_attribute":"mfa","zoneinfo_claim":"zoneinfo"}}],
 "leeway":"5s","max_age":"12h"}`, p.url, typeIDToken, typeAccessToken)
	path := filepath.Join(t.TempDir(), "idp.json")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tokens asks the provider's token endpoint for the user bound to client
// and returns the ID token and the access token.
func (p *idp) tokens(t testing.TB, client string) (idToken, accessToken string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), http.MethodPost, p.url+"/oauth/token",
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {"openid"}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, client+"-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		IDToken     string `json:"id_token"`
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil || out.IDToken == "" {
		t.Fatalf("token endpoint for %s: %d %s", client, resp.StatusCode, body)
	}
	return out.IDToken, out.AccessToken
}

// delegatorStack is a stack whose issuer trusts a real jitid-idp process.
func delegatorStack(t testing.TB, o stackOptions) (*stack, *idp) {
	t.Helper()
	p := startIDP(t)
	o.issuerArgs = append(o.issuerArgs, "-idp-config", p.config(t))
	return startStack(t, o), p
}

// tokenRequest is p's request with its delegator proven by token alone.
func tokenRequest(p party, token, typ string) *issuerv1.IssueCredentialRequest {
	req := p.request()
	req.Delegator = nil
	req.SubjectToken, req.SubjectTokenType = token, typ
	return req
}

// mustStatus stops the test unless err has code and reason.
func mustStatus(t testing.TB, err error, code codes.Code, reason string) {
	t.Helper()
	if status.Code(err) != code || statusreason.Of(err) != reason {
		t.Fatalf("got %v (reason %q), want %v [%s]", err, statusreason.Of(err), code, reason)
	}
}

// A platform that policy does not permit to assert delegators, sending no
// subject token, gets UNAUTHENTICATED DELEGATOR_UNPROVEN and nothing is
// issued; the denial is in the audit trail. Policy permits exactly the
// stack's platform (platformID), not another one of the same trust domain.
func TestNoSubjectTokenIsUnauthenticated(t *testing.T) {
	t.Parallel()
	if !policyEnforcesAssertion(t) {
		t.Skip("the policy service of this tree does not judge delegator_asserted yet")
	}
	s, _ := delegatorStack(t, stackOptions{asserting: []string{platformID}})
	p := s.party("unproven")
	other := s.issuerAs("spiffe://jitid.test/platform/other")
	_, err := other.IssueCredential(ctxTimeout(t, 10*time.Second), p.request())
	mustStatus(t, err, codes.Unauthenticated, statusreason.DelegatorUnproven)
	waitFor(t, 10*time.Second, "the denied event", func() bool {
		recs := s.eventsNow(&auditv1.EventFilter{TaskId: p.task, Types: []eventsv1.EventType{eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED}})
		return len(recs) == 1 && recs[0].GetEvent().GetDecision().GetDelegatorUnproven()
	})
	if keys := s.credKeys(t, "*"); len(keys) != 0 {
		t.Errorf("credentials stored: %v", keys)
	}
	// The platform policy permits asserts the same delegator.
	s.issue(t, s.party("asserted").request())
}

// A token whose payload was changed after the provider signed it (the
// subject swapped for the CEO) is refused, and says nothing of the token.
func TestForgedSubjectTokenIsRefused(t *testing.T) {
	t.Parallel()
	s, p := delegatorStack(t, stackOptions{})
	idToken, _ := p.tokens(t, "alice")
	parts := strings.Split(idToken, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(string(payload), "alice@example.com", "ceo@example.com", 1)
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(forged))
	token := strings.Join(parts, ".")
	_, err = s.issuer.IssueCredential(ctxTimeout(t, 10*time.Second), tokenRequest(s.party("forged"), token, typeIDToken))
	mustStatus(t, err, codes.Unauthenticated, statusreason.SubjectTokenInvalid)
	if strings.Contains(status.Convert(err).Message(), parts[2]) {
		t.Errorf("status message holds the token: %v", err)
	}
	for name, log := range s.processLogs() {
		if containsAny([]byte(log), parts[1], parts[2]) {
			t.Errorf("%s log holds the token", name)
		}
	}
}

// A token past its exp (the provider issued it already expired, beyond
// the issuer's leeway) is refused.
func TestExpiredSubjectTokenIsRefused(t *testing.T) {
	t.Parallel()
	s, p := delegatorStack(t, stackOptions{})
	idToken, accessToken := p.tokens(t, "stale")
	for typ, token := range map[string]string{typeIDToken: idToken, typeAccessToken: accessToken} {
		_, err := s.issuer.IssueCredential(ctxTimeout(t, 10*time.Second), tokenRequest(s.party("expired"), token, typ))
		mustStatus(t, err, codes.Unauthenticated, statusreason.SubjectTokenInvalid)
	}
}

// A token the provider issued for another relying party is refused.
func TestWrongAudienceSubjectTokenIsRefused(t *testing.T) {
	t.Parallel()
	s, p := delegatorStack(t, stackOptions{})
	idToken, accessToken := p.tokens(t, "elsewhere")
	for typ, token := range map[string]string{typeIDToken: idToken, typeAccessToken: accessToken} {
		_, err := s.issuer.IssueCredential(ctxTimeout(t, 10*time.Second), tokenRequest(s.party("audience"), token, typ))
		mustStatus(t, err, codes.Unauthenticated, statusreason.SubjectTokenInvalid)
	}
}

// A token whose auth_time is an hour in the future (a provider that
// misbehaves, or a token made to pass an MFA-recency rule) is refused.
func TestFutureAuthTimeSubjectTokenIsRefused(t *testing.T) {
	t.Parallel()
	s, p := delegatorStack(t, stackOptions{})
	idToken, _ := p.tokens(t, "future")
	_, err := s.issuer.IssueCredential(ctxTimeout(t, 10*time.Second), tokenRequest(s.party("future"), idToken, typeIDToken))
	mustStatus(t, err, codes.Unauthenticated, statusreason.SubjectTokenInvalid)
}

// A request whose delegator disagrees with its token (another id, an
// attribute the token lacks, more entitlements, an earlier MFA) is
// INVALID_ARGUMENT naming the field; one that agrees is issued.
func TestDelegatorThatDisagreesWithTheTokenIsInvalid(t *testing.T) {
	t.Parallel()
	s, p := delegatorStack(t, stackOptions{})
	idToken, _ := p.tokens(t, "alice")
	const alice = "user:alice@example.com"
	tests := []struct {
		name      string
		delegator *identityv1.Delegator
		field     string
	}{
		{"another id", &identityv1.Delegator{Id: "user:ceo@example.com"}, "delegator.id"},
		{"an attribute the token lacks", &identityv1.Delegator{Id: alice, Attributes: map[string]string{"clearance": "top"}}, "delegator.attributes.clearance"},
		{"more entitlements", &identityv1.Delegator{Id: alice, Entitlements: []string{"admin:*", "tickets:read"}}, "delegator.entitlements"},
		{"another time zone", &identityv1.Delegator{Id: alice, TimeZone: "Asia/Tokyo"}, "delegator.time_zone"},
		{"a fresher authentication", &identityv1.Delegator{Id: alice, AuthenticateTime: timestamppb.Now()}, "delegator.authenticate_time"},
	}
	for i, tt := range tests {
		req := tokenRequest(s.party(fmt.Sprintf("disagree-%d", i)), idToken, typeIDToken)
		req.Delegator = tt.delegator
		_, err := s.issuer.IssueCredential(ctxTimeout(t, 10*time.Second), req)
		mustStatus(t, err, codes.InvalidArgument, statusreason.InvalidRequest)
		if fvs := statusreason.BadRequest(err); len(fvs) == 0 || fvs[0].GetField() != tt.field {
			t.Errorf("%s: field violations %v, want %s", tt.name, fvs, tt.field)
		}
	}
	req := tokenRequest(s.party("agree"), idToken, typeIDToken)
	req.Delegator = &identityv1.Delegator{Id: alice, Attributes: map[string]string{"age_verified": "true"}, TimeZone: "Europe/Paris"}
	s.issue(t, req)
}

// A platform permitted to assert delegators cannot assert what only an
// identity provider can prove: its age_verified "true" does not reach
// policy, so tickets:purchase (which needs it) is denied; the same scope
// is granted to the delegator whose token proves it.
func TestAssertedAgeVerifiedIsIgnored(t *testing.T) {
	t.Parallel()
	s, p := delegatorStack(t, stackOptions{})
	party := s.party("asserted-age")
	req := party.request()
	req.Delegator.Attributes = map[string]string{"age_verified": "true"}
	req.Delegator.AuthenticateTime = timestamppb.Now()
	req.Scopes = []string{"tickets:purchase"}
	_, err := s.issuer.IssueCredential(ctxTimeout(t, 10*time.Second), req)
	mustStatus(t, err, codes.PermissionDenied, statusreason.PolicyDenied)
	waitFor(t, 10*time.Second, "the denied event", func() bool {
		recs := s.eventsNow(&auditv1.EventFilter{TaskId: party.task, Types: []eventsv1.EventType{eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED}})
		if len(recs) != 1 {
			return false
		}
		d := recs[0].GetEvent().GetDelegator()
		if len(d.GetAttributes()) != 0 || d.GetAuthenticateTime() != nil {
			t.Errorf("denied event's delegator %v carries what the platform asserted", d)
		}
		return true
	})

	// What needs no proof is issued, and says who asserted the delegator.
	req.Scopes = []string{"tickets:read"}
	if c := s.issue(t, req); c.GetAssertedBy() != platformID {
		t.Errorf("asserted credential's asserted_by = %q, want %q", c.GetAssertedBy(), platformID)
	}

	idToken, _ := p.tokens(t, "alice")
	proven := tokenRequest(s.party("proven-age"), idToken, typeIDToken)
	proven.Scopes = []string{"tickets:purchase"}
	if c := s.issue(t, proven); c.GetAssertedBy() != "" {
		t.Errorf("proven credential's asserted_by = %q, want none", c.GetAssertedBy())
	}
}

// With a token, the delegator is the token's: its id on the credential,
// no asserted_by, and in the issued event its entitlements (groups mapped
// to scopes), age_verified, MFA (amr otp), time zone and authentication
// time. Entitlements bound the grant: a scope outside them is not granted.
func TestDelegatorFromTheTokenReachesTheCredential(t *testing.T) {
	t.Parallel()
	s, p := delegatorStack(t, stackOptions{})
	_, accessToken := p.tokens(t, "alice")
	party := s.party("from-token")
	req := tokenRequest(party, accessToken, typeAccessToken)
	req.Scopes = []string{"tickets:purchase", "tickets:hold", "admin:users"}
	c := s.issue(t, req)
	if c.GetDelegatorId() != "user:alice@example.com" || c.GetAssertedBy() != "" {
		t.Errorf("credential delegator %q asserted by %q; want user:alice@example.com, proven", c.GetDelegatorId(), c.GetAssertedBy())
	}
	if got := sorted(c.GetScopes()); strings.Join(got, " ") != "tickets:hold tickets:purchase" {
		t.Errorf("scopes %v, want tickets:hold and tickets:purchase (admin:users is no entitlement of alice)", got)
	}
	var issued *eventsv1.LifecycleEvent
	waitFor(t, 10*time.Second, "the issued event", func() bool {
		recs := s.eventsNow(&auditv1.EventFilter{CredentialId: c.GetId(), Types: []eventsv1.EventType{eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED}})
		if len(recs) == 1 {
			issued = recs[0].GetEvent()
		}
		return issued != nil
	})
	d := issued.GetDelegator()
	wantEnt := "payments:read tickets:hold tickets:purchase tickets:read"
	if d.GetId() != "user:alice@example.com" || strings.Join(sorted(d.GetEntitlements()), " ") != wantEnt ||
		d.GetAttributes()["age_verified"] != "true" || d.GetAttributes()["mfa"] != "true" || d.GetTimeZone() != "Europe/Paris" {
		t.Errorf("issued event's delegator = %v", d)
	}
	if at := d.GetAuthenticateTime().AsTime(); time.Since(at) < 30*time.Second || time.Since(at) > 10*time.Minute {
		t.Errorf("authenticate_time %v, want about a minute ago (the provider's auth_time)", at)
	}
	if carriesToken(t, issued, accessToken) {
		t.Error("the issued event carries the subject token")
	}
}

// An unknown delegator time zone reaches the caller as INVALID_ARGUMENT
// naming the field, not as "policy unavailable". (The issuer checks zones
// with the same rules as policy, so it refuses first;
// TestPolicyInvalidArgumentIsInvalidArgument covers policy's refusal.)
func TestUnknownTimeZoneIsInvalidArgument(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	req := s.party("zone").request()
	req.Delegator.TimeZone = "Mars/Olympus_Mons"
	_, err := s.issuer.IssueCredential(ctxTimeout(t, 10*time.Second), req)
	mustStatus(t, err, codes.InvalidArgument, statusreason.InvalidRequest)
	if fvs := statusreason.BadRequest(err); len(fvs) == 0 || fvs[0].GetField() != "delegator.time_zone" {
		t.Errorf("field violations %v, want delegator.time_zone", fvs)
	}
}

// A request the issuer's own rules let through but policy refuses as
// invalid (the scope reserved for the assertion check) reaches the caller
// as INVALID_ARGUMENT naming policy's field, not as "policy unavailable".
// Every other rule is checked by the issuer first (it shares
// pkg/reqrules with policy), so this is the path over real processes.
func TestPolicyInvalidArgumentIsInvalidArgument(t *testing.T) {
	t.Parallel()
	if !policyEnforcesAssertion(t) {
		t.Skip("the policy service of this tree reserves no scope yet")
	}
	s := startStack(t, stackOptions{})
	req := s.party("reserved").request()
	req.Scopes = []string{"delegator:assert"}
	_, err := s.issuer.IssueCredential(ctxTimeout(t, 10*time.Second), req)
	mustStatus(t, err, codes.InvalidArgument, statusreason.InvalidRequest)
	if fvs := statusreason.BadRequest(err); len(fvs) == 0 || fvs[0].GetField() != "scopes[0]" {
		t.Errorf("field violations %v, want scopes[0]", fvs)
	}
}

// While the identity provider cannot be reached, a subject token cannot be
// checked: the issuer answers UNAVAILABLE IDENTITY_PROVIDER_UNAVAILABLE
// (retry later), issues nothing, and says nothing about the token.
func TestIdentityProviderDownIsUnavailable(t *testing.T) {
	t.Parallel()
	s, p := delegatorStack(t, stackOptions{})
	idToken, _ := p.tokens(t, "alice")
	if err := p.proc.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err := s.issuer.IssueCredential(ctxTimeout(t, 30*time.Second), tokenRequest(s.party("idp-down"), idToken, typeIDToken))
	mustStatus(t, err, codes.Unavailable, statusreason.IdentityProviderUnavailable)
	if keys := s.credKeys(t, "*"); len(keys) != 0 {
		t.Errorf("credentials stored: %v", keys)
	}
}
