package grpcserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/testkit"
)

// testService is grpc-go's own test service, whose EmptyCall panics or
// answers NotFound.
type testService struct {
	testpb.UnimplementedTestServiceServer
	panics bool
}

func (s testService) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	if s.panics {
		panic("boom")
	}
	return nil, status.Error(codes.NotFound, "no such thing")
}

const testServiceName = "grpc.testing.TestService"

func registerTestService(s *grpcserver.Server, svc testService) {
	testpb.RegisterTestServiceServer(s.GRPC(), svc)
}

func emptyCall(conn *grpc.ClientConn) error {
	_, err := testpb.NewTestServiceClient(conn).EmptyCall(context.Background(), &testpb.Empty{})
	return err
}

// syncBuffer is a log sink that the server writes while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON log lines written so far.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

type started struct {
	srv    *grpcserver.Server
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   <-chan error
	logs   *syncBuffer
}

func start(t *testing.T) started {
	t.Helper()
	return startWith(t, grpcserver.Options{AdminAddr: "127.0.0.1:0"}, nil)
}

// startWith runs a server on port 0; setup registers services and
// dependencies before it serves.
func startWith(t *testing.T, opts grpcserver.Options, setup func(*grpcserver.Server)) started {
	t.Helper()
	logs := &syncBuffer{}
	opts.Name, opts.GRPCAddr = "test", "127.0.0.1:0"
	opts.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := grpcserver.New(opts)
	if setup != nil {
		setup(s)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		done <- s.Run(ctx)
	}()
	conn, err := grpc.NewClient(s.GRPCAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		conn.Close()
		<-finished
	})
	return started{srv: s, conn: conn, cancel: cancel, done: done, logs: logs}
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

func healthOf(t *testing.T, conn *grpc.ClientConn, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("health %q: %v", service, err)
	}
	return resp.GetStatus()
}

func TestHealthReflectionAdminAndGracefulStop(t *testing.T) {
	t.Parallel()
	st := start(t)
	if got := healthOf(t, st.conn, ""); got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, want SERVING", got)
	}
	ctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	stream, err := reflectionpb.NewServerReflectionClient(st.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, svc := range r.GetListServicesResponse().GetService() {
		found = found || svc.GetName() == "grpc.health.v1.Health"
	}
	if !found {
		t.Errorf("reflection does not list grpc.health.v1.Health: %v", r)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _ := get(t, "http://"+st.srv.AdminAddress()+path); code != http.StatusOK {
			t.Errorf("GET %s = %d", path, code)
		}
	}
	ccancel() // ends the reflection stream, so the graceful stop has nothing to wait for
	st.cancel()
	select {
	case err := <-st.done:
		if err != nil {
			t.Errorf("Run() = %v after graceful stop", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestPprofOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	off := start(t)
	if code, _ := get(t, "http://"+off.srv.AdminAddress()+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("pprof off: GET /debug/pprof/ = %d, want 404", code)
	}
	on := startWith(t, grpcserver.Options{AdminAddr: "127.0.0.1:0", Pprof: true}, nil)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/allocs", "/debug/pprof/profile?seconds=1"} {
		if code, _ := get(t, "http://"+on.srv.AdminAddress()+path); code != http.StatusOK {
			t.Errorf("pprof on: GET %s = %d, want 200", path, code)
		}
	}
}

func TestRecoveryTurnsPanicIntoInternal(t *testing.T) {
	t.Parallel()
	st := startWith(t, grpcserver.Options{}, func(s *grpcserver.Server) { registerTestService(s, testService{panics: true}) })
	err := emptyCall(st.conn)
	if status.Code(err) != codes.Internal {
		t.Errorf("panicking handler: code %v, want Internal", status.Code(err))
	}
}

func TestReadinessFollowsRequiredDependencies(t *testing.T) {
	t.Parallel()
	var store, cache *grpcserver.Dependency
	st := startWith(t, grpcserver.Options{AdminAddr: "127.0.0.1:0"}, func(s *grpcserver.Server) {
		registerTestService(s, testService{})
		store = s.Readiness().Add("store", true)
		cache = s.Readiness().Add("cache", false)
	})
	readyz := func() (int, grpcserver.ReadyReport) {
		code, body := get(t, "http://"+st.srv.AdminAddress()+"/readyz")
		var rep grpcserver.ReadyReport
		if err := json.Unmarshal(body, &rep); err != nil {
			t.Fatalf("/readyz body %q: %v", body, err)
		}
		return code, rep
	}
	wantHealth := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		for _, svc := range []string{"", testServiceName} {
			if got := healthOf(t, st.conn, svc); got != want {
				t.Errorf("health %q = %v, want %v", svc, got, want)
			}
		}
	}

	// Not ready until the first report.
	if code, rep := readyz(); code != http.StatusServiceUnavailable || rep.Status != "not_ready" {
		t.Errorf("before any report: /readyz = %d %+v, want 503 not_ready", code, rep)
	}
	wantHealth(healthpb.HealthCheckResponse_NOT_SERVING)

	store.Set(nil)
	cache.Set(errors.New("cache 127.0.0.1:1 unreachable"))
	code, rep := readyz()
	if code != http.StatusOK || rep.Status != "ready" {
		t.Errorf("optional dependency down: /readyz = %d %+v, want 200 ready", code, rep)
	}
	if len(rep.Checks) != 2 || rep.Checks[0].Name != "cache" || rep.Checks[0].Ready || rep.Checks[0].Error == "" ||
		rep.Checks[1].Name != "store" || !rep.Checks[1].Ready || !rep.Checks[1].Required {
		t.Errorf("/readyz checks = %+v, want cache down with its error, store ready and required", rep.Checks)
	}
	wantHealth(healthpb.HealthCheckResponse_SERVING)

	store.Set(errors.New("store unreachable"))
	if code, rep := readyz(); code != http.StatusServiceUnavailable || rep.Status != "not_ready" {
		t.Errorf("required dependency down: /readyz = %d %+v, want 503", code, rep)
	}
	wantHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	if code, _ := get(t, "http://"+st.srv.AdminAddress()+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d while a dependency is down; liveness must stay 200", code)
	}
}

func TestDependencyWatchReportsEachCheck(t *testing.T) {
	t.Parallel()
	s := grpcserver.New(grpcserver.Options{Name: "test", GRPCAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	dep := s.Readiness().Add("store", true)
	var mu sync.Mutex
	fail := errors.New("down")
	results := make(chan struct{}, 100)
	check := func(context.Context) error {
		defer func() { results <- struct{}{} }()
		mu.Lock()
		defer mu.Unlock()
		return fail
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go dep.Watch(ctx, 10*time.Millisecond, check)
	<-results
	<-results // the first result is Set before the second check runs
	if s.Readiness().Ready() {
		t.Fatal("Ready() = true while the check fails")
	}
	mu.Lock()
	fail = nil
	mu.Unlock()
	<-results
	<-results
	if !s.Readiness().Ready() {
		t.Fatal("Ready() = false after the check passed")
	}
}

func TestEmptyAdminAddrOpensNoAdminListener(t *testing.T) {
	t.Parallel()
	st := startWith(t, grpcserver.Options{AdminAddr: ""}, nil)
	if got := st.srv.AdminAddress(); got != "" {
		t.Errorf("AdminAddress() = %q, want empty", got)
	}
	if got := healthOf(t, st.conn, ""); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, want SERVING", got)
	}
}

func TestServingLineNamesEveryBoundAddress(t *testing.T) {
	t.Parallel()
	st := startWith(t, grpcserver.Options{AdminAddr: "127.0.0.1:0"}, func(s *grpcserver.Server) {
		s.AddHTTP("public_http", "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hi")) }))
	})
	healthOf(t, st.conn, "") // the lines are written before the server answers
	var grpcLine, httpLine map[string]any
	for _, l := range st.logs.lines(t) {
		if l["msg"] != "serving" {
			continue
		}
		if _, ok := l["grpc"]; ok {
			grpcLine = l
		}
		if _, ok := l["public_http"]; ok {
			httpLine = l
		}
	}
	if grpcLine == nil || grpcLine["grpc"] != st.srv.GRPCAddress() || grpcLine["admin"] != st.srv.AdminAddress() {
		t.Errorf("serving line %v, want grpc %s admin %s", grpcLine, st.srv.GRPCAddress(), st.srv.AdminAddress())
	}
	addr := st.srv.HTTPAddress("public_http")
	if strings.HasSuffix(addr, ":0") || httpLine == nil || httpLine["public_http"] != addr {
		t.Fatalf("serving line %v, want public_http %s (bound)", httpLine, addr)
	}
	if code, body := get(t, "http://"+addr+"/"); code != http.StatusOK || string(body) != "hi" {
		t.Errorf("GET public_http = %d %q", code, body)
	}
}

func TestPortTakenFailsAtOnceWithTheBindError(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, opts := range []grpcserver.Options{
		{GRPCAddr: taken.Addr().String()},
		{GRPCAddr: "127.0.0.1:0", AdminAddr: taken.Addr().String()},
		{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"},
	} {
		opts.Logger = slog.New(slog.DiscardHandler)
		s := grpcserver.New(opts)
		if opts.AdminAddr == "127.0.0.1:0" {
			s.AddHTTP("authzen", taken.Addr().String(), http.NotFoundHandler())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := s.Run(ctx)
		cancel()
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("Run(%+v) with a port taken = %v, want EADDRINUSE", opts, err)
		}
	}
}

func TestStandardGRPCMetricsAreServed(t *testing.T) {
	t.Parallel()
	st := startWith(t, grpcserver.Options{AdminAddr: "127.0.0.1:0"}, func(s *grpcserver.Server) { registerTestService(s, testService{}) })
	_ = emptyCall(st.conn)
	_, body := get(t, "http://"+st.srv.AdminAddress()+"/metrics")
	for _, want := range []string{
		`grpc_server_handled_total{grpc_code="NotFound",grpc_method="EmptyCall",grpc_service="grpc.testing.TestService",grpc_type="unary"} 1`,
		`grpc_server_handling_seconds_count{grpc_method="EmptyCall",grpc_service="grpc.testing.TestService",grpc_type="unary"} 1`,
		`grpc_server_started_total{grpc_method="EmptyCall",grpc_service="grpc.testing.TestService",grpc_type="unary"} 1`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestCallLogUsesErrorAndDurationKeys(t *testing.T) {
	t.Parallel()
	st := startWith(t, grpcserver.Options{}, func(s *grpcserver.Server) { registerTestService(s, testService{}) })
	_ = emptyCall(st.conn)
	healthOf(t, st.conn, "")
	var call map[string]any
	for _, l := range st.logs.lines(t) {
		if l["grpc.service"] == testServiceName {
			call = l
		}
		if l["grpc.service"] == healthpb.Health_ServiceDesc.ServiceName {
			t.Errorf("health call logged: %v", l)
		}
	}
	if call == nil {
		t.Fatal("no log line for the call")
	}
	if call["error"] != "no such thing" || call["grpc.code"] != "NotFound" {
		t.Errorf("call line %v, want error %q and grpc.code NotFound", call, "no such thing")
	}
	if _, ok := call["duration_ms"].(float64); !ok {
		t.Errorf("call line %v lacks a numeric duration_ms", call)
	}
	if _, ok := call["grpc.error"]; ok {
		t.Errorf("call line %v has grpc.error besides error", call)
	}
}

func TestAuthenticatorGuardsServicesButNotHealthOrReflection(t *testing.T) {
	t.Parallel()
	authn := func(context.Context) (context.Context, error) {
		return nil, status.Error(codes.Unauthenticated, "no credentials")
	}
	st := startWith(t, grpcserver.Options{Authenticate: authn}, func(s *grpcserver.Server) { registerTestService(s, testService{}) })
	err := emptyCall(st.conn)
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("service call without credentials: %v, want Unauthenticated", err)
	}
	if got := healthOf(t, st.conn, ""); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, want SERVING without credentials", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(st.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Errorf("reflection without credentials: %v", err)
	}
}

// callerService answers EmptyCall with the caller its handler sees.
type callerService struct {
	testpb.UnimplementedTestServiceServer
}

func (callerService) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	caller, ok := grpcserver.Caller(ctx)
	if !ok {
		return nil, status.Error(codes.NotFound, "no caller")
	}
	return nil, status.Error(codes.NotFound, caller)
}

func TestHandlerAndCallLogSeeTheCallerTheAuthenticatorSet(t *testing.T) {
	t.Parallel()
	const caller = "spiffe://jitid.test/platform/support-bot"
	authn := func(ctx context.Context) (context.Context, error) { return grpcserver.WithCaller(ctx, caller), nil }
	st := startWith(t, grpcserver.Options{Authenticate: authn}, func(s *grpcserver.Server) {
		testpb.RegisterTestServiceServer(s.GRPC(), callerService{})
	})
	if err := emptyCall(st.conn); status.Convert(err).Message() != caller {
		t.Errorf("handler saw caller %v, want %q", err, caller)
	}
	testkit.Eventually(t, "a call log line with the caller", 5*time.Second, 10*time.Millisecond, func() ([]map[string]any, bool) {
		lines := st.logs.lines(t)
		for _, l := range lines {
			if l["grpc.service"] == testServiceName && l["caller"] == caller {
				return lines, true
			}
		}
		return lines, false
	})
}

func TestPeerAuthenticatorRefusesACallWithoutAVerifiedPeer(t *testing.T) {
	t.Parallel()
	st := startWith(t, grpcserver.Options{Authenticate: grpcserver.PeerAuthenticator}, func(s *grpcserver.Server) {
		testpb.RegisterTestServiceServer(s.GRPC(), callerService{})
	})
	if err := emptyCall(st.conn); status.Code(err) != codes.Unauthenticated {
		t.Errorf("plaintext call to a PeerAuthenticator server = %v, want Unauthenticated", err)
	}
}
