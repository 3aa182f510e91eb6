package credverify_test

import (
	"context"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/jitid/jitid/pkg/credverify"
)

// FuzzParse feeds Parse arbitrary tokens: it must never panic, and what it
// accepts carries the claims every credential has. The seeds include the
// shapes the verifier refuses on purpose (duplicate names, crit, JSON
// serialization) so that the fuzzer starts from the header scanner's edges.
func FuzzParse(f *testing.F) {
	es := newSigner(f, jose.ES256)
	keys := es.keys(f)
	f.Add(es.sign(f, "at+jwt", es.jwk.KeyID, goodClaims()))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Add("")
	f.Add(signRaw(f, es, `{"alg":"ES256","typ":"at+jwt","kid":"`+es.jwk.KeyID+`","kid":"x"}`, `{"jti":"a"}`))
	f.Add(signRaw(f, es, `{"alg":"ES256","typ":"at+jwt","kid":"`+es.jwk.KeyID+`"}`, `{"jti":"a","sub":"u","s\u0075b":"v","act":{"sub":"x","act":{"sub":"y"}},"task":{"id":"t"},"aud":["a",1,null,true,{"k":[]}]}`))
	f.Add(signRaw(f, es, `{"alg":"ES256","crit":["exp"],"exp":1,"typ":"at+jwt","kid":"`+es.jwk.KeyID+`"}`, `{}`))
	f.Add(`{"payload":"e30","signatures":[]}`)
	f.Fuzz(func(t *testing.T, token string) {
		c, err := credverify.Parse(context.Background(), token, keys)
		if err == nil && (c.ID == "" || c.Task.ID == "") {
			t.Fatalf("Parse accepted a token without jti or task: %q", token)
		}
		if err != nil && c != nil {
			t.Fatal("Parse returned claims with an error")
		}
		if err == nil && token[0] == '{' {
			t.Fatalf("Parse accepted a JSON serialization: %q", token)
		}
		_ = credverify.UnverifiedID(token)
	})
}
