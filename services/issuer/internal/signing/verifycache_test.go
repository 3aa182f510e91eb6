package signing_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/jitid/jitid/pkg/credverify"
	"github.com/jitid/jitid/services/issuer/internal/signing"
)

// A token verified once is remembered, but its times are checked on every
// call: once expired it is refused like any other.
func TestVerifyRemembersSignatureNotTimes(t *testing.T) {
	t.Parallel()
	clk := &clock{now: t0}
	ks, err := signing.New(signing.Options{Issuer: testIssuer, Clock: clk.Now}, generate(t, jose.ES256))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ks.Sign(credentialAt(t0))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		c, err := ks.Verify(tok)
		if err != nil || c.ID != credentialAt(t0).ID {
			t.Fatalf("Verify #%d = %v, %v; want the credential", i+1, c, err)
		}
	}
	clk.Add(20 * time.Minute)
	if _, err := ks.Verify(tok); !errors.Is(err, credverify.ErrExpired) {
		t.Errorf("Verify of a remembered token past its expiry: %v, want ErrExpired", err)
	}
	if _, err := ks.Verify(tok[:len(tok)-4] + "AAAA"); !errors.Is(err, credverify.ErrInvalid) {
		t.Errorf("Verify of a tampered token after the genuine one: %v, want ErrInvalid", err)
	}
}

// A token remembered under a key is refused once that key has left the set.
func TestVerifyForgetsTokensOfARemovedKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clk := &clock{now: t0}
	writeKey(t, dir, "old.pem", generate(t, jose.ES256))
	ks, err := signing.Load(signing.Options{Issuer: testIssuer, Dir: dir, Retain: time.Minute, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ks.Sign(credentialAt(t0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Verify(tok); err != nil {
		t.Fatalf("Verify before the rotation: %v", err)
	}
	writeKey(t, dir, "new.pem", generate(t, jose.ES256))
	if err := os.Remove(filepath.Join(dir, "old.pem")); err != nil {
		t.Fatal(err)
	}
	if err := ks.Reload(); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Minute) // past Retain, within the token's life
	if err := ks.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Verify(tok); !errors.Is(err, credverify.ErrUnknownKey) {
		t.Errorf("Verify of a token whose key left the set: %v, want ErrUnknownKey", err)
	}
}
