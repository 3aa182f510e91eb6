package callerauth_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/pkg/callerauth"
	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/pkg/mtls"
	"github.com/jitid/jitid/pkg/statusreason"
	"github.com/jitid/jitid/testkit"
	"github.com/jitid/jitid/testkit/testca"
)

// callerService answers EmptyCall NotFound with the caller its handler
// sees as the message.
type callerService struct {
	testpb.UnimplementedTestServiceServer
}

func (callerService) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	caller, ok := grpcserver.Caller(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "handler reached without a caller")
	}
	return nil, status.Error(codes.NotFound, caller)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serve runs a grpcserver with the callerauth Authenticator over v, on
// mTLS when creds is set, and returns its address and log.
func serve(t *testing.T, v *callerauth.Verifier, creds credentials.TransportCredentials) (string, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	s := grpcserver.New(grpcserver.Options{
		Name: "test", GRPCAddr: "127.0.0.1:0", Credentials: creds, Authenticate: callerauth.Authenticator(v),
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	testpb.RegisterTestServiceServer(s.GRPC(), callerService{})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s.GRPCAddress(), logs
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) testpb.TestServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return testpb.NewTestServiceClient(conn)
}

// callAs calls EmptyCall with the bearer token (none when empty) and
// returns the caller the handler saw, or the refusal.
func callAs(c testpb.TestServiceClient, token string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	_, err := c.EmptyCall(ctx, &testpb.Empty{})
	if status.Code(err) == codes.NotFound {
		return status.Convert(err).Message(), nil
	}
	return "", err
}

func fileSource(t *testing.T, ca *testca.CA, id string) *mtls.FileSource {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "svid")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	files := ca.WriteSVID(t, dir, id)
	src, err := mtls.NewFileSource(mtls.FileConfig{CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	return src
}

func wantUnauthenticated(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.Unauthenticated || statusreason.Of(err) != statusreason.Unauthenticated {
		t.Errorf("%s: %v, want Unauthenticated with reason UNAUTHENTICATED", what, err)
	}
}

func TestCallerIsTheBearerTokensSubjectElseTheMTLSPeer(t *testing.T) {
	t.Parallel()
	const (
		serverID = "spiffe://jitid.test/issuer"
		gateway  = "spiffe://jitid.test/platform/gateway"
	)
	f := newFixture(t)
	ca := testca.New(t, "jitid.test")
	srvSrc, cliSrc := fileSource(t, ca, serverID), fileSource(t, ca, gateway)
	allow, err := mtls.ParseAllowList([]string{"spiffe://jitid.test"})
	if err != nil {
		t.Fatal(err)
	}
	addr, logs := serve(t, f.v, mtls.ServerCredentials(srvSrc, allow))
	c := dial(t, addr, mtls.ClientCredentials(cliSrc, allow))
	now := time.Now()

	if got, err := callAs(c, ""); err != nil || got != gateway {
		t.Errorf("mTLS peer without a token: caller %q, %v; want %q", got, err, gateway)
	}
	if got, err := callAs(c, f.authority.sign(t, claimsFor(svidID, now), "")); err != nil || got != svidID {
		t.Errorf("mTLS peer with a JWT-SVID: caller %q, %v; want the token's %q", got, err, svidID)
	}
	// A bad token is refused even though the peer alone would pass: the
	// caller said who it was, and it was not.
	forged := newSigner(t, f.authority.kid).sign(t, claimsFor(svidID, now), "")
	_, err = callAs(c, forged)
	wantUnauthenticated(t, "mTLS peer with a forged token", err)
	testkit.Eventually(t, "a call log line naming the bearer caller", 5*time.Second, 10*time.Millisecond, func() (string, bool) {
		l := logs.String()
		return l, strings.Contains(l, `"caller":"`+svidID+`"`) && strings.Contains(l, `"caller":"`+gateway+`"`)
	})
	if strings.Contains(logs.String(), forged) {
		t.Error("the call log holds a token")
	}
}

func TestNoTokenAndNoCertificateIsUnauthenticated(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	addr, _ := serve(t, f.v, nil)
	c := dial(t, addr, insecure.NewCredentials())
	now := time.Now()
	_, err := callAs(c, "")
	wantUnauthenticated(t, "plaintext call without a token", err)
	if !strings.Contains(status.Convert(err).Message(), "Bearer") {
		t.Errorf("refusal %q does not say what to send", status.Convert(err).Message())
	}
	expired := claimsFor(svidID, now.Add(-time.Hour))
	for name, tok := range map[string]string{
		"expired":        f.authority.sign(t, expired, ""),
		"wrong audience": f.authority.sign(t, func() any { c := claimsFor(svidID, now); c.Audience = []string{"elsewhere"}; return c }(), ""),
		"forged":         newSigner(t, f.authority.kid).sign(t, claimsFor(svidID, now), ""),
	} {
		_, err := callAs(c, tok)
		wantUnauthenticated(t, name+" token", err)
	}
	assertion := claimsFor(clientID, now)
	assertion.Issuer = clientID
	if got, err := callAs(c, f.cron.sign(t, assertion, "")); err != nil || got != clientID {
		t.Errorf("client assertion over plaintext: caller %q, %v; want %q", got, err, clientID)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Basic dXNlcjpwYXNz")
	_, err = c.EmptyCall(ctx, &testpb.Empty{})
	wantUnauthenticated(t, "Basic authorization", err)
}

func TestServerWithoutKeySetsRefusesBearerTokens(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	addr, _ := serve(t, nil, nil)
	_, err := callAs(dial(t, addr, insecure.NewCredentials()), f.authority.sign(t, claimsFor(svidID, time.Now()), ""))
	wantUnauthenticated(t, "bearer token to a server with no key sets", err)
}
