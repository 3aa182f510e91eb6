// Package credverify verifies jitid credentials where they are used: in the
// API an agent calls.
//
// A Verifier checks, offline and in about the time of one signature check,
// the token's form (compact JWS, at most MaxTokenBytes, no duplicated
// names, no "crit"), its signature against the issuer's JWKS (ES256 or
// EdDSA, the key chosen by "kid" and required to match "alg"; none and
// HMAC never verify), "typ" at+jwt, "iss", "aud", exp/nbf/iat with a
// bounded clock skew, the scopes an operation needs, and the DPoP proof of
// a credential bound to a key (cnf.jkt, RFC 9449). Two optional checks
// cover revocation before "exp":
//
//   - Options.Revocations: a list of revoked credential ids, kept current by
//     package natsrevocation from the issuer's lifecycle events on NATS
//     JetStream; a revoked credential is refused within about a second,
//     with no call per request.
//   - Check.Online: a call to the issuer per request (Options.Introspector,
//     see package issuergrpc), for sensitive operations: refused at once
//     after revocation, and max_uses enforced.
//
// The issuer's keys come from RemoteKeys: its JWKS over HTTP (NewRemoteKeys
// with the jwks_uri that Discover reads from the issuer's RFC 8414
// metadata) or over gRPC (issuergrpc.NewKeys), cached for the document's
// max-age and fetched again when a token names an unknown kid, at most once
// per MinRefresh.
//
// Middleware (net/http) and UnaryServerInterceptor/StreamServerInterceptor
// (gRPC) refuse requests without a valid credential (401/Unauthenticated,
// 403/PermissionDenied for a missing scope, 503/Unavailable when the keys
// or the issuer cannot be reached) and put the verified delegation context
// in the request context: FromContext returns the Claims, whose
// Delegator, AgentChain and Task say who authorised the work, which agents
// act, and for what.
//
// Errors are sentinels: every refusal wraps ErrInvalid (test with
// errors.Is), while ErrKeysUnavailable and ErrIntrospectionUnavailable
// mean "cannot tell now", never "valid".
//
// A typical resource server:
//
//	md, err := credverify.Discover(ctx, "https://jitid.example.com", credverify.DiscoverOptions{})
//	...
//	keys := credverify.NewRemoteKeys(md.JWKSURI, credverify.RemoteKeysOptions{})
//	revoked, err := natsrevocation.Watch(ctx, js, natsrevocation.Options{})
//	<-revoked.Ready()
//	v, err := credverify.New(credverify.Options{
//		Issuer:       "https://jitid.example.com",
//		Audience:     "tickets-api",
//		Keys:         keys,
//		Revocations:  revoked,
//		Introspector: issuergrpc.NewIntrospector(issuerConn, 0),
//	})
//	mux.Handle("GET /tickets", v.Middleware(credverify.HTTPOptions{Scopes: []string{"tickets:read"}}, list))
//	mux.Handle("POST /tickets/purchase", v.Middleware(credverify.HTTPOptions{Scopes: []string{"tickets:purchase"}, Online: true}, buy))
//
// examples/ticketapi in the repository is such a server.
package credverify
