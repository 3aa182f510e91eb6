package subjecttoken_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/jitid/jitid/services/issuer/internal/subjecttoken"
)

// FuzzVerifyRefusesWithoutEchoingTheToken feeds arbitrary subject tokens to
// a verifier whose one provider cannot be reached: nothing may verify,
// panic, or put the token in the error.
func FuzzVerifyRefusesWithoutEchoingTheToken(f *testing.F) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	iss := "http://127.0.0.1:1"
	for _, seed := range []string{
		"",
		"a.b.c",
		enc(`{"alg":"RS256","typ":"JWT"}`) + "." + enc(`{"iss":"`+iss+`","sub":"x"}`) + ".c2ln",
		enc(`{"alg":"none"}`) + "." + enc(`{"iss":"`+iss+`"}`) + ".",
		enc(`{"alg":"RS256","typ":"at+jwt"}`) + "." + enc(`{"iss":"https://other.example"}`) + ".c2ln",
		`{"protected":"e30","payload":"e30","signature":""}`,
	} {
		f.Add(seed, 0)
	}
	v, err := subjecttoken.New(subjecttoken.Config{Providers: []subjecttoken.Provider{{
		Issuer: iss, Audiences: []string{"jitid"},
	}}})
	if err != nil {
		f.Fatal(err)
	}
	types := []subjecttoken.TokenType{subjecttoken.TypeIDToken, subjecttoken.TypeAccessToken, subjecttoken.TypeJWT, "x"}
	f.Fuzz(func(t *testing.T, token string, typ int) {
		res, err := v.Verify(context.Background(), token, types[uint(typ)%uint(len(types))])
		if err == nil {
			t.Fatalf("verified without a reachable provider: %+v", res)
		}
		if len(token) >= 16 && strings.Contains(err.Error(), token) {
			t.Fatalf("the error holds the token: %v", err)
		}
	})
}
