package credverify

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// DPoPType is the "typ" of a DPoP proof (RFC 9449).
const DPoPType = "dpop+jwt"

type dpopClaims struct {
	jwt.Claims
	HTM string `json:"htm"`
	HTU string `json:"htu"`
	ATH string `json:"ath"`
}

// CheckProof checks a DPoP proof (RFC 9449) for a credential bound to a key
// (cnf.jkt): signed by that key, for this method and URL, fresh (iat within
// window of now) and for this access token (ath). A credential without cnf
// needs no proof; one with cnf is refused without one.
func CheckProof(c *Claims, proof, token, method, url string, now time.Time, window time.Duration) error {
	if c.Cnf == nil || c.Cnf.JKT == "" {
		return nil
	}
	if proof == "" || len(proof) > MaxTokenBytes {
		return ErrProof
	}
	tok, err := jwt.ParseSigned(proof, Algorithms)
	if err != nil || len(tok.Headers) != 1 {
		return ErrProof
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != DPoPType {
		return ErrProof
	}
	if h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() {
		return ErrProof
	}
	tp, err := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if err != nil || base64.RawURLEncoding.EncodeToString(tp) != c.Cnf.JKT {
		return ErrProof
	}
	var pc dpopClaims
	if err := tok.Claims(h.JSONWebKey.Key, &pc); err != nil {
		return ErrProof
	}
	sum := sha256.Sum256([]byte(token))
	if pc.HTM != method || pc.HTU != url || pc.ATH != base64.RawURLEncoding.EncodeToString(sum[:]) || pc.ID == "" {
		return ErrProof
	}
	if pc.IssuedAt == nil {
		return ErrProof
	}
	iat := pc.IssuedAt.Time()
	if iat.Before(now.Add(-window)) || iat.After(now.Add(window)) {
		return ErrProof
	}
	return nil
}

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of a public key,
// base64url encoded: the value of cnf.jkt.
func Thumbprint(key *jose.JSONWebKey) (string, error) {
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}
