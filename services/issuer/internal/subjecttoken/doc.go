// Package subjecttoken verifies the RFC 8693 subject token that proves who a
// credential's delegator is, and maps its claims to the delegator's id,
// attributes, entitlements, time zone and authentication time.
//
// A token is accepted only from a trusted provider, named by its issuer URL.
// The provider is found through OpenID Connect Discovery
// (issuer + "/.well-known/openid-configuration", whose issuer must match
// exactly) and its JWK set is fetched from the discovered jwks_uri, cached,
// and fetched again when a token names a key id the cache lacks, so a
// provider's key rotation needs no restart. Discovery and signature checks
// are github.com/coreos/go-oidc/v3's; this package adds what a delegator's
// proof needs on top:
//
//   - the key set is fetched again once it is older than Config.KeySetMaxAge
//     (10 minutes by default), so that a key the provider retired stops
//     verifying even while every token names a cached key.
//   - requests to a provider are spaced by Config.KeyRefetchInterval (5
//     seconds by default): within it a repeated request is answered with the
//     previous answer, so a flood of tokens naming made-up key ids costs the
//     provider one request per interval, and an unreachable provider is not
//     asked again for every token.
//   - the token type: an access token (urn:ietf:params:oauth:token-type:access_token)
//     must carry the RFC 9068 header typ "at+jwt"; an ID token
//     (…:id_token) must not, so that neither passes for the other; a
//     generic JWT (…:jwt) may be either. Each provider lists the types it
//     is trusted for.
//   - the audience: one of the provider's configured audiences must be in aud.
//   - the signature algorithm: only the provider's allow-list (RS256 and
//     ES256 by default); "none" and HMAC are never accepted.
//   - exp and nbf with a bounded leeway (Config.Leeway, at most MaxLeeway),
//     and iat not in the future.
//   - auth_time is required, never in the future, never after iat, and no
//     older than the maximum age (Config.MaxAge or Provider.MaxAge). Since a
//     token is issued after the authentication it records, that bounds the
//     token's age too.
//
// # Configuration
//
// A Config lists the trusted providers. For each:
//
//	Provider{
//		Issuer:     "https://login.example.com",  // exact iss, also the discovery base
//		Audiences:  []string{"jitid"},             // aud must hold one of these
//		Algorithms: []string{"RS256"},             // default RS256, ES256
//		TokenTypes: []TokenType{TypeIDToken},      // default all three
//		MaxAge:     8 * time.Hour,                 // default Config.MaxAge
//		Mapping: Mapping{
//			IDPrefix:          "user:",            // delegator id = "user:" + sub
//			EntitlementsClaim: "groups",
//			Entitlements:      map[string][]string{"finance": {"payments:transfer"}},
//			Attributes:        map[string]string{"age_verified": "age_verified"},
//			MFAAttribute:      "mfa",
//		},
//	}
//
// The mapping turns verified claims into the delegator:
//
//   - id: Mapping.IDPrefix + the Mapping.IDClaim claim ("sub" by default).
//     Providers must have distinct prefixes, so that two providers cannot
//     name the same delegator.
//   - entitlements: the Mapping.EntitlementsClaim claim (a list of strings,
//     or one space-separated string), each value translated through
//     Mapping.Entitlements when that is set (values it does not name grant
//     nothing) or taken as it is. When the claim is configured a token
//     without it is refused: an absent entitlement list would otherwise
//     read as "no limit".
//   - attributes: Mapping.Attributes maps an attribute name to the claim it
//     comes from; strings are kept, booleans and numbers are written as
//     "true"/"false" and in decimal. A claim the token lacks is no attribute.
//   - MFA: true when amr holds one of Mapping.MFAMethods (RFC 8176 "mfa",
//     "otp", "hwk", "swk", "sms", "sc" and "fpt" by default; "pwd" alone
//     never) or acr is one of Mapping.MFAACRs; recorded as the attribute
//     Mapping.MFAAttribute when that is set.
//   - time zone: the Mapping.ZoneinfoClaim claim ("zoneinfo"), which must be
//     an IANA zone name; a token without it has no time zone.
//   - authenticated time: auth_time.
//
// A request may also assert delegator fields. CheckAsserted compares them
// with the verified result: a field that disagrees is an *AssertionError
// naming the field, and an attribute the token does not carry cannot be
// added by the request.
//
// # Errors
//
// Errors wrap one of the documented sentinels so that callers map them with
// errors.Is; no error holds the token. At a gRPC edge they map as:
//
//	ErrProviderUnavailable                        UNAVAILABLE (says nothing about the token)
//	ErrUnsupportedType, *AssertionError            INVALID_ARGUMENT
//	every other sentinel (forged, expired, …)      UNAUTHENTICATED
package subjecttoken
