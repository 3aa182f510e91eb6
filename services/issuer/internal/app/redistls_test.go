package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jitid/jitid/pkg/storeauth"
	"github.com/jitid/jitid/services/issuer/internal/config"
	"github.com/jitid/jitid/testkit/localinfra"
	"github.com/jitid/jitid/testkit/testserver"
)

// writeServerPKI writes a CA and a server certificate for 127.0.0.1 into
// dir, returning the CA, certificate and key paths.
func writeServerPKI(t *testing.T, dir string) (caPath, certPath, keyPath string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redis test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caPath, certPath, keyPath = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{caPath, "CERTIFICATE", caDER}, {certPath, "CERTIFICATE", der}, {keyPath, "PRIVATE KEY", keyDER}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caPath, certPath, keyPath
}

func TestRedisClientSpeaksTLSWithTheGivenCAAndPassword(t *testing.T) {
	dir := t.TempDir()
	caPath, certPath, keyPath := writeServerPKI(t, dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r, err := localinfra.StartRedis(context.Background(), localinfra.RedisOptions{
		Dir: t.TempDir(),
		Args: []string{"--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", certPath, "--tls-key-file", keyPath,
			"--tls-ca-cert-file", caPath, "--tls-auth-clients", "no", "--requirepass", defaultPassword},
	})
	if err != nil {
		if errors.Is(err, localinfra.ErrRedisNotInstalled) && !testserver.InCI() {
			t.Skipf("skipping: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
	pw := secretFile(t, defaultPassword, 0o600)
	if err := ping(t, config.Config{RedisAddrs: []string{addr}, RedisPasswordFile: pw, RedisTLS: storeauth.TLSFiles{CA: caPath}}); err != nil {
		t.Fatalf("ping over TLS with the CA: %v", err)
	}
	if err := ping(t, config.Config{RedisAddrs: []string{addr}, RedisPasswordFile: pw}); err == nil {
		t.Fatal("a plaintext client was answered on the TLS port")
	}
	otherCA, _, _ := writeServerPKI(t, t.TempDir())
	if err := ping(t, config.Config{RedisAddrs: []string{addr}, RedisPasswordFile: pw, RedisTLS: storeauth.TLSFiles{CA: otherCA}}); err == nil {
		t.Fatal("a server certificate of another CA was accepted")
	}
}
