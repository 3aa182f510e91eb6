package e2e_test

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
)

// accessClaims are the claims of a jitid access token (DESIGN.md).
type accessClaims struct {
	jwt.Claims
	Scope string `json:"scope"`
	Act   struct {
		Sub string `json:"sub"`
	} `json:"act"`
	Task struct {
		ID          string `json:"id"`
		Purpose     string `json:"purpose"`
		Sensitivity string `json:"sensitivity"`
	} `json:"task"`
}

// verifyToken checks the token's signature against the issuer's JWKS and
// returns its claims.
func (s *stack) verifyToken(t testing.TB, token string) accessClaims {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := s.issuer.GetSigningKeys(ctx, &issuerv1.GetSigningKeysRequest{})
	if err != nil {
		t.Fatalf("GetSigningKeys: %v", err)
	}
	var jwks jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(keys.GetJwks()), &jwks); err != nil {
		t.Fatalf("GetSigningKeys: jwks is not a JWK Set: %v\n%s", err, keys.GetJwks())
	}
	for _, k := range jwks.Keys {
		if !k.IsPublic() {
			t.Errorf("JWKS key %q is not a public key: the private key left the issuer", k.KeyID)
		}
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("token is not an ES256 JWS: %v", err)
	}
	if len(tok.Headers) != 1 {
		t.Fatalf("token has %d signatures; want 1", len(tok.Headers))
	}
	h := tok.Headers[0]
	if typ := h.ExtraHeaders[jose.HeaderType]; typ != "at+jwt" {
		t.Errorf("header typ = %v; want at+jwt (RFC 9068)", typ)
	}
	matching := jwks.Key(h.KeyID)
	if len(matching) != 1 {
		t.Fatalf("JWKS has %d keys with the token's kid %q; want 1\n%s", len(matching), h.KeyID, keys.GetJwks())
	}
	key := matching[0]
	if tp, err := key.Thumbprint(crypto.SHA256); err != nil {
		t.Errorf("thumbprint of key %q: %v", key.KeyID, err)
	} else if want := base64.RawURLEncoding.EncodeToString(tp); key.KeyID != want {
		t.Errorf("kid = %q; want the RFC 7638 thumbprint %q", key.KeyID, want)
	}
	var c accessClaims
	if err := tok.Claims(key.Key, &c); err != nil {
		t.Fatalf("token does not verify with the issuer's public key %q: %v", key.KeyID, err)
	}
	if c.Issuer != keys.GetIssuer() {
		t.Errorf("iss = %q; GetSigningKeys says the issuer is %q", c.Issuer, keys.GetIssuer())
	}
	return c
}

// TestIssueCredential proves that an issued credential is a verifiable,
// delegation-carrying JWT, lives in Redis with a TTL, is audited with its
// delegation context, and that the token itself is never recorded.
func TestIssueCredential(t *testing.T) {
	t.Parallel()
	// Debug logs: the most a service would ever write, so the secret scan
	// below has the most chances to find a leaked token.
	s := startStack(t, stackOptions{logLevel: "debug"})
	p := s.party("issue")
	req := p.request()
	req.Scopes = []string{"tickets:read", "tickets:hold"}
	req.Task.Purpose = "book two tickets for the 3pm show"
	before := time.Now().Truncate(time.Second)
	cred := s.issue(t, req)
	token := cred.GetToken()

	// The token verifies offline and says who, for whom, why and what.
	c := s.verifyToken(t, token)
	if err := c.ValidateWithLeeway(jwt.Expected{AnyAudience: jwt.Audience{"jitid"}, Time: time.Now()}, 2*time.Second); err != nil {
		t.Errorf("claims do not validate now for the default audience: %v", err)
	}
	gotClaims := map[string]string{
		"jti": c.ID, "sub": c.Subject, "act.sub": c.Act.Sub, "scope": c.Scope,
		"task.id": c.Task.ID, "task.purpose": c.Task.Purpose, "task.sensitivity": c.Task.Sensitivity,
	}
	wantClaims := map[string]string{
		"jti": cred.GetId(), "sub": p.delegator, "act.sub": p.agent, "scope": "tickets:read tickets:hold",
		"task.id": p.task, "task.purpose": req.Task.Purpose, "task.sensitivity": "MEDIUM",
	}
	if diff := cmp.Diff(wantClaims, gotClaims); diff != "" {
		t.Errorf("token claims (-want +got):\n%s", diff)
	}
	// TTL = min(requested 10m, MEDIUM cap 15m) = 10m.
	if c.IssuedAt == nil || c.Expiry == nil {
		t.Fatalf("token lacks iat or exp: %+v", c.Claims)
	}
	if life := c.Expiry.Time().Sub(c.IssuedAt.Time()); life != 10*time.Minute {
		t.Errorf("token exp - iat = %v; want the requested 10m", life)
	}
	if iat := c.IssuedAt.Time(); iat.Before(before) || iat.After(time.Now().Add(time.Second)) {
		t.Errorf("iat = %v; want about now", iat)
	}

	// Introspection agrees; a forged token (claims edited, signature kept) is inactive.
	if in := s.introspect(t, token); !in.GetActive() || in.GetCredential().GetId() != cred.GetId() {
		t.Errorf("IntrospectCredential(issued token) = active %v, id %q; want active, %q", in.GetActive(), in.GetCredential().GetId(), cred.GetId())
	} else if carriesToken(t, in, token) {
		t.Errorf("IntrospectCredential returned the token again")
	}
	if in := s.introspect(t, forge(t, token, p.delegator, "user:mallory@example.com")); in.GetActive() {
		t.Errorf("IntrospectCredential(forged token) = active; want inactive")
	}

	// Redis holds the credential, with a TTL no longer than its life.
	keys := s.credKeys(t, cred.GetId())
	if len(keys) != 1 {
		t.Fatalf("Redis keys %s:{*}:cred:%s = %v; want exactly one", s.ns, cred.GetId(), keys)
	}
	pttl, err := s.rdb.PTTL(context.Background(), keys[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	if pttl <= 0 || pttl > 10*time.Minute {
		t.Errorf("PTTL %s = %v; want in (0, 10m]", keys[0], pttl)
	}

	// A longer request is capped by the policy: HIGH tasks live at most 5m.
	hp := s.party("issue-high")
	hreq := hp.request()
	hreq.Task.Sensitivity = high
	hreq.Ttl = durationpb.New(time.Hour)
	hcred := s.issue(t, hreq)
	if life := hcred.GetExpireTime().AsTime().Sub(hcred.GetIssueTime().AsTime()); life <= 0 || life > 5*time.Minute {
		t.Errorf("HIGH task, 1h requested: credential life %v; want at most the policy's 5m", life)
	}
	hc := s.verifyToken(t, hcred.GetToken())
	if life := hc.Expiry.Time().Sub(hc.IssuedAt.Time()); life > 5*time.Minute {
		t.Errorf("HIGH task, 1h requested: token exp - iat = %v; want at most 5m", life)
	}
	if hkeys := s.credKeys(t, hcred.GetId()); len(hkeys) != 1 {
		t.Errorf("HIGH credential keys = %v; want one", hkeys)
	} else if pttl := s.rdb.PTTL(context.Background(), hkeys[0]).Val(); pttl <= 0 || pttl > 5*time.Minute {
		t.Errorf("HIGH credential PTTL = %v; want in (0, 5m]", pttl)
	}

	// A task deadline bounds the credential too: asked 10m, deadline in 90s.
	dp := s.party("issue-deadline")
	dreq := dp.request()
	deadline := time.Now().Add(90 * time.Second)
	dreq.Task.DeadlineTime = timestamppb.New(deadline)
	dcred := s.issue(t, dreq)
	if exp := dcred.GetExpireTime().AsTime(); exp.After(deadline) {
		t.Errorf("task deadline %v, credential expires %v; want no later than the deadline", deadline, exp)
	}
	if dc := s.verifyToken(t, dcred.GetToken()); dc.Expiry.Time().After(deadline) {
		t.Errorf("task deadline %v, token exp %v; want no later than the deadline", deadline, dc.Expiry.Time())
	}

	// Listing shows metadata, never the token.
	lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer lcancel()
	list, err := s.issuer.ListCredentials(lctx, &issuerv1.ListCredentialsRequest{Selector: &issuerv1.ListCredentialsRequest_TaskId{TaskId: p.task}})
	if err != nil {
		t.Fatalf("ListCredentials(task): %v", err)
	}
	if got := list.GetCredentials(); len(got) != 1 || got[0].GetId() != cred.GetId() {
		t.Errorf("ListCredentials(task %s) = %v; want the one credential %s", p.task, got, cred.GetId())
	} else if carriesToken(t, list, token) {
		t.Errorf("ListCredentials returned a token")
	}

	// The issued event reaches the audit log with the delegation context.
	var recs []*auditv1.AuditRecord
	waitFor(t, 15*time.Second, "the issued event in the audit log", func() bool {
		recs = s.eventsNow(&auditv1.EventFilter{CredentialId: cred.GetId(), Types: []eventsv1.EventType{evIssued}})
		return len(recs) > 0
	})
	if len(recs) != 1 {
		t.Errorf("issued events for %s: %d; want 1", cred.GetId(), len(recs))
	}
	ev := recs[0].GetEvent()
	got := &eventsv1.LifecycleEvent{
		Type:         ev.GetType(),
		CredentialId: ev.GetCredentialId(),
		Agent:        &identityv1.Agent{Id: ev.GetAgent().GetId(), Class: ev.GetAgent().GetClass()},
		Delegator:    &identityv1.Delegator{Id: ev.GetDelegator().GetId()},
		Task:         &identityv1.Task{Id: ev.GetTask().GetId(), Purpose: ev.GetTask().GetPurpose(), Sensitivity: ev.GetTask().GetSensitivity()},
		Scopes:       ev.GetScopes(),
	}
	want := &eventsv1.LifecycleEvent{
		Type:         evIssued,
		CredentialId: cred.GetId(),
		Agent:        &identityv1.Agent{Id: p.agent, Class: ephemeral},
		Delegator:    &identityv1.Delegator{Id: p.delegator},
		Task:         &identityv1.Task{Id: p.task, Purpose: req.Task.Purpose, Sensitivity: medium},
		Scopes:       []string{"tickets:read", "tickets:hold"},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("issued event (delegation context; -want +got):\n%s", diff)
	}
	if ev.GetId() == "" || ev.GetTime() == nil {
		t.Errorf("issued event lacks an id or time: %v", ev)
	}
	if !ev.GetDecision().GetAllow() || ev.GetDecision().GetPolicyVersion() == "" {
		t.Errorf("issued event decision = %v; want an allow with the policy version", ev.GetDecision())
	}

	// The token is never recorded: not in the audit log (as served, or on
	// disk), not in any service's log.
	secrets := []string{token, hcred.GetToken(), dcred.GetToken(), signature(token), signature(hcred.GetToken()), signature(dcred.GetToken())}
	waitFor(t, 15*time.Second, "the HIGH credential's issued event", func() bool {
		return len(s.eventsNow(&auditv1.EventFilter{CredentialId: hcred.GetId()})) > 0
	})
	for _, r := range s.mustEvents(t, &auditv1.EventFilter{}) {
		b, err := protojson.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if containsAny(b, secrets...) {
			t.Errorf("audit record %d carries a token: %s", r.GetSequence(), b)
		}
	}
	files, _ := filepath.Glob(s.auditDB + "*")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if containsAny(b, secrets...) {
			t.Errorf("audit store file %s contains a token", f)
		}
	}
	for name, log := range s.processLogs() {
		if containsAny([]byte(log), secrets...) {
			t.Errorf("%s log contains a token", name)
		}
	}
}

// signature returns the signature part of a compact JWS.
func signature(token string) string {
	parts := strings.Split(token, ".")
	return parts[len(parts)-1]
}

// forge returns token with old replaced by repl in its payload, keeping the
// original signature: a token no key signed.
func forge(t testing.TB, token, old, repl string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts; want 3", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(string(payload), old, repl, 1)
	if forged == string(payload) {
		t.Fatalf("forge: %q not in the payload", old)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(forged))
	return strings.Join(parts, ".")
}
