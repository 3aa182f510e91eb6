package app_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/pkg/statusreason"
	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	"github.com/jitid/jitid/testkit"
	"github.com/jitid/jitid/testkit/gobin"
	"github.com/jitid/jitid/testkit/launch"
	"github.com/jitid/jitid/testkit/testserver"
)

// TestPlatformCannotReadOrTailTheAuditLog runs the built audit binary on
// mTLS: a platform the transport accepts (its trust domain is allowed)
// still may not query, tail or verify the log, which names every
// platform's agents, delegators and tasks; the auditor may.
func TestPlatformCannotReadOrTailTheAuditLog(t *testing.T) {
	t.Parallel()
	certs := newPKI(t)
	dir := t.TempDir()
	bin := gobin.Build(t, gobin.Target{Module: "github.com/jitid/jitid/services/audit", Package: "./cmd/audit"})
	ns := testserver.Namespace(t)
	spec := launch.Service("audit", bin, filepath.Join(dir, "audit.log"),
		"-grpc-addr", "127.0.0.1:0", "-admin-addr", "",
		"-audit-dsn", "sqlite://"+filepath.Join(dir, "audit.db"),
		"-nats-url", testserver.NATSURL(t), "-stream", "EVENTS_"+ns, "-subject-prefix", ns+".events",
		"-consumer", "audit-"+ns, "-log-format", "text",
		"-tls-cert", certs.server.Cert, "-tls-key", certs.server.Key, "-tls-bundle", certs.server.Bundle,
		"-allowed-clients", "spiffe://jitid.test", "-auditors", auditorID)
	// The launcher's health probe is plaintext, which an mTLS server
	// refuses: the serving line is enough here.
	spec.Health = false
	p := launch.ForTest(t, spec)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	auditor := auditv1.NewAuditServiceClient(dialAs(t, p.Addr("grpc"), certs.auditor))
	platform := auditv1.NewAuditServiceClient(dialAs(t, p.Addr("grpc"), certs.platform))

	// The store opens after the serving line; the auditor's query says when.
	testkit.Eventually(t, "the auditor's query to succeed", 30*time.Second, 100*time.Millisecond, func() (string, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := auditor.QueryEvents(ctx, &auditv1.QueryEventsRequest{})
		return fmt.Sprint(err), err == nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	refused := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.PermissionDenied || statusreason.Of(err) != statusreason.CallerNotAllowed {
			t.Errorf("%s by a platform: %v, want PERMISSION_DENIED %s", what, err, statusreason.CallerNotAllowed)
		}
	}
	_, err := platform.QueryEvents(ctx, &auditv1.QueryEventsRequest{})
	refused("QueryEvents", err)
	_, err = platform.VerifyLog(ctx, &auditv1.VerifyLogRequest{})
	refused("VerifyLog", err)
	stream, err := platform.TailEvents(ctx, &auditv1.TailEventsRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	refused("TailEvents", err)

	if _, err := auditor.VerifyLog(ctx, &auditv1.VerifyLogRequest{}); err != nil {
		t.Errorf("VerifyLog by the auditor: %v", err)
	}
}
