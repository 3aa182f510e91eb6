package signing_test

import (
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/jitid/jitid/services/issuer/internal/signing"
)

// FuzzVerify feeds Verify arbitrary input: it must never panic, and what it
// accepts must say what the key set signed. (A different string may still
// verify: base64url padding bits and ECDSA's (r, n-s) give other spellings
// of the same signed content.)
func FuzzVerify(f *testing.F) {
	key, err := signing.GenerateKey(jose.ES256)
	if err != nil {
		f.Fatal(err)
	}
	ks, err := signing.New(signing.Options{Issuer: testIssuer, Clock: fixedClock(t0)}, key)
	if err != nil {
		f.Fatal(err)
	}
	want := signing.Claims(credentialAt(t0))
	good, err := ks.Sign(credentialAt(t0))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		got, err := ks.VerifyClaims(token)
		if err != nil {
			return
		}
		if got.ID != want.ID || got.Subject != want.Subject || got.Scope != want.Scope ||
			got.Task != want.Task || got.Agent() != want.Agent() || !got.Expiry.Time().Equal(want.Expiry.Time()) {
			t.Errorf("Verify accepted claims that were not signed here: %+v", got)
		}
	})
}
