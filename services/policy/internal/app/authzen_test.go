package app_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jitid/jitid/pkg/envflag"
	"github.com/jitid/jitid/pkg/mtls"
	"github.com/jitid/jitid/pkg/servicecmd"
	"github.com/jitid/jitid/services/policy/internal/app"
	"github.com/jitid/jitid/services/policy/internal/authzen"
	"github.com/jitid/jitid/services/policy/internal/config"
	"github.com/jitid/jitid/testkit/testca"
)

// TestAuthZENServesOnlyEvaluatorsOverMTLS: the AuthZEN endpoint speaks
// HTTPS with the gRPC server's certificate source and client allow-list.
// A client without a certificate, or with one outside -allowed-clients,
// fails the handshake; one the handshake lets in but that is neither an
// evaluator nor an admin gets 403; an evaluator gets decisions but may not
// pick their time, which an admin may.
func TestAuthZENServesOnlyEvaluatorsOverMTLS(t *testing.T) {
	t.Parallel()
	const (
		policyID   = "spiffe://jitid.test/policy"
		pepID      = "spiffe://jitid.test/tickets-api"
		adminID    = "spiffe://jitid.test/admin"
		platformID = "spiffe://jitid.test/platform/support-bot"
		strangerID = "spiffe://jitid.test/stranger"
	)
	ca := testca.New(t, "jitid.test")
	f := ca.WriteSVID(t, t.TempDir(), policyID)
	cfg, err := config.Load([]string{
		"-grpc-addr", "127.0.0.1:0", "-admin-addr", "", "-authzen-addr", "127.0.0.1:0",
		"-tls-cert", f.Cert, "-tls-key", f.Key, "-tls-bundle", f.Bundle,
		"-allowed-clients", strings.Join([]string{pepID, adminID, platformID}, ","),
		"-evaluators", pepID, "-admins", adminID,
	}, envflag.MapLookup(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(cfg, slog.New(slog.DiscardHandler))
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
	url := "https://" + a.Server().HTTPAddress(app.AuthZENListener) + authzen.EvaluationPath
	policyOnly, err := mtls.ParseAllowList([]string{policyID})
	if err != nil {
		t.Fatal(err)
	}
	clientAs := func(id string) *http.Client {
		var cfg *tls.Config
		if id == "" {
			// No certificate; the server's is still checked.
			cfg = &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true} //nolint:gosec // G402: the refusal is the server's to make; this client sends no certificate
		} else {
			c := ca.WriteSVID(t, t.TempDir(), id)
			src, err := mtls.NewFileSource(mtls.FileConfig{CertFile: c.Cert, KeyFile: c.Key, BundleFile: c.Bundle})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = src.Close() })
			cfg = mtls.ClientTLSConfig(src, policyOnly)
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	body := func(time string) string {
		return `{"subject": {"type": "agent", "id": "agent-1", "properties": {"class": "EPHEMERAL"}},
		  "action": {"name": "tickets:read"},
		  "resource": {"type": "task", "id": "t-1", "properties": {"sensitivity": "LOW"}},
		  "context": {"delegator": {"id": "carol", "entitlements": ["tickets:read"]}` + time + `}}`
	}
	post := func(c *http.Client, b string) (int, error) {
		resp, err := c.Post(url, "application/json", strings.NewReader(b))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	const withTime = `, "time": "2099-01-01T10:00:00Z"`

	for _, tc := range []struct {
		name, id, time string
		want           int // 0: the handshake fails
	}{
		{"no client certificate", "", "", 0},
		{"outside -allowed-clients", strangerID, "", 0},
		{"allowed but not an evaluator", platformID, "", http.StatusForbidden},
		{"evaluator", pepID, "", http.StatusOK},
		{"evaluator picking the time", pepID, withTime, http.StatusForbidden},
		{"admin picking the time", adminID, withTime, http.StatusOK},
	} {
		code, err := post(clientAs(tc.id), body(tc.time))
		switch {
		case tc.want == 0 && err == nil:
			t.Errorf("%s: answered %d, want the handshake refused", tc.name, code)
		case tc.want != 0 && (err != nil || code != tc.want):
			t.Errorf("%s: %d, %v; want %d", tc.name, code, err, tc.want)
		}
	}
	// Plain HTTP to the TLS port gets no decision either.
	resp, err := http.Post("http://"+a.Server().HTTPAddress(app.AuthZENListener)+authzen.EvaluationPath, "application/json", strings.NewReader(body("")))
	if err == nil {
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP to the AuthZEN port: 200, want a refusal")
		}
	}
}

// TestPolicyThatCanAuthenticateNobodyRefusesToStart: without TLS and
// without -caller-jwks no call could have a caller, so policy does not
// start (rather than serve decisions to nobody, or to anybody).
func TestPolicyThatCanAuthenticateNobodyRefusesToStart(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load([]string{"-grpc-addr", "127.0.0.1:0", "-admin-addr", "", "-authzen-addr", "127.0.0.1:0"},
		envflag.MapLookup(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.New(cfg, slog.New(slog.DiscardHandler)); !errors.Is(err, servicecmd.ErrNoCallerAuthentication) {
		t.Fatalf("app.New without TLS or -caller-jwks = %v, want ErrNoCallerAuthentication", err)
	}
}
