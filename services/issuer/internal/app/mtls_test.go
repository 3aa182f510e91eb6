package app_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jitid/jitid/pkg/envflag"
	"github.com/jitid/jitid/pkg/mtls"
	"github.com/jitid/jitid/pkg/servicecmd"
	"github.com/jitid/jitid/pkg/statusreason"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
	"github.com/jitid/jitid/services/issuer/internal/app"
	"github.com/jitid/jitid/testkit/testca"
	"github.com/jitid/jitid/testkit/testserver"
)

const (
	issuerID   = "spiffe://jitid.test/issuer"
	policyID   = "spiffe://jitid.test/policy"
	platformID = "spiffe://jitid.test/platform/support-bot"
)

// lockedBuffer is a log sink the server's goroutines write while the test
// reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// source is a file source for an SVID of id issued by ca, closed when the
// test ends.
func source(t *testing.T, ca *testca.CA, id string) *mtls.FileSource {
	t.Helper()
	f := ca.WriteSVID(t, t.TempDir(), id)
	src, err := mtls.NewFileSource(mtls.FileConfig{CertFile: f.Cert, KeyFile: f.Key, BundleFile: f.Bundle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	return src
}

// fakePolicy is a policy server over mTLS with the SPIFFE ID id that
// allows every request and counts the requests it gets.
type fakePolicy struct {
	policyv1.UnimplementedPolicyServiceServer
	calls atomic.Int64
}

func (p *fakePolicy) Evaluate(_ context.Context, req *policyv1.EvaluateRequest) (*policyv1.EvaluateResponse, error) {
	p.calls.Add(1)
	return &policyv1.EvaluateResponse{Decision: &identityv1.Decision{
		Allow: true, GrantedScopes: req.GetScopes(), MaxTtl: durationpb.New(15 * time.Minute),
		Profile: identityv1.Profile_PROFILE_MINIMAL, Policies: []string{"allow-all"}, PolicyVersion: "v1", DecisionId: "d-1",
	}}, nil
}

func startFakePolicy(t *testing.T, ca *testca.CA, id string) (string, *fakePolicy) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePolicy{}
	srv := grpc.NewServer(grpc.Creds(mtls.ServerCredentials(source(t, ca, id), allow(t, "spiffe://jitid.test"))))
	policyv1.RegisterPolicyServiceServer(srv, p)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), p
}

// startTLSIssuer runs an issuer with the SVID issuerID from ca, accepting
// platformID and talking to the policy service at policyAddr only if it
// presents policyID.
func startTLSIssuer(t *testing.T, ca *testca.CA, policyAddr string, log io.Writer) string {
	t.Helper()
	f := ca.WriteSVID(t, t.TempDir(), issuerID)
	cfg := load(t, map[string]string{
		"JITID_REDIS_ADDR":      testserver.RedisAddr(t),
		"JITID_KEY_PREFIX":      testserver.Namespace(t),
		"JITID_POLICY_ADDR":     policyAddr,
		"JITID_POLICY_ID":       policyID,
		"JITID_TLS_CERT":        f.Cert,
		"JITID_TLS_KEY":         f.Key,
		"JITID_TLS_BUNDLE":      f.Bundle,
		"JITID_ALLOWED_CLIENTS": platformID,
		"JITID_LOG_LEVEL":       "debug",
	})
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewJSONHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v after cancel", err)
		}
	})
	return a.Server().GRPCAddress()
}

func issuerClient(t *testing.T, addr string, creds credentials.TransportCredentials) issuerv1.IssuerServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return issuerv1.NewIssuerServiceClient(conn)
}

func platformCreds(t *testing.T, ca *testca.CA) credentials.TransportCredentials {
	t.Helper()
	return mtls.ClientCredentials(source(t, ca, platformID), allow(t, issuerID))
}

func allow(t *testing.T, entries ...string) mtls.Authorizer {
	t.Helper()
	a, err := mtls.ParseAllowList(entries)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func issueRequest(taskID string) *issuerv1.IssueCredentialRequest {
	return &issuerv1.IssueCredentialRequest{
		Agent:     &identityv1.Agent{Id: "agent:research-7f3a", Class: identityv1.AgentClass_AGENT_CLASS_EPHEMERAL},
		Delegator: &identityv1.Delegator{Id: "user:alice@example.com"},
		Task:      &identityv1.Task{Id: taskID, Purpose: "book tickets", Sensitivity: identityv1.Sensitivity_SENSITIVITY_MEDIUM},
		Scopes:    []string{"tickets:read"},
		Ttl:       durationpb.New(10 * time.Minute),
		Audience:  "tickets-api",
	}
}

func issue(t *testing.T, c issuerv1.IssuerServiceClient, taskID string) (*issuerv1.IssueCredentialResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.IssueCredential(ctx, issueRequest(taskID))
}

func TestPlaintextClientIsRefusedByAnMTLSIssuer(t *testing.T) {
	t.Parallel()
	ca := testca.New(t, "jitid.test")
	policyAddr, policy := startFakePolicy(t, ca, policyID)
	addr := startTLSIssuer(t, ca, policyAddr, io.Discard)

	_, err := issue(t, issuerClient(t, addr, insecure.NewCredentials()), "task-plaintext")
	if status.Code(err) != codes.Unavailable {
		t.Errorf("IssueCredential over plaintext = %v, want Unavailable (no TLS handshake)", err)
	}
	if n := policy.calls.Load(); n != 0 {
		t.Errorf("policy got %d requests from a plaintext caller, want 0", n)
	}
}

func TestClientCertificateFromAnUnknownCAIsRefused(t *testing.T) {
	t.Parallel()
	ca, rogue := testca.New(t, "jitid.test"), testca.New(t, "jitid.test rogue")
	policyAddr, policy := startFakePolicy(t, ca, policyID)
	addr := startTLSIssuer(t, ca, policyAddr, io.Discard)

	// The rogue client trusts the issuer's CA, so only the issuer's check
	// of the client certificate can refuse it.
	f := rogue.WriteSVID(t, t.TempDir(), platformID)
	if err := os.WriteFile(f.Bundle, ca.BundlePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	rogueSrc, err := mtls.NewFileSource(mtls.FileConfig{CertFile: f.Cert, KeyFile: f.Key, BundleFile: f.Bundle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rogueSrc.Close() })
	creds := mtls.ClientCredentials(rogueSrc, allow(t, issuerID))
	_, err = issue(t, issuerClient(t, addr, creds), "task-rogue")
	if status.Code(err) != codes.Unavailable {
		t.Errorf("IssueCredential with a rogue CA's certificate = %v, want Unavailable (handshake refused)", err)
	}
	if n := policy.calls.Load(); n != 0 {
		t.Errorf("policy got %d requests from a rogue caller, want 0", n)
	}
	// The same issuer serves a client of its own CA.
	if _, err := issue(t, issuerClient(t, addr, platformCreds(t, ca)), "task-known"); err != nil {
		t.Errorf("IssueCredential with a known CA's certificate = %v, want success", err)
	}
}

func TestFakePolicyServerWithAnotherSPIFFEIDGetsNoRequestAndNothingIsIssued(t *testing.T) {
	t.Parallel()
	ca := testca.New(t, "jitid.test")
	// Same CA, so the certificate verifies: only the SPIFFE ID is wrong.
	fakeAddr, fake := startFakePolicy(t, ca, "spiffe://jitid.test/impostor")
	addr := startTLSIssuer(t, ca, fakeAddr, io.Discard)

	resp, err := issue(t, issuerClient(t, addr, platformCreds(t, ca)), "task-impostor")
	if status.Code(err) != codes.Unavailable || statusreason.Of(err) != statusreason.PolicyUnavailable {
		t.Errorf("IssueCredential with an impostor policy = %v (reason %q), want Unavailable with reason %s", err, statusreason.Of(err), statusreason.PolicyUnavailable)
	}
	if resp.GetToken() != "" {
		t.Error("IssueCredential with an impostor policy returned a token")
	}
	if n := fake.calls.Load(); n != 0 {
		t.Errorf("impostor policy got %d requests, want 0", n)
	}
}

func TestCallerSPIFFEIDAppearsInTheCallLog(t *testing.T) {
	t.Parallel()
	ca := testca.New(t, "jitid.test")
	policyAddr, policy := startFakePolicy(t, ca, policyID)
	var log lockedBuffer
	addr := startTLSIssuer(t, ca, policyAddr, &log)

	if _, err := issue(t, issuerClient(t, addr, platformCreds(t, ca)), "task-logged"); err != nil {
		t.Fatal(err)
	}
	if n := policy.calls.Load(); n != 1 {
		t.Errorf("policy got %d requests, want 1", n)
	}
	// The log line is written once the handler has returned, which may be
	// after the client has the response.
	eventually(t, "the call log line names the caller", func() bool {
		for line := range strings.Lines(log.String()) {
			if strings.Contains(line, `"grpc.method":"IssueCredential"`) && strings.Contains(line, `"caller":"`+platformID+`"`) {
				return true
			}
		}
		return false
	})
}

func TestNonLoopbackListenWithoutTLSOrInsecureRefusesToStartInOneLine(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	err := app.Main(context.Background(), servicecmd.Env{
		Args:      []string{"-grpc-addr", "0.0.0.0:0"},
		Stdout:    io.Discard,
		Stderr:    &stderr,
		LookupEnv: envflag.MapLookup(nil),
	})
	if !errors.Is(err, servicecmd.ErrInvalid) || !errors.Is(err, mtls.ErrPlaintextListen) {
		t.Fatalf("Main() = %v, want ErrInvalid wrapping mtls.ErrPlaintextListen", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "-insecure") {
		t.Errorf("Main() error = %q, want one line naming -insecure", msg)
	}
	// -insecure is what lets it past the check (the bad Redis address then
	// stops it before anything starts).
	err = app.Main(context.Background(), servicecmd.Env{
		Args:      []string{"-grpc-addr", "0.0.0.0:0", "-insecure", "-redis-addr", "nowhere"},
		Stdout:    io.Discard,
		Stderr:    io.Discard,
		LookupEnv: envflag.MapLookup(nil),
	})
	if errors.Is(err, mtls.ErrPlaintextListen) {
		t.Errorf("Main() with -insecure = %v, want no plaintext-listen refusal", err)
	}
}
