package signing_test

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/jitid/jitid/pkg/credverify"

	"github.com/jitid/jitid/services/issuer/internal/signing"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func writeKey(t *testing.T, dir, name string, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	kid, err := credverify.Thumbprint(&jose.JSONWebKey{Key: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	return kid
}

func jwksKids(t *testing.T, ks *signing.KeySet) []string {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(ks.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
	}
	slices.Sort(kids)
	return kids
}

func sortedKids(kids ...string) []string { slices.Sort(kids); return kids }

// TestRotation walks a rotation through: a new key is published before it
// signs, and the old one stays published until its tokens have expired.
func TestRotation(t *testing.T) {
	t.Parallel()
	const delay, retain = 5 * time.Minute, time.Hour
	dir := t.TempDir()
	clk := &clock{now: t0}
	oldKID := writeKey(t, dir, "2026-01.pem", generate(t, jose.ES256))
	ks, err := signing.Load(signing.Options{Issuer: testIssuer, Dir: dir, PublishDelay: delay, Retain: retain, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if ks.SigningKeyID() != oldKID {
		t.Fatalf("signing kid %s, want the only key %s", ks.SigningKeyID(), oldKID)
	}
	oldToken, err := ks.Sign(credentialAt(t0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Verify(oldToken); err != nil {
		t.Fatal(err)
	}

	// The new key is published at once, signs only after the delay.
	newKID := writeKey(t, dir, "2026-02.pem", generate(t, jose.EdDSA))
	clk.Add(time.Second)
	if err := ks.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := jwksKids(t, ks); !slices.Equal(got, sortedKids(oldKID, newKID)) {
		t.Errorf("JWKS after adding = %v, want both keys", got)
	}
	if ks.SigningKeyID() != oldKID {
		t.Errorf("the new key signs before the publish delay")
	}
	clk.Add(delay - time.Second) // first seen at +1s: eligible at +delay+1s
	_ = ks.Reload()
	if ks.SigningKeyID() != oldKID {
		t.Errorf("the new key signs before the publish delay")
	}
	clk.Add(time.Second)
	_ = ks.Reload()
	if ks.SigningKeyID() != newKID {
		t.Errorf("signing kid %s after the publish delay, want the new %s", ks.SigningKeyID(), newKID)
	}

	// The old key's file goes; it stays published until its tokens expired.
	if err := os.Remove(filepath.Join(dir, "2026-01.pem")); err != nil {
		t.Fatal(err)
	}
	_ = ks.Reload()
	if got := jwksKids(t, ks); !slices.Equal(got, sortedKids(oldKID, newKID)) {
		t.Errorf("JWKS right after removing the old file = %v, want both", got)
	}
	clk.Add(retain - time.Second)
	_ = ks.Reload()
	if _, err := ks.Key(t.Context(), oldKID); err != nil {
		t.Errorf("the old key is not found while retained: %v", err)
	}
	if got := jwksKids(t, ks); !slices.Equal(got, sortedKids(oldKID, newKID)) {
		t.Errorf("JWKS before the retention ends = %v, want both", got)
	}
	clk.Add(time.Second)
	_ = ks.Reload()
	if got := jwksKids(t, ks); !slices.Equal(got, []string{newKID}) {
		t.Errorf("JWKS after the retention = %v, want only the new key", got)
	}
}

// TestRotationReplaceInOneStep: the secret is updated with the new key in
// place of the old one (one step, as kubectl apply does): the old key keeps
// signing until the new one has been published for the delay.
func TestRotationReplaceInOneStep(t *testing.T) {
	t.Parallel()
	const delay = 2 * time.Minute
	dir := t.TempDir()
	clk := &clock{now: t0}
	oldKID := writeKey(t, dir, "signing.pem", generate(t, jose.ES256))
	ks, err := signing.Load(signing.Options{Issuer: testIssuer, Dir: dir, PublishDelay: delay, Retain: time.Hour, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	newKID := writeKey(t, dir, "signing.pem", generate(t, jose.ES256))
	if err := ks.Reload(); err != nil {
		t.Fatal(err)
	}
	if ks.SigningKeyID() != oldKID || !slices.Equal(jwksKids(t, ks), sortedKids(oldKID, newKID)) {
		t.Errorf("after the swap: signing %s, JWKS %v; want the old key signing, both published", ks.SigningKeyID(), jwksKids(t, ks))
	}
	clk.Add(delay)
	_ = ks.Reload()
	if ks.SigningKeyID() != newKID || !slices.Contains(jwksKids(t, ks), oldKID) {
		t.Errorf("after the delay: signing %s, JWKS %v; want the new key signing, the old still published", ks.SigningKeyID(), jwksKids(t, ks))
	}
}

// TestReloadKeepsKeysOnError: a broken directory changes nothing.
func TestReloadKeepsKeysOnError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	kid := writeKey(t, dir, "a.pem", generate(t, jose.ES256))
	ks, err := signing.Load(signing.Options{Issuer: testIssuer, Dir: dir, Clock: fixedClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b.pem"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ks.Reload(); err == nil {
		t.Error("Reload of a broken directory succeeded")
	}
	if ks.SigningKeyID() != kid || !slices.Equal(jwksKids(t, ks), []string{kid}) {
		t.Errorf("keys changed after a failed reload")
	}
}
