package idp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"time"
)

// User is one person the provider issues tokens for, and the confidential
// client bound to them: a client-credentials request authenticated as
// ClientID yields tokens whose subject is ID. Binding a client to a user is
// what lets the demo and the tests get a user's tokens over the real token
// endpoint without a browser (see the package documentation).
type User struct {
	// ID is the subject (sub) of the user's tokens.
	ID string `json:"id"`
	// ClientID and ClientSecret authenticate the token request
	// (client_secret_basic or client_secret_post).
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	// Audience is the aud of the access token, and is added to the ID
	// token's aud beside the client id: the relying party the token is for
	// (for jitid, the issuer's configured audience).
	Audience []string `json:"audience"`
	// Groups and Roles become the groups and roles claims.
	Groups []string `json:"groups,omitempty"`
	Roles  []string `json:"roles,omitempty"`
	// AMR and ACR become the amr and acr claims (RFC 8176 method names).
	AMR []string `json:"amr,omitempty"`
	ACR string   `json:"acr,omitempty"`
	// AuthAge is how long before each token the user is said to have
	// authenticated (auth_time = now - AuthAge), as a Go duration; empty
	// is zero. A negative age puts auth_time in the future: a provider that
	// misbehaves that way is what relying parties must refuse, so the tests
	// need one.
	AuthAge string `json:"auth_age,omitempty"`
	// TokenLifetime, when set, replaces the provider's token lifetime for
	// this user's tokens, as a Go duration. A negative one issues tokens
	// that have already expired: a provider's stale token is what relying
	// parties must refuse, so the tests need one.
	TokenLifetime string `json:"token_lifetime,omitempty"`
	// Zoneinfo becomes the zoneinfo claim (an IANA time zone name).
	Zoneinfo string `json:"zoneinfo,omitempty"`
	// Claims are further claims copied into both tokens as they are, such
	// as {"age_verified": true}. They cannot override a registered claim.
	Claims map[string]any `json:"claims,omitempty"`

	authAge  time.Duration
	lifetime time.Duration
}

// UsersFile is the JSON document LoadUsers reads.
type UsersFile struct {
	Users []User `json:"users"`
}

// LoadUsers reads and checks a users file.
func LoadUsers(path string) ([]User, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f UsersFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	if err := checkUsers(f.Users); err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	return f.Users, nil
}

// checkUsers reports every bad entry at once and parses AuthAge in place.
func checkUsers(users []User) error {
	var errs []error
	clients := make(map[string]bool, len(users))
	if len(users) == 0 {
		errs = append(errs, errors.New("no users"))
	}
	for i := range users {
		u := &users[i]
		switch {
		case u.ID == "":
			errs = append(errs, fmt.Errorf("user %d: id is empty", i))
		case u.ClientID == "":
			errs = append(errs, fmt.Errorf("user %q: client_id is empty", u.ID))
		case u.ClientSecret == "":
			errs = append(errs, fmt.Errorf("user %q: client_secret is empty", u.ID))
		case clients[u.ClientID]:
			errs = append(errs, fmt.Errorf("user %q: client_id %q is bound to another user", u.ID, u.ClientID))
		case len(u.Audience) == 0:
			errs = append(errs, fmt.Errorf("user %q: audience is empty", u.ID))
		}
		clients[u.ClientID] = true
		if u.AuthAge != "" {
			d, err := time.ParseDuration(u.AuthAge)
			if err != nil {
				errs = append(errs, fmt.Errorf("user %q: auth_age: %w", u.ID, err))
			}
			u.authAge = d
		}
		if u.TokenLifetime != "" {
			d, err := time.ParseDuration(u.TokenLifetime)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("user %q: token_lifetime: %w", u.ID, err))
			case d == 0:
				errs = append(errs, fmt.Errorf("user %q: token_lifetime: zero; leave it out for the provider's", u.ID))
			}
			u.lifetime = d
		}
		if u.Zoneinfo != "" {
			if _, err := time.LoadLocation(u.Zoneinfo); err != nil {
				errs = append(errs, fmt.Errorf("user %q: zoneinfo: %w", u.ID, err))
			}
		}
	}
	return errors.Join(errs...)
}
