package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/envflag"
	"github.com/jitid/jitid/pkg/eventbus"
	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/pkg/mtls"
	"github.com/jitid/jitid/pkg/servicecmd"
	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/audit/internal/app"
	"github.com/jitid/jitid/services/audit/internal/config"
	"github.com/jitid/jitid/testkit"
	"github.com/jitid/jitid/testkit/testca"
	"github.com/jitid/jitid/testkit/testserver"
)

// The identities of the tests: the audit service, an auditor and a
// platform, all of one trust domain.
const (
	auditID    = "spiffe://jitid.test/audit"
	auditorID  = "spiffe://jitid.test/auditor"
	platformID = "spiffe://jitid.test/platform/support-bot"
)

// pki is a test CA and the SVID files of the service and its clients.
type pki struct {
	server, auditor, platform testca.Files
}

func newPKI(t *testing.T) pki {
	t.Helper()
	ca := testca.New(t, "jitid.test")
	write := func(name, id string) testca.Files {
		dir := filepath.Join(t.TempDir(), name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		return ca.WriteSVID(t, dir, id)
	}
	return pki{server: write("audit", auditID), auditor: write("auditor", auditorID), platform: write("platform", platformID)}
}

// mtlsEnv is the environment that puts the service on mTLS, accepting the
// trust domain, with the auditor as its one reader.
func (p pki) mtlsEnv(env map[string]string) map[string]string {
	env["JITID_TLS_CERT"], env["JITID_TLS_KEY"], env["JITID_TLS_BUNDLE"] = p.server.Cert, p.server.Key, p.server.Bundle
	env["JITID_ALLOWED_CLIENTS"] = "spiffe://jitid.test"
	env["JITID_AUDITORS"] = auditorID
	return env
}

// dialAs returns a connection to the audit service presenting files' SVID.
func dialAs(t *testing.T, addr string, files testca.Files) *grpc.ClientConn {
	t.Helper()
	src, err := mtls.NewFileSource(mtls.FileConfig{CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(mtls.ClientCredentials(src, mtls.AllowIDs(spiffeid.RequireFromString(auditID)))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func load(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	cfg, err := config.Load(nil, envflag.MapLookup(env), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestRunEndToEnd wires the service as main does: an event published on
// NATS is queryable over gRPC, the log verifies, and cancelling the
// context (SIGTERM) stops everything cleanly.
func TestRunEndToEnd(t *testing.T) {
	t.Parallel()
	natsURL := testserver.NATSURL(t)
	ns := testserver.Namespace(t)
	certs := newPKI(t)
	cfg := load(t, certs.mtlsEnv(map[string]string{
		"JITID_GRPC_ADDR":      "127.0.0.1:0",
		"JITID_ADMIN_ADDR":     "127.0.0.1:0",
		"JITID_AUDIT_DSN":      "sqlite://" + filepath.Join(t.TempDir(), "audit.db"),
		"JITID_NATS_URL":       natsURL,
		"JITID_STREAM":         ns,
		"JITID_SUBJECT_PREFIX": ns + ".events",
	}))
	a, err := app.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	addr := a.Server().GRPCAddress()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run() = %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("run() did not return after cancel")
		}
	}()

	ev := &eventsv1.LifecycleEvent{
		Id: "evt-main-1", Type: eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, Time: timestamppb.Now(),
		CredentialId: "cred-1", Task: &identityv1.Task{Id: "task-1"},
	}
	b, err := eventbus.Encode("", ev)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	bus := eventbus.Config{Stream: ns, SubjectPrefix: ns + ".events"}
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	if _, err := eventbus.EnsureStream(pctx, js, bus); err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(bus.Subject(ev.GetType()))
	msg.Data = b
	msg.Header.Set(jetstream.MsgIDHeader, ev.GetId())
	if _, err := js.PublishMsg(pctx, msg); err != nil {
		t.Fatal(err)
	}

	conn := dialAs(t, addr, certs.auditor)
	client := auditv1.NewAuditServiceClient(conn)
	health := healthpb.NewHealthClient(conn)
	type observed struct {
		health     *healthpb.HealthCheckResponse
		healthErr  error
		records    int
		queryError error
	}
	testkit.Eventually(t, "the event recorded and the service SERVING", 30*time.Second, 50*time.Millisecond, func() (observed, bool) {
		h, herr := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "jitid.audit.v1.AuditService"})
		resp, qerr := client.QueryEvents(context.Background(), &auditv1.QueryEventsRequest{Filter: &auditv1.EventFilter{TaskId: "task-1"}})
		o := observed{h, herr, len(resp.GetRecords()), qerr}
		return o, herr == nil && h.GetStatus() == healthpb.HealthCheckResponse_SERVING && qerr == nil && o.records == 1
	})
	res, err := http.Get("http://" + a.Server().AdminAddress() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready grpcserver.ReadyReport
	err = json.NewDecoder(res.Body).Decode(&ready)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK || len(ready.Checks) != 1 || ready.Checks[0].Name != "store" || !ready.Checks[0].Ready {
		t.Errorf("/readyz = %d %+v (%v), want 200 with the store ready", res.StatusCode, ready, err)
	}
	v, err := client.VerifyLog(context.Background(), &auditv1.VerifyLogRequest{})
	if err != nil || !v.GetOk() || v.GetRecordsChecked() != 1 {
		t.Errorf("VerifyLog() = %v, %v; want ok over 1", v, err)
	}
}

func TestPortTakenFailsAtOnceWithTheBindError(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := load(t, newPKI(t).mtlsEnv(map[string]string{
		"JITID_GRPC_ADDR":  taken.Addr().String(),
		"JITID_ADMIN_ADDR": "",
		"JITID_AUDIT_DSN":  "sqlite://" + filepath.Join(t.TempDir(), "audit.db"),
		"JITID_NATS_URL":   testserver.NATSURL(t),
	}))
	if _, err := app.New(cfg, slog.New(slog.DiscardHandler)); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("New() with the gRPC port taken = %v, want EADDRINUSE", err)
	}
}

func TestAuditThatCanAuthenticateNobodyRefusesToStart(t *testing.T) {
	t.Parallel()
	cfg := load(t, map[string]string{
		"JITID_GRPC_ADDR":  "127.0.0.1:0",
		"JITID_ADMIN_ADDR": "",
		"JITID_AUDIT_DSN":  "sqlite://" + filepath.Join(t.TempDir(), "audit.db"),
		"JITID_NATS_URL":   testserver.NATSURL(t),
	})
	if _, err := app.New(cfg, slog.New(slog.DiscardHandler)); !errors.Is(err, servicecmd.ErrNoCallerAuthentication) {
		t.Errorf("New() in plaintext without -caller-jwks = %v, want ErrNoCallerAuthentication", err)
	}
}
