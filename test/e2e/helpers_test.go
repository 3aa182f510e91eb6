package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
)

// Shorthands for the enum values the tests use.
const (
	evIssued    = eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED
	evDenied    = eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED
	evRevoked   = eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED
	evExpired   = eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED
	evCompleted = eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED

	low      = identityv1.Sensitivity_SENSITIVITY_LOW
	medium   = identityv1.Sensitivity_SENSITIVITY_MEDIUM
	high     = identityv1.Sensitivity_SENSITIVITY_HIGH
	critical = identityv1.Sensitivity_SENSITIVITY_CRITICAL

	ephemeral = identityv1.AgentClass_AGENT_CLASS_EPHEMERAL
	recurring = identityv1.AgentClass_AGENT_CLASS_RECURRING
)

// party names the agent, delegator and task of a request; ids are made
// unique to the stack by the caller.
type party struct {
	agent, delegator, task string
}

func (s *stack) party(suffix string) party {
	return party{
		agent:     "agent:" + s.ns + "-" + suffix,
		delegator: "user:" + s.ns + "-" + suffix + "@example.com",
		task:      "task-" + s.ns + "-" + suffix,
	}
}

// request returns a valid request: MEDIUM task, one scope, ten minutes.
// partyEntitlements are what the stack's platform asserts its delegators
// hold: the ticket scopes the tests ask for (an absent list grants none).
var partyEntitlements = []string{"tickets:read", "tickets:hold", "tickets:purchase"}

func (p party) request() *issuerv1.IssueCredentialRequest {
	return &issuerv1.IssueCredentialRequest{
		Agent:     &identityv1.Agent{Id: p.agent, Class: ephemeral, Platform: "e2e"},
		Delegator: &identityv1.Delegator{Id: p.delegator, Entitlements: partyEntitlements},
		Task:      &identityv1.Task{Id: p.task, Purpose: "summarise the Q3 support tickets", Sensitivity: medium},
		Scopes:    []string{"tickets:read"},
		Ttl:       durationpb.New(10 * time.Minute),
	}
}

// issue asks for a credential and fails the test unless it is granted.
func (s *stack) issue(t testing.TB, req *issuerv1.IssueCredentialRequest) *issuedCred {
	t.Helper()
	return s.issueVia(t, s.issuer, req)
}

func (s *stack) issueVia(t testing.TB, c issuerv1.IssuerServiceClient, req *issuerv1.IssueCredentialRequest) *issuedCred {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.IssueCredential(ctx, req)
	if err != nil {
		t.Fatalf("IssueCredential(agent %s, task %s): %v", req.GetAgent().GetId(), req.GetTask().GetId(), err)
	}
	if resp.GetCredential().GetId() == "" || resp.GetToken() == "" {
		t.Fatalf("IssueCredential returned no credential id or token: %v", resp)
	}
	return &issuedCred{Credential: resp.GetCredential(), token: resp.GetToken()}
}

// issuedCred is a credential with the token its issue response carried
// (the Credential message never carries one).
type issuedCred struct {
	*issuerv1.Credential
	token string
}

// carriesToken reports whether m holds token anywhere in its wire form.
func carriesToken(t testing.TB, m proto.Message, token string) bool {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatalf("marshal %T: %v", m, err)
	}
	return bytes.Contains(b, []byte(token))
}

// GetToken returns the signed token.
func (c *issuedCred) GetToken() string { return c.token }

// introspect returns whether the token is active.
func (s *stack) introspect(t testing.TB, token string) *issuerv1.IntrospectCredentialResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := s.issuer.IntrospectCredential(ctx, &issuerv1.IntrospectCredentialRequest{Token: token})
	if err != nil {
		t.Fatalf("IntrospectCredential: %v", err)
	}
	return resp
}

// events returns every audit record matching f, all pages. An error is
// returned rather than fatal so that polling can ride over a restart.
func (s *stack) events(ctx context.Context, f *auditv1.EventFilter) ([]*auditv1.AuditRecord, error) {
	var all []*auditv1.AuditRecord
	token := ""
	for page := 0; ; page++ {
		if page > 1000 {
			return nil, fmt.Errorf("QueryEvents: more than 1000 pages (next_page_token never empties?)")
		}
		resp, err := s.auditor.QueryEvents(ctx, &auditv1.QueryEventsRequest{Filter: f, PageSize: 1000, PageToken: token})
		if err != nil {
			return nil, err
		}
		all = append(all, resp.GetRecords()...)
		token = resp.GetNextPageToken()
		if token == "" {
			return all, nil
		}
	}
}

// eventsNow is events for use inside a polling condition: a failed query
// counts as "not yet".
func (s *stack) eventsNow(f *auditv1.EventFilter) []*auditv1.AuditRecord {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	recs, err := s.events(ctx, f)
	if err != nil {
		return nil
	}
	return recs
}

// mustEvents is events that fails the test on error.
func (s *stack) mustEvents(t testing.TB, f *auditv1.EventFilter) []*auditv1.AuditRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := s.events(ctx, f)
	if err != nil {
		t.Fatalf("QueryEvents(%v): %v", f, err)
	}
	return recs
}

func byType(types ...eventsv1.EventType) *auditv1.EventFilter {
	return &auditv1.EventFilter{Types: types}
}

// credKeys returns the Redis keys of one credential (any shard), or of every
// credential when id is "*".
func (s *stack) credKeys(t testing.TB, id string) []string {
	t.Helper()
	return s.scan(t, s.ns+":{*}:cred:"+id)
}

func (s *stack) scan(t testing.TB, pattern string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var keys []string
	iter := s.rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN %s: %v", pattern, err)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// referencesTo returns the keys under the stack's prefix that still name
// one of ids: a credential key, or a set (index) holding it.
func (s *stack) referencesTo(t testing.TB, ids []string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var found []string
	for _, key := range s.scan(t, s.ns+":*") {
		for _, id := range ids {
			if strings.HasSuffix(key, ":cred:"+id) {
				found = append(found, key)
			}
		}
		typ, err := s.rdb.Type(ctx, key).Result()
		if err != nil {
			t.Fatalf("TYPE %s: %v", key, err)
		}
		if typ != "set" {
			continue
		}
		for _, id := range ids {
			if ok, err := s.rdb.SIsMember(ctx, key, id).Result(); err != nil {
				t.Fatalf("SISMEMBER %s: %v", key, err)
			} else if ok {
				found = append(found, key+" ∋ "+id)
			}
		}
	}
	return found
}

func credIDs(creds ...*issuedCred) []string {
	ids := make([]string, len(creds))
	for i, c := range creds {
		ids[i] = c.GetId()
	}
	slices.Sort(ids)
	return ids
}

func sorted(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// countBy counts records per credential id.
func countBy(recs []*auditv1.AuditRecord) map[string]int {
	m := map[string]int{}
	for _, r := range recs {
		m[r.GetEvent().GetCredentialId()]++
	}
	return m
}

// distinctEventIDs counts the distinct event ids of recs.
func distinctEventIDs(recs []*auditv1.AuditRecord) int {
	seen := map[string]bool{}
	for _, r := range recs {
		seen[r.GetEvent().GetId()] = true
	}
	return len(seen)
}

// checkSequences fails the test unless the records, oldest first, are
// numbered 1..n without gaps and each names the hash of the one before.
func checkSequences(t testing.TB, recs []*auditv1.AuditRecord) {
	t.Helper()
	for i, r := range recs {
		if r.GetSequence() != int64(i+1) {
			t.Errorf("record %d has sequence %d; want %d (gap, duplicate or reordering)", i, r.GetSequence(), i+1)
			return
		}
		if i > 0 && r.GetPrevHash() != recs[i-1].GetHash() {
			t.Errorf("record %d: prev_hash %q, previous record's hash %q", r.GetSequence(), r.GetPrevHash(), recs[i-1].GetHash())
		}
	}
}

func typesOf(types ...eventsv1.EventType) []eventsv1.EventType { return types }
