package servicecmd_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/pkg/servicecmd"
)

func TestServiceThatCanAuthenticateNobodyRefusesToStart(t *testing.T) {
	t.Parallel()
	c, f, err := parse(t, nil, nil)
	if err != nil || len(f.Errors()) != 0 {
		t.Fatalf("Parse() = %v, %v", err, f.Errors())
	}
	_, err = c.OpenCallers(context.Background(), "issuer", slog.New(slog.DiscardHandler), nil)
	if !errors.Is(err, servicecmd.ErrNoCallerAuthentication) || !errors.Is(err, servicecmd.ErrInvalid) {
		t.Fatalf("OpenCallers() without TLS or -caller-jwks = %v, want ErrNoCallerAuthentication", err)
	}
	msg := err.Error()
	for _, flag := range []string{"-tls-cert", "-spiffe-socket", "-caller-jwks"} {
		if !strings.Contains(msg, flag) {
			t.Errorf("refusal %q does not name %s", msg, flag)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("refusal %q is more than one line", msg)
	}
}

func TestCallerJWKSAloneLetsAPlaintextServiceStart(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cron.jwks")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	c, f, err := parse(t, []string{"-caller-jwks", "reports-cron=" + path}, nil)
	if err != nil || len(f.Errors()) != 0 {
		t.Fatalf("Parse() = %v, %v", err, f.Errors())
	}
	cs, err := c.OpenCallers(context.Background(), "issuer", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatalf("OpenCallers() = %v", err)
	}
	defer func() { _ = cs.Close() }()
	if c.ServerOptions("issuer", nil, nil, cs).Authenticate == nil {
		t.Error("ServerOptions() has no Authenticator")
	}
}

func TestCallerFlagsAreCheckedWithTheRest(t *testing.T) {
	t.Parallel()
	_, f, err := parse(t, []string{"-caller-jwks", "/etc/jitid/keys.jwks,spiffe://acme.example/bot=/x", "-rate-burst", "-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	errs := f.Errors()
	want := []string{"-rate-burst", "-caller-jwks", "-caller-jwks"}
	if len(errs) != len(want) {
		t.Fatalf("Errors() = %v, want %d", errs, len(want))
	}
	for i, w := range want {
		if !errors.Is(errs[i], servicecmd.ErrInvalid) || !strings.Contains(errs[i].Error(), w) {
			t.Errorf("Errors()[%d] = %v, want ErrInvalid naming %s", i, errs[i], w)
		}
	}
	if _, _, err := parse(t, []string{"-rate-limit", "-5"}, nil); err == nil {
		t.Error("-rate-limit -5 parsed, want an error")
	}
}

func TestRateLimitFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args      []string
		env       map[string]string
		wantRate  float64
		wantBurst int
	}{
		{nil, nil, 0, 0}, // grpcserver's defaults
		{[]string{"-rate-limit", "50", "-rate-burst", "100"}, nil, 50, 100},
		{nil, map[string]string{"JITID_RATE_LIMIT": "off"}, math.Inf(1), 0},
	} {
		c, f, err := parse(t, tc.args, tc.env)
		if err != nil || len(f.Errors()) != 0 {
			t.Fatalf("%v %v: Parse() = %v, %v", tc.args, tc.env, err, f.Errors())
		}
		if c.Limits.CallerRate != tc.wantRate || c.Limits.CallerBurst != tc.wantBurst {
			t.Errorf("%v %v: rate %v burst %d, want %v %d", tc.args, tc.env, c.Limits.CallerRate, c.Limits.CallerBurst, tc.wantRate, tc.wantBurst)
		}
	}
	if grpcserver.NoRateLimit != math.Inf(1) {
		t.Fatal("NoRateLimit is not +Inf")
	}
}
