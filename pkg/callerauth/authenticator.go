package callerauth

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/pkg/mtls"
	"github.com/jitid/jitid/pkg/statusreason"
)

// authorizationKey is the gRPC metadata key of a bearer token.
const authorizationKey = "authorization"

// Authenticator returns the authentication step of a server's interceptor
// chain. The caller of a call is:
//
//  1. the "sub" of the bearer token in the "authorization" metadata, when
//     the call carries one. A token that does not verify (or any token
//     when v is nil: the server takes none) is Unauthenticated; the call
//     never falls back to the peer, so that a caller is never someone
//     other than the one it said it was;
//  2. else the SPIFFE ID of the verified mTLS peer;
//  3. else nobody: Unauthenticated, saying what to send.
//
// Every refusal carries the UNAUTHENTICATED reason.
func Authenticator(v *Verifier) grpcserver.Authenticator {
	return func(ctx context.Context) (context.Context, error) {
		vals := metadata.ValueFromIncomingContext(ctx, authorizationKey)
		if len(vals) > 0 {
			caller, err := bearer(v, vals)
			if err != nil {
				return nil, err
			}
			return grpcserver.WithCaller(ctx, caller), nil
		}
		if id, ok := mtls.PeerID(ctx); ok {
			return grpcserver.WithCaller(ctx, id.String()), nil
		}
		msg := "no caller: send authorization: Bearer <JWT-SVID or client assertion>"
		if v == nil {
			msg = "no caller: connect with mTLS and a client certificate the server allows"
		}
		return nil, unauthenticated(msg)
	}
}

func bearer(v *Verifier, vals []string) (string, error) {
	if len(vals) != 1 {
		return "", unauthenticated("more than one authorization value: send one bearer token")
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", unauthenticated("authorization: want Bearer <JWT>")
	}
	if v == nil {
		return "", unauthenticated("this server takes no bearer tokens (no -caller-jwks or Workload API): use mTLS")
	}
	caller, err := v.Verify(strings.TrimSpace(token))
	if err != nil {
		return "", unauthenticated(err.Error())
	}
	return caller, nil
}

func unauthenticated(msg string) error {
	return statusreason.Error(codes.Unauthenticated, msg, statusreason.Unauthenticated, nil)
}
