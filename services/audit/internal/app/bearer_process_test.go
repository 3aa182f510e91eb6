package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/pkg/statusreason"
	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	"github.com/jitid/jitid/testkit"
	"github.com/jitid/jitid/testkit/gobin"
	"github.com/jitid/jitid/testkit/launch"
	"github.com/jitid/jitid/testkit/testserver"
)

// client is an RFC 7523 client: its id and the key its assertions are
// signed with.
type client struct {
	id  string
	key *ecdsa.PrivateKey
}

func newClient(t *testing.T, id string) client {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return client{id: id, key: k}
}

// jwks writes the client's public key set and returns the -caller-jwks
// entry binding it to the client.
func (c client) jwks(t *testing.T, dir string) string {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: c.key.Public(), KeyID: c.id + "-1", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, c.id+".jwks")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return c.id + "=" + path
}

// assertion returns a five-minute client assertion for aud signed by key.
func (c client) assertion(t *testing.T, aud string, key *ecdsa.PrivateKey) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", c.id+"-1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(sig).Claims(jwt.Claims{
		Issuer: c.id, Subject: c.id, Audience: jwt.Audience{aud}, ID: fmt.Sprint(now.UnixNano()),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestBearerCallersOfTheBuiltAuditService runs the audit binary in
// plaintext with -caller-jwks only: the auditor's client assertion (aud
// the default "jitid-audit") reads the log; another client's is refused
// PERMISSION_DENIED; a forged or misdirected one, or none, is
// UNAUTHENTICATED.
func TestBearerCallersOfTheBuiltAuditService(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	auditor, platform := newClient(t, "audit-reports"), newClient(t, "support-bot")
	bin := gobin.Build(t, gobin.Target{Module: "github.com/jitid/jitid/services/audit", Package: "./cmd/audit"})
	ns := testserver.Namespace(t)
	p := launch.ForTest(t, launch.Service("audit", bin, filepath.Join(dir, "audit.log"),
		"-grpc-addr", "127.0.0.1:0", "-admin-addr", "",
		"-audit-dsn", "sqlite://"+filepath.Join(dir, "audit.db"),
		"-nats-url", testserver.NATSURL(t), "-stream", "EVENTS_"+ns, "-subject-prefix", ns+".events",
		"-consumer", "audit-"+ns, "-log-format", "text",
		"-caller-jwks", auditor.jwks(t, dir)+","+platform.jwks(t, dir), "-auditors", auditor.id))
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(p.Addr("grpc"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := auditv1.NewAuditServiceClient(conn)
	query := func(token string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		_, err := c.QueryEvents(ctx, &auditv1.QueryEventsRequest{})
		return err
	}
	testkit.Eventually(t, "the auditor's query to succeed", 30*time.Second, 100*time.Millisecond, func() (string, bool) {
		err := query(auditor.assertion(t, "jitid-audit", auditor.key))
		return fmt.Sprint(err), err == nil
	})
	if err := query(platform.assertion(t, "jitid-audit", platform.key)); status.Code(err) != codes.PermissionDenied || statusreason.Of(err) != statusreason.CallerNotAllowed {
		t.Errorf("a platform's valid assertion: %v, want PERMISSION_DENIED %s", err, statusreason.CallerNotAllowed)
	}
	for name, tok := range map[string]string{
		"the auditor's id signed with the platform's key": auditor.assertion(t, "jitid-audit", platform.key),
		"an assertion for the issuer":                     auditor.assertion(t, "jitid-issuer", auditor.key),
		"no token":                                        "",
	} {
		if err := query(tok); status.Code(err) != codes.Unauthenticated || statusreason.Of(err) != statusreason.Unauthenticated {
			t.Errorf("%s: %v, want UNAUTHENTICATED", name, err)
		}
	}
}
