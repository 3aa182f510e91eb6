package credverify

import (
	"context"
	"errors"
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
	// Online asks the issuer on every request (VerifyOnline).
	Online bool
	// PublicURL is the scheme and host the API is reached at, for the DPoP
	// htu check (e.g. "https://tickets.example.com"); from the request when empty.
	PublicURL string
}

// Middleware refuses requests without a valid credential (401, or 403 for a
// missing scope) and puts the verified claims in the request context.
func (v *Verifier) Middleware(o HTTPOptions, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="jitid"`)
			http.Error(w, "a jitid credential is required (Authorization: Bearer <token>)", http.StatusUnauthorized)
			return
		}
		verify := v.Verify
		if o.Online {
			verify = v.VerifyOnline
		}
		c, err := verify(r.Context(), tok, o.Scopes...)
		if err == nil {
			base := o.PublicURL
			if base == "" {
				scheme := "http"
				if r.TLS != nil {
					scheme = "https"
				}
				base = scheme + "://" + r.Host
			}
			err = CheckProof(c, r.Header.Get("DPoP"), tok, r.Method, base+r.URL.Path, v.o.Clock(), ProofWindow)
		}
		if err != nil {
			code, msg := httpStatus(err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="jitid", error="`+wwwError(err)+`"`)
			http.Error(w, msg, code)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), c)))
	})
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

func wwwError(err error) string {
	if errors.Is(err, ErrInsufficientScope) {
		return "insufficient_scope"
	}
	return "invalid_token"
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
	verify := v.Verify
	if o.Online[method] {
		verify = v.VerifyOnline
	}
	c, err := verify(ctx, tok, o.Scopes[method]...)
	if err == nil {
		var proof string
		if vals := md.Get("dpop"); len(vals) > 0 {
			proof = vals[0]
		}
		err = CheckProof(c, proof, tok, "POST", method, v.o.Clock(), ProofWindow)
	}
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
