package credverify_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/jitid/jitid/pkg/credverify"
)

// Example protects an API with the issuer's JWKS. The issuer is played by a
// key made here; a real server points NewRemoteKeys at the issuer's
// jwks_uri (see Discover).
func Example() {
	// The issuer's key and its published JWKS.
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub := jose.JSONWebKey{Key: &priv.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	pub.KeyID, _ = credverify.Thumbprint(&pub)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	}))
	defer jwks.Close()

	// The resource server.
	v, err := credverify.New(credverify.Options{
		Issuer:   "https://jitid.example.com",
		Audience: "tickets-api",
		Keys:     credverify.NewRemoteKeys(jwks.URL, credverify.RemoteKeysOptions{}),
	})
	if err != nil {
		panic(err)
	}
	list := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := credverify.FromContext(r.Context())
		_, _ = fmt.Fprintf(w, "tickets for %s, by %s, task %s (%s)",
			c.Delegator(), strings.Join(c.AgentChain(), " ← "), c.Task.ID, c.Task.Purpose)
	})
	api := httptest.NewServer(v.Middleware(credverify.HTTPOptions{Scopes: []string{"tickets:read"}}, list))
	defer api.Close()

	// A credential as the issuer mints it: a sub-agent acting for Alice.
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv},
		(&jose.SignerOptions{}).WithType(credverify.TokenType).WithHeader("kid", pub.KeyID))
	token, _ := jwt.Signed(signer).Claims(credverify.Claims{
		Claims: jwt.Claims{
			Issuer: "https://jitid.example.com", Subject: "user:alice", Audience: jwt.Audience{"tickets-api"},
			ID: "cred-7", IssuedAt: jwt.NewNumericDate(time.Now()), Expiry: jwt.NewNumericDate(time.Now().Add(10 * time.Minute)),
		},
		Scope: "tickets:read",
		Act:   &credverify.Actor{Sub: "agent:summariser", Act: &credverify.Actor{Sub: "agent:planner"}},
		Task:  credverify.TaskClaim{ID: "task-42", Purpose: "summarise Q3 tickets", Sensitivity: "MEDIUM"},
	}).Serialize()

	for _, auth := range []string{"Bearer " + token, "Bearer " + token[:len(token)-3]} {
		req, _ := http.NewRequest(http.MethodGet, api.URL+"/tickets", nil)
		req.Header.Set("Authorization", auth)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		fmt.Println(res.StatusCode, strings.TrimSpace(string(body)))
	}

	// Verify can be called directly too; refusals are sentinel errors.
	_, err = v.Verify(context.Background(), token, "tickets:purchase")
	fmt.Println(errors.Is(err, credverify.ErrInsufficientScope))
	// Output:
	// 200 tickets for user:alice, by agent:summariser ← agent:planner, task task-42 (summarise Q3 tickets)
	// 401 credential refused: bad signature
	// true
}
