package signing_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/jitid/jitid/services/issuer/internal/signing"
)

var algs = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

// BenchmarkSign measures what one issuance pays for its token.
func BenchmarkSign(b *testing.B) {
	for _, alg := range algs {
		b.Run(string(alg), func(b *testing.B) {
			ks := newKeySet(b, generate(b, alg), t0)
			c := credentialAt(t0)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ks.Sign(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerify measures introspection's offline check of a token: "hit"
// a token verified before (the agent's second call on), "miss" one seen
// for the first time.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range algs {
		ks := newKeySet(b, generate(b, alg), t0)
		tok, err := ks.Sign(credentialAt(t0))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(string(alg)+"/hit", func(b *testing.B) {
			if _, err := ks.Verify(tok); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ks.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(alg)+"/miss", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				signing.ForgetVerified(ks)
				if _, err := ks.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifiedMemory reports the live heap that the verified-token
// cache holds per remembered token (metric B/token); its time is not
// meaningful.
func BenchmarkVerifiedMemory(b *testing.B) {
	const n = 2048
	ks := newKeySet(b, generate(b, jose.EdDSA), t0)
	toks := make([]string, n)
	for i := range toks {
		c := credentialAt(t0)
		c.ID = fmt.Sprintf("0193c4a2-0000-7000-8000-%012d", i)
		tok, err := ks.Sign(c)
		if err != nil {
			b.Fatal(err)
		}
		toks[i] = tok
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, tok := range toks {
		if _, err := ks.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(ks)
	runtime.KeepAlive(toks)
	for b.Loop() {
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/token")
}
