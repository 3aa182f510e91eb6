package signing_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/jitid/jitid/pkg/credverify"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
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

// A remembered token gives the credential its first verification gave.
func TestVerifyHitEqualsMiss(t *testing.T) {
	t.Parallel()
	ks := newKeySet(t, generate(t, jose.EdDSA), t0)
	for _, tt := range signCases() {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := credentialAt(t0)
			tt.edit(c)
			tok, err := ks.Sign(c)
			if err != nil {
				t.Fatal(err)
			}
			want := &issuer.Credential{
				ID: c.ID, Issuer: c.Issuer, Audience: c.Audience,
				Agent: c.Agent, Delegator: c.Delegator,
				// JSON has each invalid UTF-8 byte as U+FFFD, as []rune does.
				Task:     &identityv1.Task{Id: c.Task.Id, Purpose: string([]rune(c.Task.Purpose)), Sensitivity: c.Task.Sensitivity},
				Scopes:   strings.Fields(string([]rune(strings.Join(c.Scopes, " ")))),
				IssuedAt: c.IssuedAt, ExpiresAt: c.ExpiresAt,
				MaxUses: c.MaxUses, CnfJKT: c.CnfJKT,
			}
			for _, l := range c.Chain {
				want.Chain = append(want.Chain, issuer.ChainLink{Agent: l.Agent})
			}
			for _, call := range []string{"miss", "hit"} {
				got, err := ks.Verify(tok)
				if err != nil {
					t.Fatalf("Verify (%s): %v", call, err)
				}
				if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
					t.Errorf("Verify (%s) mismatch (-want +got):\n%s", call, diff)
				}
			}
		})
	}
}

// Reloads that remove no key keep the remembered tokens (Watch reloads
// every poll interval); one that removes a key forgets them.
func TestReloadKeepsRememberedTokensUntilAKeyLeaves(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clk := &clock{now: t0}
	writeKey(t, dir, "a.pem", generate(t, jose.EdDSA))
	ks, err := signing.Load(signing.Options{Issuer: testIssuer, Dir: dir, Retain: time.Minute, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ks.Sign(credentialAt(t0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Verify(tok); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func() error
		want int
	}{
		{"unchanged", func() error { return nil }, 1},
		{"a key added", func() error { writeKey(t, dir, "b.pem", generate(t, jose.EdDSA)); return nil }, 1},
		{"a key's file removed, still retained", func() error { return os.Remove(filepath.Join(dir, "b.pem")) }, 1},
		{"the retained key retired", func() error { clk.Add(2 * time.Minute); return nil }, 0},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatal(err)
		}
		if err := ks.Reload(); err != nil {
			t.Fatal(err)
		}
		if got := signing.VerifiedLen(ks); got != s.want {
			t.Errorf("%s: %d remembered tokens, want %d", s.name, got, s.want)
		}
	}
	// Still valid and signed by a published key: verified again.
	if _, err := ks.Verify(tok); err != nil || signing.VerifiedLen(ks) != 1 {
		t.Errorf("Verify after the reload: %v, %d remembered; want nil, 1", err, signing.VerifiedLen(ks))
	}
}

// Verify from several goroutines while the keys reload, under -race.
func TestVerifyConcurrentWithReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clk := &clock{now: t0}
	writeKey(t, dir, "a.pem", generate(t, jose.EdDSA))
	ks, err := signing.Load(signing.Options{Issuer: testIssuer, Dir: dir, Retain: time.Nanosecond, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	toks := make([]string, 8)
	for i := range toks {
		c := credentialAt(t0)
		c.ID = fmt.Sprintf("0193c4a2-0000-7000-8000-%012d", i)
		if toks[i], err = ks.Sign(c); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Go(func() {
			for i := range 100 {
				if _, err := ks.Verify(toks[(g+i)%len(toks)]); err != nil {
					t.Errorf("Verify: %v", err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		// A published key comes and goes: each removal starts a new cache.
		other := generate(t, jose.EdDSA)
		for i := range 10 {
			if i%2 == 0 {
				writeKey(t, dir, "b.pem", other)
			} else if err := os.Remove(filepath.Join(dir, "b.pem")); err != nil {
				t.Error(err)
			}
			if err := ks.Reload(); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
}
