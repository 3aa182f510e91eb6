package grpcapi_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/pkg/statusreason"
	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	"github.com/jitid/jitid/services/audit/internal/audit"
	"github.com/jitid/jitid/services/audit/internal/grpcapi"
	"github.com/jitid/jitid/testkit/grpctest"
)

// callerFromHeader makes the "x-test-caller" metadata value the caller,
// and leaves a call without it with none.
func callerFromHeader(ctx context.Context) (context.Context, error) {
	if v := metadata.ValueFromIncomingContext(ctx, "x-test-caller"); len(v) == 1 {
		return grpcserver.WithCaller(ctx, v[0]), nil
	}
	return ctx, nil
}

// readAll makes each read of the log as caller ("" for no caller) and
// returns the error of each, by method.
func readAll(t *testing.T, client auditv1.AuditServiceClient, caller string) map[string]error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if caller != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-test-caller", caller)
	}
	errs := map[string]error{}
	_, errs["QueryEvents"] = client.QueryEvents(ctx, &auditv1.QueryEventsRequest{})
	_, errs["VerifyLog"] = client.VerifyLog(ctx, &auditv1.VerifyLogRequest{})
	tctx, tcancel := context.WithCancel(ctx)
	defer tcancel()
	stream, err := client.TailEvents(tctx, &auditv1.TailEventsRequest{})
	if err == nil {
		// An allowed tail sends its start header first; a refused one ends
		// without headers, its status read by Recv.
		var md metadata.MD
		if md, err = stream.Header(); err == nil && len(md.Get(grpcapi.TailStartHeader)) == 0 {
			_, err = stream.Recv()
		}
	}
	errs["TailEvents"] = err
	return errs
}

func TestOnlyAuditorsAndAdminsReadTheLog(t *testing.T) {
	t.Parallel()
	const (
		admin    = "spiffe://jitid.test/admin"
		platform = "spiffe://jitid.test/platform/support-bot"
	)
	svc := audit.New(openStore(t, filepath.Join(t.TempDir(), "audit.db")), audit.Options{TailPollInterval: 50 * time.Millisecond, Logger: quiet})
	srv := grpcserver.New(grpcserver.Options{Name: "audit", GRPCAddr: "127.0.0.1:0", Logger: quiet, Authenticate: callerFromHeader})
	grpcapi.New(svc, quiet, grpcapi.Options{Readers: []string{auditor, admin}}).Register(srv.GRPC())
	client := auditv1.NewAuditServiceClient(grpctest.Run(t, srv))

	for _, reader := range []string{auditor, admin} {
		for m, err := range readAll(t, client, reader) {
			if err != nil {
				t.Errorf("%s by %s: %v, want allowed", m, reader, err)
			}
		}
	}
	for m, err := range readAll(t, client, platform) {
		if status.Code(err) != codes.PermissionDenied || statusreason.Of(err) != statusreason.CallerNotAllowed {
			t.Errorf("%s by a platform: %v, want PERMISSION_DENIED %s", m, err, statusreason.CallerNotAllowed)
		}
	}
	for m, err := range readAll(t, client, "") {
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s without a caller: %v, want UNAUTHENTICATED (fail closed)", m, err)
		}
	}
}
