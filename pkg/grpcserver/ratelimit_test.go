package grpcserver_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/pkg/statusreason"
)

// headerCaller is a test Authenticator: the caller is the "x-test-caller"
// metadata value.
func headerCaller(ctx context.Context) (context.Context, error) {
	vals := metadata.ValueFromIncomingContext(ctx, "x-test-caller")
	if len(vals) != 1 {
		return nil, status.Error(codes.Unauthenticated, "no caller")
	}
	return grpcserver.WithCaller(ctx, vals[0]), nil
}

func TestOneCallerIsThrottledWhileAnotherIsNot(t *testing.T) {
	t.Parallel()
	// A frozen clock: no token comes back during the test.
	frozen := time.Now()
	st := startWith(t, grpcserver.Options{
		AdminAddr: "127.0.0.1:0", Authenticate: headerCaller, Clock: func() time.Time { return frozen },
		Limits: grpcserver.Limits{CallerRate: 2, CallerBurst: 3},
	}, func(s *grpcserver.Server) { testpb.RegisterTestServiceServer(s.GRPC(), callerService{}) })
	call := func(caller string) error {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "x-test-caller", caller)
		_, err := testpb.NewTestServiceClient(st.conn).EmptyCall(ctx, &testpb.Empty{})
		return err
	}
	const flooder, other = "spiffe://jitid.test/platform/flooder", "spiffe://jitid.test/platform/quiet"
	for i := range 3 {
		if err := call(flooder); status.Code(err) != codes.NotFound {
			t.Fatalf("flooder call %d within its burst: %v, want the handler's NotFound", i, err)
		}
	}
	err := call(flooder)
	if status.Code(err) != codes.ResourceExhausted || statusreason.Of(err) != statusreason.RateLimited {
		t.Fatalf("flooder call over its burst: %v, want ResourceExhausted RATE_LIMITED", err)
	}
	var retry *errdetails.RetryInfo
	for _, d := range status.Convert(err).Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	// One token at 2/s comes back in 500ms.
	if got := retry.GetRetryDelay().AsDuration(); got != 500*time.Millisecond {
		t.Errorf("RetryInfo delay = %v (%v), want 500ms", got, retry)
	}
	for i := range 3 {
		if err := call(other); status.Code(err) != codes.NotFound {
			t.Errorf("other caller's call %d while the flooder is throttled: %v, want the handler's NotFound", i, err)
		}
	}
	if got := healthOf(t, st.conn, ""); got.String() != "SERVING" {
		t.Errorf("health while a caller is throttled = %v", got)
	}
	_, body := get(t, "http://"+st.srv.AdminAddress()+"/metrics")
	want := `jitid_rate_limited_calls_total{grpc_method="EmptyCall",grpc_service="grpc.testing.TestService"} 1`
	if !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}

func TestNoRateLimitTurnsTheLimitOff(t *testing.T) {
	t.Parallel()
	frozen := time.Now()
	st := startWith(t, grpcserver.Options{
		Authenticate: headerCaller, Clock: func() time.Time { return frozen },
		Limits: grpcserver.Limits{CallerRate: grpcserver.NoRateLimit, CallerBurst: 1},
	}, func(s *grpcserver.Server) { testpb.RegisterTestServiceServer(s.GRPC(), callerService{}) })
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-test-caller", "spiffe://jitid.test/a")
	for i := range 20 {
		if _, err := testpb.NewTestServiceClient(st.conn).EmptyCall(ctx, &testpb.Empty{}); status.Code(err) != codes.NotFound {
			t.Fatalf("call %d with the limit off: %v", i, err)
		}
	}
}
