package app_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/pkg/envflag"
	"github.com/jitid/jitid/pkg/mtls"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
	"github.com/jitid/jitid/services/policy/internal/app"
	"github.com/jitid/jitid/services/policy/internal/config"
	"github.com/jitid/jitid/testkit/testca"
)

func TestPolicyOverMTLSServesOnlyTheAllowedClients(t *testing.T) {
	t.Parallel()
	const (
		policyID = "spiffe://jitid.test/policy"
		issuerID = "spiffe://jitid.test/issuer"
	)
	ca := testca.New(t, "jitid.test")
	f := ca.WriteSVID(t, t.TempDir(), policyID)
	cfg, err := config.Load([]string{
		"-grpc-addr", "127.0.0.1:0", "-admin-addr", "", "-authzen-addr", "",
		"-tls-cert", f.Cert, "-tls-key", f.Key, "-tls-bundle", f.Bundle, "-allowed-clients", issuerID,
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

	getSet := func(clientID string) error {
		src, err := mtls.NewFileSource(func() mtls.FileConfig {
			c := ca.WriteSVID(t, t.TempDir(), clientID)
			return mtls.FileConfig{CertFile: c.Cert, KeyFile: c.Key, BundleFile: c.Bundle}
		}())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = src.Close() }()
		authz, err := mtls.ParseAllowList([]string{policyID})
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(a.Server().GRPCAddress(), grpc.WithTransportCredentials(mtls.ClientCredentials(src, authz)))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		_, err = policyv1.NewPolicyServiceClient(conn).GetPolicySet(cctx, &policyv1.GetPolicySetRequest{})
		return err
	}
	if err := getSet(issuerID); err != nil {
		t.Errorf("GetPolicySet from the allowed issuer = %v, want success", err)
	}
	// Same CA, another SPIFFE ID: the server refuses the handshake. Under
	// TLS 1.3 the client learns it as a "bad certificate" alert or as a
	// connection the server already closed, depending on timing, so only
	// the code is checked.
	if err := getSet("spiffe://jitid.test/intruder"); status.Code(err) != codes.Unavailable {
		t.Errorf("GetPolicySet from a client outside -allowed-clients = %v, want Unavailable, the server refusing its certificate", err)
	}
}
