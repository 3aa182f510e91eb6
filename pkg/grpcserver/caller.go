package grpcserver

import (
	"context"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/pkg/mtls"
)

// logKeyCaller is the call log attribute naming the authenticated caller.
const logKeyCaller = "caller"

type callerKey struct{}

// callerSlot is put in the context ahead of the logging interceptor, which
// never sees the context the authentication step returns: WithCaller fills
// it so that the call's log line names the caller.
type callerSlot struct{ caller string }

type callerSlotKey struct{}

// WithCaller returns ctx carrying caller (a SPIFFE ID) as the authenticated
// caller of the call; an Authenticator calls it, and the call's log line
// gets a "caller" attribute.
func WithCaller(ctx context.Context, caller string) context.Context {
	if slot, ok := ctx.Value(callerSlotKey{}).(*callerSlot); ok {
		// The interceptors and the handler of one call run on one goroutine,
		// and the log line is written after the handler returns.
		slot.caller = caller
	}
	return context.WithValue(ctx, callerKey{}, caller)
}

// Caller returns the authenticated caller of the call in ctx, as set by the
// server's Authenticator; false when the server authenticates nobody.
func Caller(ctx context.Context) (string, bool) {
	c, ok := ctx.Value(callerKey{}).(string)
	return c, ok && c != ""
}

// PeerAuthenticator is the Authenticator of a server with mTLS credentials
// (mtls.ServerCredentials): the caller is the client's SPIFFE ID, verified
// and allowed by the handshake. A call on any other connection has no
// caller and is refused with Unauthenticated.
func PeerAuthenticator(ctx context.Context) (context.Context, error) {
	id, ok := mtls.PeerID(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no verified client certificate")
	}
	return WithCaller(ctx, id.String()), nil
}

func loggedCaller(ctx context.Context) (string, bool) {
	slot, ok := ctx.Value(callerSlotKey{}).(*callerSlot)
	if !ok || slot.caller == "" {
		return "", false
	}
	return slot.caller, true
}

func unaryCallerSlot(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(context.WithValue(ctx, callerSlotKey{}, &callerSlot{}), req)
}

func streamCallerSlot(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	w := middleware.WrapServerStream(ss)
	w.WrappedContext = context.WithValue(ss.Context(), callerSlotKey{}, &callerSlot{})
	return handler(srv, w)
}
