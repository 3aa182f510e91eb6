package cli_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/eventbus"
	"github.com/jitid/jitid/pkg/mtls"
	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/policy/internal/cli"
	"github.com/jitid/jitid/services/policy/internal/policy"
	"github.com/jitid/jitid/services/policy/internal/replay"
	"github.com/jitid/jitid/testkit"
	"github.com/jitid/jitid/testkit/gobin"
	"github.com/jitid/jitid/testkit/launch"
	"github.com/jitid/jitid/testkit/testca"
	"github.com/jitid/jitid/testkit/testserver"
)

// auditService is a running audit binary and the stream it consumes.
type auditService struct {
	addr   string
	client auditv1.AuditServiceClient
	js     jetstream.JetStream
	bus    eventbus.Config
	// tlsArgs are the flags of `policy replay` to reach it as its auditor.
	tlsArgs []string
}

// The SPIFFE IDs of the audit service and of the replay tool, its auditor.
const (
	auditSvcID     = "spiffe://jitid.test/audit"
	replayCallerID = "spiffe://jitid.test/policy-replay"
)

// startAuditService runs the audit binary (built once per test binary) on
// an embedded NATS with a stream and subjects of its own and a SQLite log
// in a temp dir. It is stopped with SIGTERM when the test ends; its output
// is shown when the test fails.
func startAuditService(t *testing.T) *auditService {
	t.Helper()
	dir := t.TempDir()
	// Audit serves mutual TLS only, and reads only to its auditors: the
	// replay tool holds an SVID of a test CA and is both.
	ca := testca.New(t, "jitid.test")
	srvDir, cliDir := filepath.Join(dir, "audit-svid"), filepath.Join(dir, "replay-svid")
	for _, d := range []string{srvDir, cliDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	srv, own := ca.WriteSVID(t, srvDir, auditSvcID), ca.WriteSVID(t, cliDir, replayCallerID)
	bin := gobin.Build(t, gobin.Target{Module: "github.com/jitid/jitid/services/audit", Package: "./cmd/audit"})
	natsURL := testserver.NATSURL(t)
	ns := testserver.Namespace(t)
	bus := eventbus.Config{Stream: "EVENTS_" + ns, SubjectPrefix: ns + ".events"}
	spec := launch.Service("audit", bin, filepath.Join(dir, "audit.log"),
		"-grpc-addr", "127.0.0.1:0", "-admin-addr", "",
		"-audit-dsn", "sqlite://"+filepath.Join(dir, "audit.db"),
		"-nats-url", natsURL, "-stream", bus.Stream, "-subject-prefix", bus.SubjectPrefix,
		"-consumer", "audit-"+ns, "-log-format", "text",
		"-tls-cert", srv.Cert, "-tls-key", srv.Key, "-tls-bundle", srv.Bundle,
		"-allowed-clients", replayCallerID, "-auditors", replayCallerID)
	// The launcher's health probe is plaintext, which an mTLS server
	// refuses: the serving line is enough, and waitForEvents waits for the
	// store.
	spec.Health = false
	p := launch.ForTest(t, spec)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := &auditService{addr: p.Addr("grpc"), bus: bus, tlsArgs: []string{
		"-tls-cert", own.Cert, "-tls-key", own.Key, "-tls-bundle", own.Bundle, "-audit-id", auditSvcID,
	}}

	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if a.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Whichever of the issuer and the audit service starts first creates
	// the stream; here the test publishes before the audit may be up.
	if _, err := eventbus.EnsureStream(ctx, a.js, bus); err != nil {
		t.Fatal(err)
	}
	src, err := mtls.NewFileSource(mtls.FileConfig{CertFile: own.Cert, KeyFile: own.Key, BundleFile: own.Bundle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	server, err := mtls.ParseAllowList([]string{auditSvcID})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(mtls.ClientCredentials(src, server)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	a.client = auditv1.NewAuditServiceClient(conn)
	return a
}

// publish sends events as the issuer does: a CloudEvents envelope with the
// event id as Nats-Msg-Id, so that a retried publish is deduplicated.
func (a *auditService) publish(t *testing.T, events ...*eventsv1.LifecycleEvent) []*jetstream.PubAck {
	t.Helper()
	var acks []*jetstream.PubAck
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ev := range events {
		data, err := eventbus.Encode("", ev)
		if err != nil {
			t.Fatal(err)
		}
		msg := &nats.Msg{Subject: a.bus.Subject(ev.GetType()), Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, ev.GetId())
		ack, err := a.js.PublishMsg(ctx, msg)
		if err != nil {
			t.Fatalf("publish %s: %v", ev.GetId(), err)
		}
		acks = append(acks, ack)
	}
	return acks
}

// waitForEvents waits until the audit log holds n events.
func (a *auditService) waitForEvents(t *testing.T, n int) {
	t.Helper()
	type observed struct {
		events int
		err    error
	}
	testkit.Eventually(t, fmt.Sprintf("%d events in the audit log", n), 30*time.Second, 50*time.Millisecond, func() (observed, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := a.client.QueryEvents(ctx, &auditv1.QueryEventsRequest{PageSize: 1000})
		o := observed{len(resp.GetRecords()), err}
		return o, err == nil && o.events >= n
	})
}

var replayDay = time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC)

// lifecycleEvent is an issued (or, with typ, exchanged or denied) event as
// the issuer records it, with the request's scopes and TTL.
func lifecycleEvent(id string, typ eventsv1.EventType, at time.Duration, requested []string, ttl time.Duration) *eventsv1.LifecycleEvent {
	ev := &eventsv1.LifecycleEvent{
		Id: id, Type: typ, Time: timestamppb.New(replayDay.Add(at)), CredentialId: "cred-" + id,
		Agent:           &identityv1.Agent{Id: "agent-1", Class: identityv1.AgentClass_AGENT_CLASS_RECURRING, Platform: "reporting"},
		Delegator:       &identityv1.Delegator{Id: "alice", Entitlements: requested},
		Task:            &identityv1.Task{Id: "task-" + id, Purpose: "weekly report", Sensitivity: identityv1.Sensitivity_SENSITIVITY_LOW},
		Scopes:          requested,
		RequestedScopes: requested,
		RequestedTtl:    durationpb.New(ttl),
		IssueTime:       timestamppb.New(replayDay.Add(at)),
		ExpireTime:      timestamppb.New(replayDay.Add(at + ttl)),
		Decision:        &identityv1.Decision{Allow: true, GrantedScopes: requested, MaxTtl: durationpb.New(ttl)},
	}
	if typ == eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED {
		ev.CredentialId, ev.Scopes, ev.IssueTime, ev.ExpireTime = "", nil, nil, nil
		ev.Decision = &identityv1.Decision{Reasons: []string{"no policy permits it"}}
	}
	return ev
}

func writeSet(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "candidate.cedar"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestReplayAgainstAuditService replays events that went the real way —
// published to JetStream, consumed by the audit binary into its SQLite log,
// read back through QueryEvents — with candidate sets that deny, narrow
// and widen, through replay.Run and through `policy replay`.
func TestReplayAgainstAuditService(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs the audit binary")
	}
	a := startAuditService(t)
	issued, denied := eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED
	events := []*eventsv1.LifecycleEvent{
		lifecycleEvent("kept", issued, time.Hour, []string{"reports:read"}, 30*time.Minute),
		lifecycleEvent("loses-write", issued, 2*time.Hour, []string{"reports:read", "reports:write"}, time.Hour),
		lifecycleEvent("write-only", issued, 3*time.Hour, []string{"reports:write"}, 30*time.Minute),
		lifecycleEvent("long-read", issued, 4*time.Hour, []string{"reports:read"}, 2*time.Hour),
		lifecycleEvent("was-denied", denied, 5*time.Hour, []string{"reports:read"}, 10*time.Minute),
		lifecycleEvent("exchanged", eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXCHANGED, 6*time.Hour, []string{"reports:read"}, 5*time.Minute),
		// Not decisions, or outside the range: never replayed.
		lifecycleEvent("revoked", eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED, 7*time.Hour, []string{"reports:write"}, time.Hour),
		lifecycleEvent("day-before", issued, -time.Hour, []string{"reports:write"}, time.Hour),
	}
	a.publish(t, events...)
	// A retried publish carries the same Nats-Msg-Id and is not recorded twice.
	if acks := a.publish(t, events[1]); !acks[0].Duplicate {
		t.Errorf("republished event %s: PubAck.Duplicate false, want true", events[1].GetId())
	}
	a.waitForEvents(t, len(events))

	strict := writeSet(t, `
@id("read") @max_ttl("1h") permit (principal, action == Jitid::Action::"reports:read", resource);
@id("read-only") @reason("reports are read-only now")
forbid (principal, action == Jitid::Action::"reports:write", resource);
`)
	lenient := writeSet(t, `@id("all") permit (principal, action, resource);`)

	t.Run("Run", func(t *testing.T) {
		set, err := policy.Load(strict)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := replay.Run(context.Background(), a.client, set, replay.Options{
			Start: replayDay, End: replayDay.Add(24 * time.Hour), PageSize: 2,
		})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		wantCounts := map[replay.Outcome]int{replay.Same: 2, replay.Narrowed: 2, replay.Denied: 1, replay.Widened: 1}
		if diff := cmp.Diff(wantCounts, rep.Counts); diff != "" {
			t.Errorf("counts (-want +got):\n%s", diff)
		}
		type row struct {
			ID        string
			Outcome   replay.Outcome
			NowScopes []string
			NowTTL    time.Duration
			Fallback  bool
		}
		var got []row
		for _, e := range rep.Entries {
			got = append(got, row{e.EventID, e.Outcome, e.NowScopes, e.NowTTL, e.Fallback})
		}
		want := []row{
			{"loses-write", replay.Narrowed, []string{"reports:read"}, time.Hour, false},
			{"write-only", replay.Denied, nil, 0, false},
			{"long-read", replay.Narrowed, []string{"reports:read"}, time.Hour, false},
			{"was-denied", replay.Widened, []string{"reports:read"}, 10 * time.Minute, false},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("entries (-want +got):\n%s", diff)
		}
	})

	t.Run("CLI", func(t *testing.T) {
		window := append([]string{"-audit-addr", a.addr, "-start", replayDay.Format(time.RFC3339), "-end", replayDay.Add(24 * time.Hour).Format(time.RFC3339)}, a.tlsArgs...)
		tests := []struct {
			name string
			args []string
			code int
		}{
			{"narrowing candidate", []string{"-policy-file", strict, "-fail-on-change"}, cli.ExitFailed},
			{"narrowing candidate, report only", []string{"-policy-file", strict}, cli.ExitOK},
			// Widening is reported but is not a failure.
			{"widening candidate", []string{"-policy-file", lenient, "-fail-on-change"}, cli.ExitOK},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				args := append(append([]string{"replay"}, window...), tt.args...)
				if code, out := run(t, args...); code != tt.code {
					t.Errorf("policy replay: exit %d, want %d\n%s", code, tt.code, out)
				}
			})
		}
		// An audit service that is not there is a usage error, not a pass.
		if code, out := run(t, "replay", "-audit-addr", testserver.ClosedAddr(t), "-policy-file", strict, "-fail-on-change"); code != cli.ExitUsage {
			t.Errorf("no audit service: exit %d, want %d\n%s", code, cli.ExitUsage, out)
		}
	})
}
