package e2e_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jitid/jitid/pkg/statusreason"
	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
	"github.com/jitid/jitid/testkit"
)

// platformB is a second agent platform of the stack's trust domain: the
// attacker of these tests, or its victim.
const platformB = "spiffe://jitid.test/platform/b"

func callCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantStatus fails the test unless err has code and reason.
func wantStatus(t testing.TB, what string, err error, code codes.Code, reason string) {
	t.Helper()
	if status.Code(err) != code || statusreason.Of(err) != reason {
		t.Errorf("%s: %v (reason %q); want %v, %s", what, err, statusreason.Of(err), code, reason)
	}
}

// stillActive fails the test unless the owner sees the token active.
func stillActive(t testing.TB, owner issuerv1.IssuerServiceClient, c *issuedCred) {
	t.Helper()
	in, err := owner.IntrospectCredential(callCtx(t), &issuerv1.IntrospectCredentialRequest{Token: c.GetToken()})
	if err != nil || !in.GetActive() {
		t.Errorf("credential %s: introspection %v, %v; want still active", c.GetId(), in, err)
	}
}

func TestPlatformACannotListPlatformBsCredentials(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	b := s.issuerAs(platformB)
	// A and B both act for the same delegator and agent, on tasks of
	// their own.
	shared := s.party("shared")
	var mine []string
	for i := range 3 {
		r := shared.request()
		r.Task.Id = fmt.Sprintf("%s-a%d", shared.task, i)
		mine = append(mine, s.issue(t, r).GetId())
		r = shared.request()
		r.Task.Id = fmt.Sprintf("%s-b%d", shared.task, i)
		s.issueVia(t, b, r)
	}
	// Page by page (one per page), A sees its three and none of B's.
	var listed []string
	token := ""
	for range 10 {
		resp, err := s.issuer.ListCredentials(callCtx(t), &issuerv1.ListCredentialsRequest{
			Selector: &issuerv1.ListCredentialsRequest_DelegatorId{DelegatorId: shared.delegator}, PageSize: 1, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range resp.GetCredentials() {
			if c.GetOwner() != platformID {
				t.Errorf("platform A listed %s, owned by %q", c.GetId(), c.GetOwner())
			}
			listed = append(listed, c.GetId())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if got, want := sorted(listed), sorted(mine); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("platform A listed %v; want its own %v", got, want)
	}
	// By B's task: nothing.
	resp, err := s.issuer.ListCredentials(callCtx(t), &issuerv1.ListCredentialsRequest{
		Selector: &issuerv1.ListCredentialsRequest_TaskId{TaskId: shared.task + "-b0"}})
	if err != nil || len(resp.GetCredentials()) != 0 {
		t.Errorf("platform A listing B's task: %v, %v; want nothing", resp.GetCredentials(), err)
	}
	// An admin sees all six.
	all, err := s.issuerAs(adminID).ListCredentials(callCtx(t), &issuerv1.ListCredentialsRequest{
		Selector: &issuerv1.ListCredentialsRequest_DelegatorId{DelegatorId: shared.delegator}})
	if err != nil || len(all.GetCredentials()) != 6 {
		t.Errorf("admin listing: %d credentials, %v; want 6", len(all.GetCredentials()), err)
	}
}

func TestPlatformACannotRevokePlatformBsCredentials(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	b := s.issuerAs(platformB)
	victim := s.party("victim")
	bCred := s.issueVia(t, b, victim.request())

	for _, tt := range []struct {
		name   string
		sel    *issuerv1.RevokeCredentialsRequest
		denied bool // PERMISSION_DENIED; otherwise nothing of B's revoked
	}{
		{"by credential id", &issuerv1.RevokeCredentialsRequest{Selector: &issuerv1.RevokeCredentialsRequest_CredentialId{CredentialId: bCred.GetId()}}, true},
		{"by task", &issuerv1.RevokeCredentialsRequest{Selector: &issuerv1.RevokeCredentialsRequest_TaskId{TaskId: victim.task}}, true},
		{"by agent", &issuerv1.RevokeCredentialsRequest{Selector: &issuerv1.RevokeCredentialsRequest_AgentId{AgentId: victim.agent}}, false},
		{"by delegator", &issuerv1.RevokeCredentialsRequest{Selector: &issuerv1.RevokeCredentialsRequest_DelegatorId{DelegatorId: victim.delegator}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := s.issuer.RevokeCredentials(callCtx(t), tt.sel)
			if tt.denied {
				wantStatus(t, "revoke "+tt.name, err, codes.PermissionDenied, statusreason.CallerNotAllowed)
			} else if err != nil || resp.GetRevoked() != 0 {
				t.Errorf("revoke %s: %v, %v; want nothing revoked", tt.name, resp, err)
			}
			stillActive(t, b, bCred)
		})
	}
	if recs := s.eventsNow(&auditv1.EventFilter{CredentialId: bCred.GetId(), Types: typesOf(evRevoked)}); len(recs) != 0 {
		t.Errorf("revoked events for B's credential: %v", recs)
	}
	// B revokes its own.
	resp, err := b.RevokeCredentials(callCtx(t), &issuerv1.RevokeCredentialsRequest{
		Selector: &issuerv1.RevokeCredentialsRequest_CredentialId{CredentialId: bCred.GetId()}})
	if err != nil || resp.GetRevoked() != 1 {
		t.Errorf("owner's revocation: %v, %v", resp, err)
	}
}

func TestAdminRevokesAcrossPlatforms(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	b := s.issuerAs(platformB)
	p := s.party("compromised")
	r := p.request()
	r.Task.Id = p.task + "-a"
	aCred := s.issue(t, r)
	r = p.request()
	r.Task.Id = p.task + "-b"
	bCred := s.issueVia(t, b, r)

	resp, err := s.issuerAs(adminID).RevokeCredentials(callCtx(t), &issuerv1.RevokeCredentialsRequest{
		Selector: &issuerv1.RevokeCredentialsRequest_DelegatorId{DelegatorId: p.delegator}, Reason: "e2e: account compromised"})
	if err != nil || resp.GetRevoked() != 2 {
		t.Fatalf("admin revocation by delegator: %v, %v; want both platforms' credentials", resp, err)
	}
	for _, c := range []*issuedCred{aCred, bCred} {
		if s.introspect(t, c.GetToken()).GetActive() {
			t.Errorf("credential %s still active after the admin's revocation", c.GetId())
		}
	}
	testkit.Eventually(t, "revoked events naming the admin", 10*time.Second, 100*time.Millisecond, func() (string, bool) {
		recs := s.eventsNow(&auditv1.EventFilter{DelegatorId: p.delegator, Types: typesOf(evRevoked)})
		n := 0
		for _, rec := range recs {
			if rec.GetEvent().GetCaller() == adminID {
				n++
			}
		}
		return fmt.Sprintf("%d of 2 revoked events name the admin", n), n == 2
	})
}

func TestPlatformACannotCompletePlatformBsTask(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	b := s.issuerAs(platformB)
	victim := s.party("victim-task")
	bCred := s.issueVia(t, b, victim.request())

	_, err := s.issuer.CompleteTask(callCtx(t), &issuerv1.CompleteTaskRequest{TaskId: victim.task})
	wantStatus(t, "complete B's task", err, codes.PermissionDenied, statusreason.CallerNotAllowed)
	stillActive(t, b, bCred)
	// B can still issue for its task: it was not completed.
	s.issueVia(t, b, victim.request())
	// An admin may complete it.
	resp, err := s.issuerAs(adminID).CompleteTask(callCtx(t), &issuerv1.CompleteTaskRequest{TaskId: victim.task})
	if err != nil || resp.GetRevoked() != 2 {
		t.Errorf("admin completing B's task: %v, %v; want two revoked", resp, err)
	}
}

func TestCompletingAnUnknownTaskIsNotFound(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	// Platform A tries to squat B's next task id.
	future := s.party("future")
	_, err := s.issuer.CompleteTask(callCtx(t), &issuerv1.CompleteTaskRequest{TaskId: future.task})
	wantStatus(t, "complete a task never issued for", err, codes.NotFound, statusreason.TaskNotFound)
	// Nothing was recorded: B issues for it.
	s.issueVia(t, s.issuerAs(platformB), future.request())
}

func TestPlatformCannotIssueIntoAnotherPlatformsTask(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	b := s.issuerAs(platformB)
	victim := s.party("victim-issue")
	bCred := s.issueVia(t, b, victim.request())
	before := len(s.credKeys(t, "*"))

	r := victim.request()
	r.Agent.Id += "-intruder"
	_, err := s.issuer.IssueCredential(callCtx(t), r)
	wantStatus(t, "issue into B's task", err, codes.PermissionDenied, statusreason.CallerNotAllowed)
	// Nor through an exchange of A's own credential: its task is A's,
	// and B's token is not A's to exchange.
	_, err = s.issuer.ExchangeCredential(callCtx(t), &issuerv1.ExchangeCredentialRequest{
		SubjectToken: bCred.GetToken(), Agent: r.Agent, Scopes: []string{"tickets:read"}, Ttl: durationpb.New(time.Minute)})
	wantStatus(t, "exchange B's credential into B's task", err, codes.PermissionDenied, statusreason.CallerNotAllowed)
	if after := len(s.credKeys(t, "*")); after != before {
		t.Errorf("%d credentials stored after the refused calls, %d before", after, before)
	}
}

func TestIntrospectionIsActiveOnlyForOwnerAudienceOrAdmin(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{issuerArgs: []string{"-resource-servers", "tickets-api=" + ticketAPIID}})
	r := s.party("introspect").request()
	r.Audience = "tickets-api"
	c := s.issue(t, r)
	for _, tt := range []struct {
		caller string
		active bool
	}{
		{platformID, true},                      // its owner
		{ticketAPIID, true},                     // mapped to its audience
		{adminID, true},                         // an admin
		{platformB, false},                      // another platform
		{auditorID, false},                      // another service of the trust domain
		{"spiffe://jitid.test/rs/other", false}, // a resource server of another audience
	} {
		in, err := s.issuerAs(tt.caller).IntrospectCredential(callCtx(t), &issuerv1.IntrospectCredentialRequest{Token: c.GetToken()})
		if err != nil {
			t.Fatalf("introspection as %s: %v", tt.caller, err)
		}
		if in.GetActive() != tt.active || (!tt.active && in.GetCredential() != nil) {
			t.Errorf("introspection as %s: active %v, credential %v; want active %v and nothing else when inactive",
				tt.caller, in.GetActive(), in.GetCredential(), tt.active)
		}
		if tt.active && in.GetCredential().GetOwner() != platformID {
			t.Errorf("introspection as %s: owner %q, want %q", tt.caller, in.GetCredential().GetOwner(), platformID)
		}
	}
}

func TestEveryEventNamesItsCaller(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{sweepInterval: 100 * time.Millisecond})
	p := s.party("callers")

	issued := s.issue(t, p.request())
	denied := p.request()
	denied.Task.Sensitivity = critical // needs human approval: denied
	_, err := s.issuer.IssueCredential(callCtx(t), denied)
	wantStatus(t, "critical task", err, codes.PermissionDenied, statusreason.PolicyDenied)
	child, err := s.issuer.ExchangeCredential(callCtx(t), &issuerv1.ExchangeCredentialRequest{
		SubjectToken: issued.GetToken(), Agent: &identityv1.Agent{Id: p.agent + "-sub", Class: ephemeral, Platform: "e2e"}, Scopes: []string{"tickets:read"},
		Ttl: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.issuer.RevokeCredentials(callCtx(t), &issuerv1.RevokeCredentialsRequest{
		Selector: &issuerv1.RevokeCredentialsRequest_CredentialId{CredentialId: child.GetCredential().GetId()}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.issuerAs(adminID).CompleteTask(callCtx(t), &issuerv1.CompleteTaskRequest{TaskId: p.task}); err != nil {
		t.Fatal(err)
	}
	short := s.party("callers-expiry").request()
	short.Ttl = durationpb.New(time.Second)
	s.issue(t, short)

	want := map[eventsv1.EventType]string{
		evIssued: platformID,
		evDenied: platformID,
		eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXCHANGED: platformID,
		evRevoked:   platformID, // the exchanged child, by its platform
		evCompleted: adminID,
		evExpired:   issuerID, // the issuer itself, by its SPIFFE ID
	}
	testkit.Eventually(t, "one event of each type, each naming its caller", 15*time.Second, 200*time.Millisecond, func() (string, bool) {
		got := map[eventsv1.EventType][]string{}
		for _, task := range []string{p.task, s.party("callers-expiry").task} {
			for _, rec := range s.eventsNow(&auditv1.EventFilter{TaskId: task}) {
				ev := rec.GetEvent()
				got[ev.GetType()] = append(got[ev.GetType()], ev.GetCaller())
			}
		}
		for typ, caller := range want {
			callers := got[typ]
			if len(callers) == 0 {
				return fmt.Sprintf("no %v event yet", typ), false
			}
			for _, c := range callers {
				if c != caller && !(typ == evRevoked && c == adminID) {
					return fmt.Sprintf("%v event names caller %q, want %q", typ, c, caller), false
				}
			}
		}
		return "every event names its caller", true
	})
	// The owner is named too.
	for _, rec := range s.mustEvents(t, &auditv1.EventFilter{TaskId: p.task, Types: typesOf(evIssued, evRevoked)}) {
		if rec.GetEvent().GetOwner() != platformID {
			t.Errorf("%v event of %s: owner %q, want %q", rec.GetEvent().GetType(), rec.GetEvent().GetCredentialId(), rec.GetEvent().GetOwner(), platformID)
		}
	}
}

func TestDelegatorQuotaIsResourceExhaustedWithRetryInfo(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{issuerArgs: []string{"-delegator-quota", "2"}})
	p := s.party("quota")
	var first *issuedCred
	for i := range 2 {
		r := p.request()
		r.Task.Id = fmt.Sprintf("%s-%d", p.task, i)
		c := s.issue(t, r)
		if first == nil {
			first = c
		}
	}
	before := len(s.credKeys(t, "*"))
	r := p.request()
	r.Task.Id = p.task + "-over"
	// Another platform for the same delegator: the quota is the delegator's.
	_, err := s.issuerAs(platformB).IssueCredential(callCtx(t), r)
	wantStatus(t, "issue past the quota", err, codes.ResourceExhausted, statusreason.QuotaExceeded)
	var retry *errdetails.RetryInfo
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri
		}
	}
	until := time.Until(first.GetExpireTime().AsTime())
	if got := retry.GetRetryDelay().AsDuration(); retry == nil || got <= 0 || got > until+time.Second || got < until-30*time.Second {
		t.Errorf("RetryInfo %v; want about %v (until the earliest credential expires)", retry, until)
	}
	if after := len(s.credKeys(t, "*")); after != before {
		t.Errorf("%d credentials stored after the refusal, %d before", after, before)
	}
	// A revocation frees a place.
	if _, err := s.issuer.RevokeCredentials(callCtx(t), &issuerv1.RevokeCredentialsRequest{
		Selector: &issuerv1.RevokeCredentialsRequest_CredentialId{CredentialId: first.GetId()}}); err != nil {
		t.Fatal(err)
	}
	s.issueVia(t, s.issuerAs(platformB), r)
}
