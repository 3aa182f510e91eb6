package credverify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ProofWindow is how far a DPoP proof's iat may be from now.
const ProofWindow = time.Minute

// bearer returns the token of an "Authorization: Bearer|DPoP <token>" value.
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || (!strings.EqualFold(scheme, "Bearer") && !strings.EqualFold(scheme, "DPoP")) {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// HTTPOptions configure Middleware.
type HTTPOptions struct {
	// Scopes every request must carry.
	Scopes []string
	// Online asks the issuer on every request (Check.Online): for
	// sensitive operations.
	Online bool
	// PublicURL is the scheme and host the API is reached at, for the DPoP
	// htu check (e.g. "https://tickets.example.com"); from the request when
	// empty, which is right only when no proxy rewrites the host or scheme.
	PublicURL string
	// Logger, when set, records each refusal at info level (and each
	// failure to verify at warn): reason, method, path, and the
	// credential id when the token was readable. Never the token.
	Logger *slog.Logger
}

// Middleware refuses requests without a valid credential (401, or 403 for a
// missing scope, or 503 when the keys or the issuer cannot be reached) and
// puts the verified claims in the request context (FromContext). Tokens
// are read from "Authorization: Bearer <token>" or, for a key-bound
// credential, "Authorization: DPoP <token>" with its proof in the "DPoP"
// header (RFC 9449).
func (v *Verifier) Middleware(o HTTPOptions, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="jitid"`)
			http.Error(w, "a jitid credential is required (Authorization: Bearer <token>)", http.StatusUnauthorized)
			return
		}
		base := o.PublicURL
		if base == "" {
			scheme := "http"
			if r.TLS != nil {
				scheme = "https"
			}
			base = scheme + "://" + r.Host
		}
		p := Presentation{Token: tok, Proof: r.Header.Get("DPoP"), Method: r.Method, URI: strings.TrimSuffix(base, "/") + r.URL.Path}
		c, err := v.VerifyPresentation(r.Context(), p, Check{Scopes: o.Scopes, Online: o.Online})
		if err != nil {
			code, msg := httpStatus(err)
			if o.Logger != nil {
				level := slog.LevelInfo
				if code == http.StatusServiceUnavailable {
					level = slog.LevelWarn
				}
				o.Logger.Log(r.Context(), level, "credential refused", "method", r.Method, "path", r.URL.Path,
					"status", code, "credential_id", UnverifiedID(tok), "reason", err)
			}
			if code == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", "1")
			} else {
				w.Header().Set("WWW-Authenticate", wwwAuthenticate(err))
			}
			http.Error(w, msg, code)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), c)))
	})
}

// UnverifiedID returns the "jti" of token without checking anything, for
// logs of refused credentials ("" when unreadable). Never trust it.
func UnverifiedID(token string) string {
	if len(token) > MaxTokenBytes {
		return ""
	}
	_, rest, ok := strings.Cut(token, ".")
	if !ok {
		return ""
	}
	seg, _, _ := strings.Cut(rest, ".")
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return ""
	}
	var c struct {
		ID string `json:"jti"`
	}
	if json.Unmarshal(b, &c) != nil || len(c.ID) > 128 {
		return ""
	}
	return c.ID
}

func httpStatus(err error) (int, string) {
	switch {
	case errors.Is(err, ErrInsufficientScope):
		return http.StatusForbidden, "the credential does not grant the scope this operation needs"
	case errors.Is(err, ErrKeysUnavailable), errors.Is(err, ErrIntrospectionUnavailable):
		return http.StatusServiceUnavailable, "cannot verify credentials right now; retry"
	default:
		return http.StatusUnauthorized, "credential refused: " + strings.TrimPrefix(err.Error(), "credverify: credential refused: ")
	}
}

func wwwAuthenticate(err error) string {
	switch {
	case errors.Is(err, ErrInsufficientScope):
		return `Bearer realm="jitid", error="insufficient_scope"`
	case errors.Is(err, ErrProof):
		return `DPoP realm="jitid", error="invalid_dpop_proof", algs="ES256 EdDSA"`
	default:
		return `Bearer realm="jitid", error="invalid_token"`
	}
}

// GRPCOptions configure the interceptors.
type GRPCOptions struct {
	// Scopes by full method name ("/pkg.Service/Method"); methods not listed
	// need a valid credential and no particular scope.
	Scopes map[string][]string
	// Online methods are checked with the issuer on every call.
	Online map[string]bool
	// Skip lists methods that need no credential (health checks).
	Skip map[string]bool
}

func (v *Verifier) authorize(ctx context.Context, o GRPCOptions, method string) (context.Context, error) {
	if o.Skip[method] || strings.HasPrefix(method, "/grpc.health.v1.Health/") {
		return ctx, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var tok string
	if vals := md.Get("authorization"); len(vals) > 0 {
		tok, _ = bearer(vals[0])
	}
	if tok == "" {
		return nil, status.Error(codes.Unauthenticated, "a jitid credential is required (metadata authorization: Bearer <token>)")
	}
	var proof string
	if vals := md.Get("dpop"); len(vals) > 0 {
		proof = vals[0]
	}
	// A DPoP proof for a gRPC call names the method as its htu and POST
	// (the HTTP/2 method of every gRPC call) as its htm.
	p := Presentation{Token: tok, Proof: proof, Method: http.MethodPost, URI: method}
	c, err := v.VerifyPresentation(ctx, p, Check{Scopes: o.Scopes[method], Online: o.Online[method]})
	switch {
	case err == nil:
		return NewContext(ctx, c), nil
	case errors.Is(err, ErrInsufficientScope):
		return nil, status.Error(codes.PermissionDenied, "the credential does not grant the scope this method needs")
	case errors.Is(err, ErrKeysUnavailable), errors.Is(err, ErrIntrospectionUnavailable):
		return nil, status.Error(codes.Unavailable, "cannot verify credentials right now; retry")
	default:
		_, msg := httpStatus(err)
		return nil, status.Error(codes.Unauthenticated, msg)
	}
}

// UnaryServerInterceptor verifies the credential of each unary call.
func (v *Verifier) UnaryServerInterceptor(o GRPCOptions) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := v.authorize(ctx, o, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor verifies the credential of each stream.
func (v *Verifier) StreamServerInterceptor(o GRPCOptions) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := v.authorize(ss.Context(), o, info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
	}
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }
