package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jitid/jitid/pkg/envflag"
	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/services/issuer/internal/app"
	"github.com/jitid/jitid/services/issuer/internal/config"
	"github.com/jitid/jitid/testkit"
	"github.com/jitid/jitid/testkit/testserver"
)

func load(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	base := map[string]string{
		"JITID_GRPC_ADDR":            "127.0.0.1:0",
		"JITID_ADMIN_ADDR":           "127.0.0.1:0",
		"JITID_PUBLIC_HTTP_ADDR":     "127.0.0.1:0",
		"JITID_NATS_URL":             testserver.NATSURL(t),
		"JITID_STREAM":               testserver.Namespace(t),
		"JITID_SUBJECT_PREFIX":       testserver.Namespace(t) + ".events",
		"JITID_REDIS_CHECK_INTERVAL": "100ms",
		// Nothing answers there: the issuer starts without policy and
		// refuses issuance until it does.
		"JITID_POLICY_ADDR": "127.0.0.1:1",
		// A plaintext service needs a way to authenticate callers: bearer
		// tokens of one client.
		"JITID_CALLER_JWKS": "test-client=" + callerJWKS(t),
	}
	for k, v := range env {
		base[k] = v
	}
	cfg, err := config.Load(nil, envflag.MapLookup(base), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// callerJWKS writes a JWKS of one client's public key and returns its path.
func callerJWKS(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "callers.jwks")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func readyz(t *testing.T, adminAddr string) (int, grpcserver.ReadyReport) {
	t.Helper()
	res, err := http.Get("http://" + adminAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var rep grpcserver.ReadyReport
	if err := json.NewDecoder(res.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, rep
}

// eventually waits up to 15s for cond to hold.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, what, 15*time.Second, 20*time.Millisecond, func() (bool, bool) { ok := cond(); return ok, ok })
}

// TestReadinessFollowsRedis runs the issuer as main does, against a Redis
// of its own: ready (/readyz 200, IssuerService SERVING) while Redis
// answers, not ready (503, NOT_SERVING) once it is gone, while /healthz,
// the discovery documents on the public listener and the gRPC server stay
// up.
func TestReadinessFollowsRedis(t *testing.T) {
	t.Parallel()
	redis := testserver.StartRedis(t)
	a, err := app.New(context.Background(), load(t, map[string]string{"JITID_REDIS_ADDR": redis.Addr()}), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := a.Server()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v after cancel", err)
		}
	}()
	conn, err := grpc.NewClient(srv.GRPCAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := func() healthpb.HealthCheckResponse_ServingStatus {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		resp, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{Service: "jitid.issuer.v1.IssuerService"})
		if err != nil {
			return healthpb.HealthCheckResponse_UNKNOWN
		}
		return resp.GetStatus()
	}

	eventually(t, "ready with Redis up", func() bool {
		code, rep := readyz(t, srv.AdminAddress())
		return code == http.StatusOK && len(rep.Checks) == 1 && rep.Checks[0].Name == "redis" && rep.Checks[0].Ready
	})
	if got := health(); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("IssuerService health with Redis up = %v, want SERVING", got)
	}
	res, err := http.Get("http://" + srv.HTTPAddress(app.PublicHTTPListener) + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("public JWKS = %d, want 200", res.StatusCode)
	}

	redis.Stop()
	eventually(t, "not ready with Redis gone", func() bool {
		code, rep := readyz(t, srv.AdminAddress())
		return code == http.StatusServiceUnavailable && rep.Status == "not_ready" && len(rep.Checks) == 1 && rep.Checks[0].Error != ""
	})
	if got := health(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("IssuerService health with Redis gone = %v, want NOT_SERVING", got)
	}
	res, err = http.Get("http://" + srv.AdminAddress() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("/healthz with Redis gone = %d, want 200 (liveness)", res.StatusCode)
	}
}

func TestPortTakenFailsAtOnceWithTheBindError(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := load(t, map[string]string{"JITID_REDIS_ADDR": testserver.RedisAddr(t), "JITID_PUBLIC_HTTP_ADDR": taken.Addr().String()})
	if _, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler)); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("New() with the public HTTP port taken = %v, want EADDRINUSE", err)
	}
}
