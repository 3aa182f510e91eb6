package mtls_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/pkg/mtls"
)

const (
	policyID = "spiffe://jitid.test/policy"
	issuerID = "spiffe://jitid.test/issuer"
)

// recorder is a gRPC service that remembers who called it.
type recorder struct {
	healthpb.UnimplementedHealthServer

	mu      sync.Mutex
	calls   int
	callers []spiffeid.ID
}

func (r *recorder) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if id, ok := mtls.PeerID(ctx); ok {
		r.callers = append(r.callers, id)
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (r *recorder) seen() (calls int, callers []spiffeid.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, append([]spiffeid.ID(nil), r.callers...)
}

// serve runs a gRPC server with creds on a real loopback socket until the
// test ends.
func serve(t *testing.T, creds credentials.TransportCredentials) (string, *recorder) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(creds))
	rec := &recorder{}
	healthpb.RegisterHealthServer(srv, rec)
	go func() { _ = srv.Serve(lis) }() // a server that stops serving fails the calls
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), rec
}

// call makes one Check call over a new connection and returns the server's
// peer as the client saw it.
func call(t *testing.T, addr string, creds credentials.TransportCredentials) (*peer.Peer, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p peer.Peer
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	return &p, err
}

func TestMutualTLSCallCarriesBothPeersSPIFFEIDs(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "jitid.test")
	addr, rec := serve(t, mtls.ServerCredentials(fileSource(t, ca, policyID), mtls.AllowIDs(spiffeid.RequireFromString(issuerID))))

	p, err := call(t, addr, mtls.ClientCredentials(fileSource(t, ca, issuerID), mtls.AllowIDs(spiffeid.RequireFromString(policyID))))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got, ok := mtls.PeerIDFromPeer(p); !ok || got.String() != policyID {
		t.Errorf("client saw server ID %v (ok=%v), want %s", got, ok, policyID)
	}
	calls, callers := rec.seen()
	if calls != 1 || len(callers) != 1 || callers[0].String() != issuerID {
		t.Errorf("server saw %d calls from %v, want 1 from %s", calls, callers, issuerID)
	}
}

func TestPlaintextClientRefused(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "jitid.test")
	addr, rec := serve(t, mtls.ServerCredentials(fileSource(t, ca, policyID), mtls.AllowTrustDomain(spiffeid.RequireTrustDomainFromString("jitid.test"))))

	_, err := call(t, addr, insecure.NewCredentials())
	if status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext Check: got %v, want Unavailable", err)
	}
	if calls, _ := rec.seen(); calls != 0 {
		t.Errorf("handler ran %d times for a plaintext client", calls)
	}
}

func TestTLSClientWithoutCertificateRefused(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "jitid.test")
	addr, rec := serve(t, mtls.ServerCredentials(fileSource(t, ca, policyID), mtls.AllowTrustDomain(spiffeid.RequireTrustDomainFromString("jitid.test"))))

	// A TLS client that trusts anything but has no certificate to show.
	_, err := call(t, addr, credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Check without a client certificate: got %v, want Unavailable", err)
	}
	if calls, _ := rec.seen(); calls != 0 {
		t.Errorf("handler ran %d times for a client without a certificate", calls)
	}
}

func TestClientCertificateFromAnotherCARefused(t *testing.T) {
	t.Parallel()
	ca, rogue := newCA(t, "jitid.test"), newCA(t, "jitid.test rogue")
	addr, rec := serve(t, mtls.ServerCredentials(fileSource(t, ca, policyID), mtls.AllowIDs(spiffeid.RequireFromString(issuerID))))

	// The rogue certificate claims an allowed ID and the rogue client trusts
	// the real server, so only the server's chain check can stop it.
	client := fileSource(t, rogue, issuerID)
	trusting := sourceWithBundle{Source: client, bundle: fileSource(t, ca, issuerID)}
	_, err := call(t, addr, mtls.ClientCredentials(trusting, mtls.AllowIDs(spiffeid.RequireFromString(policyID))))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Check with another CA's certificate: got %v, want Unavailable", err)
	}
	if calls, _ := rec.seen(); calls != 0 {
		t.Errorf("handler ran %d times for a certificate of another CA", calls)
	}
}

// sourceWithBundle presents one source's SVID and trusts another's bundle.
type sourceWithBundle struct {
	mtls.Source
	bundle mtls.Source
}

func (s sourceWithBundle) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.bundle.GetX509BundleForTrustDomain(td)
}

func TestClientOutsideAllowListRefused(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "jitid.test")
	allow, err := mtls.ParseAllowList([]string{issuerID, "spiffe://other.test"})
	if err != nil {
		t.Fatal(err)
	}
	addr, rec := serve(t, mtls.ServerCredentials(fileSource(t, ca, policyID), allow))

	_, err = call(t, addr, mtls.ClientCredentials(fileSource(t, ca, "spiffe://jitid.test/support-bot"), mtls.AllowIDs(spiffeid.RequireFromString(policyID))))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Check from an ID outside the allow-list: got %v, want Unavailable", err)
	}
	if calls, _ := rec.seen(); calls != 0 {
		t.Errorf("handler ran %d times for a client outside the allow-list", calls)
	}
}

func TestFakePolicyServerGetsNoRequest(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "jitid.test")
	// A workload of the same trust domain, with a valid certificate, that
	// listens where the issuer expects the policy service and would answer
	// anything.
	addr, fake := serve(t, mtls.ServerCredentials(fileSource(t, ca, "spiffe://jitid.test/fake-policy"), mtls.AllowTrustDomain(spiffeid.RequireTrustDomainFromString("jitid.test"))))

	_, err := call(t, addr, mtls.ClientCredentials(fileSource(t, ca, issuerID), mtls.AllowIDs(spiffeid.RequireFromString(policyID))))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Check against a server outside the allow-list: got %v, want Unavailable", err)
	}
	if calls, _ := fake.seen(); calls != 0 {
		t.Errorf("fake server received %d requests", calls)
	}
}

func TestNilAuthorizerRefusesEveryPeer(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "jitid.test")
	addr, rec := serve(t, mtls.ServerCredentials(fileSource(t, ca, policyID), nil))

	_, err := call(t, addr, mtls.ClientCredentials(fileSource(t, ca, issuerID), mtls.AllowIDs(spiffeid.RequireFromString(policyID))))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Check against a server without an authorizer: got %v, want Unavailable", err)
	}
	if calls, _ := rec.seen(); calls != 0 {
		t.Errorf("handler ran %d times without an authorizer", calls)
	}
}

func TestOnlyTLS13IsNegotiated(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "jitid.test")
	lis, err := tls.Listen("tcp", "127.0.0.1:0", mtls.ServerTLSConfig(fileSource(t, ca, policyID), mtls.AllowIDs(spiffeid.RequireFromString(issuerID))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				// The client's side of the handshake is what the test checks.
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Read(make([]byte, 1))
			}()
		}
	}()
	client := fileSource(t, ca, issuerID)
	allowPolicy := mtls.AllowIDs(spiffeid.RequireFromString(policyID))

	conn, err := tls.Dial("tcp", lis.Addr().String(), mtls.ClientTLSConfig(client, allowPolicy))
	if err != nil {
		t.Fatalf("TLS 1.3 handshake: %v", err)
	}
	if v := conn.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("negotiated version %#x, want TLS 1.3", v)
	}
	_ = conn.Close() // the handshake is what was tested

	old := mtls.ClientTLSConfig(client, allowPolicy)
	old.MinVersion, old.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if conn, err := tls.Dial("tcp", lis.Addr().String(), old); err == nil {
		_ = conn.Close()
		t.Error("a TLS 1.2 client completed a handshake")
	}
}

func TestPeerIDFalseWithoutVerifiedHandshake(t *testing.T) {
	t.Parallel()
	if id, ok := mtls.PeerID(context.Background()); ok {
		t.Errorf("PeerID without a peer: %v, true", id)
	}
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{}})
	if id, ok := mtls.PeerID(ctx); ok {
		t.Errorf("PeerID for TLS not set up by mtls: %v, true", id)
	}
}

func TestAuthorizers(t *testing.T) {
	t.Parallel()
	id := spiffeid.RequireFromString
	td := spiffeid.RequireTrustDomainFromString
	tests := []struct {
		name   string
		auth   mtls.Authorizer
		peer   string
		accept bool
	}{
		{"listed ID", mtls.AllowIDs(id(issuerID)), issuerID, true},
		{"unlisted ID", mtls.AllowIDs(id(issuerID)), policyID, false},
		{"ID whose path extends a listed one", mtls.AllowIDs(id(issuerID)), issuerID + "/x", false},
		{"empty list", mtls.AllowIDs(), issuerID, false},
		{"member of the trust domain", mtls.AllowTrustDomain(td("jitid.test")), issuerID, true},
		{"member of another trust domain", mtls.AllowTrustDomain(td("jitid.test")), "spiffe://jitid.test.evil/issuer", false},
		{"any of, second matches", mtls.AnyOf(mtls.AllowIDs(id(policyID)), mtls.AllowTrustDomain(td("other.test"))), "spiffe://other.test/a", true},
		{"any of, none matches", mtls.AnyOf(mtls.AllowIDs(id(policyID)), mtls.AllowTrustDomain(td("other.test"))), issuerID, false},
		{"any of nothing", mtls.AnyOf(), issuerID, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.auth(id(tt.peer), nil)
			if tt.accept && err != nil {
				t.Errorf("refused %s: %v", tt.peer, err)
			}
			if !tt.accept && !errors.Is(err, mtls.ErrNotAllowed) {
				t.Errorf("%s: got %v, want ErrNotAllowed", tt.peer, err)
			}
		})
	}
}

func TestParseAllowList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		entries  []string
		accepted []string
		refused  []string
		wantErr  bool
	}{
		{name: "IDs", entries: []string{issuerID, policyID}, accepted: []string{issuerID, policyID}, refused: []string{"spiffe://jitid.test/audit"}},
		{name: "trust domain and ID", entries: []string{"spiffe://other.test", issuerID}, accepted: []string{issuerID, "spiffe://other.test/x"}, refused: []string{policyID}},
		{name: "empty", wantErr: true},
		{name: "not a SPIFFE ID", entries: []string{"https://jitid.test/issuer"}, wantErr: true},
		{name: "upper case trust domain", entries: []string{"spiffe://JITID.test/issuer"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			auth, err := mtls.ParseAllowList(tt.entries)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseAllowList(%q) accepted", tt.entries)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.accepted {
				if err := auth(spiffeid.RequireFromString(s), nil); err != nil {
					t.Errorf("refused %s: %v", s, err)
				}
			}
			for _, s := range tt.refused {
				if err := auth(spiffeid.RequireFromString(s), nil); !errors.Is(err, mtls.ErrNotAllowed) {
					t.Errorf("%s: got %v, want ErrNotAllowed", s, err)
				}
			}
		})
	}
}
