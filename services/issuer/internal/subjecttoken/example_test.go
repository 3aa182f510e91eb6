package subjecttoken_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jitid/jitid/services/issuer/internal/subjecttoken"
)

// The issuer trusts one provider for ID tokens, takes entitlements from its
// groups, and refuses a request that claims more than the token proves.
func Example() {
	v, err := subjecttoken.New(subjecttoken.Config{
		Providers: []subjecttoken.Provider{{
			Issuer:     "https://login.example.com",
			Audiences:  []string{"jitid"},
			TokenTypes: []subjecttoken.TokenType{subjecttoken.TypeIDToken},
			MaxAge:     8 * time.Hour,
			Mapping: subjecttoken.Mapping{
				IDPrefix:          "user:",
				EntitlementsClaim: "groups",
				Entitlements:      map[string][]string{"finance": {"payments:transfer"}},
				Attributes:        map[string]string{"age_verified": "age_verified"},
				MFAAttribute:      "mfa",
			},
		}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	subjectToken := "eyJ..." // the request's subject_token
	res, err := v.Verify(context.Background(), subjectToken, subjecttoken.TypeIDToken)
	switch {
	case errors.Is(err, subjecttoken.ErrProviderUnavailable):
		fmt.Println("try again later")
		return
	case err != nil:
		fmt.Println("unauthenticated:", errors.Is(err, subjecttoken.ErrMalformed))
		return
	}
	asserted := subjecttoken.Asserted{Attributes: map[string]string{"age_verified": "true"}}
	if err := subjecttoken.CheckAsserted(asserted, res); err != nil {
		var ae *subjecttoken.AssertionError
		if errors.As(err, &ae) {
			fmt.Println("invalid argument:", ae.Field)
		}
	}
	// Output: unauthenticated: true
}
