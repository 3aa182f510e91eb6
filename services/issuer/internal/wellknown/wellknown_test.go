package wellknown_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/jitid/jitid/services/issuer/internal/wellknown"
)

func TestDocuments(t *testing.T) {
	t.Parallel()
	md, err := wellknown.NewMetadata("https://jitid.example", "https://keys.jitid.example/", "grpc://jitid.example:50051", []string{"ES256", "EdDSA"})
	if err != nil {
		t.Fatal(err)
	}
	var jwks atomic.Value
	jwks.Store([]byte(`{"keys":[{"kid":"a"}]}`))
	mux := http.NewServeMux()
	if err := wellknown.Register(mux.Handle, func() []byte { return jwks.Load().([]byte) }, md); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, b
	}

	res, body := get(wellknown.JWKSPath)
	if res.StatusCode != http.StatusOK || string(body) != `{"keys":[{"kid":"a"}]}` ||
		res.Header.Get("Cache-Control") != "public, max-age=60" || res.Header.Get("Content-Type") != "application/jwk-set+json" {
		t.Errorf("jwks: %d %q %v", res.StatusCode, body, res.Header)
	}
	// A rotation shows at once.
	jwks.Store([]byte(`{"keys":[{"kid":"a"},{"kid":"b"}]}`))
	if _, body := get(wellknown.JWKSPath); string(body) != `{"keys":[{"kid":"a"},{"kid":"b"}]}` {
		t.Errorf("jwks after rotation = %s", body)
	}

	res, body = get(wellknown.MetadataPath)
	if res.StatusCode != http.StatusOK || res.Header.Get("Cache-Control") != "public, max-age=300" {
		t.Errorf("metadata: %d %v", res.StatusCode, res.Header)
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"issuer":                           "https://jitid.example",
		"jwks_uri":                         "https://keys.jitid.example/.well-known/jwks.json",
		"token_endpoint":                   "grpc://jitid.example:50051/jitid.issuer.v1.IssuerService/IssueCredential",
		"introspection_endpoint":           "grpc://jitid.example:50051/jitid.issuer.v1.IssuerService/IntrospectCredential",
		"revocation_endpoint":              "grpc://jitid.example:50051/jitid.issuer.v1.IssuerService/RevokeCredentials",
		"jitid_grpc_token_exchange_method": "/jitid.issuer.v1.IssuerService/ExchangeCredential",
	} {
		if doc[key] != want {
			t.Errorf("%s = %v, want %s", key, doc[key], want)
		}
	}
	list := func(key string) []string {
		var out []string
		for _, v := range doc[key].([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	if g := list("grant_types_supported"); !slices.Contains(g, wellknown.GrantTokenExchange) {
		t.Errorf("grant_types_supported = %v", g)
	}
	for _, key := range []string{"dpop_signing_alg_values_supported", "id_token_signing_alg_values_supported"} {
		if g := list(key); !slices.Equal(g, []string{"ES256", "EdDSA"}) {
			t.Errorf("%s = %v", key, g)
		}
	}
	if _, err := wellknown.NewMetadata("https://jitid.example", "/relative", "grpc://x:1", nil); err == nil {
		t.Error("NewMetadata accepted a relative URL")
	}
}
