package grpcserver

import (
	"context"
	"math"
	"net"
	"time"

	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Default limits of every jitid gRPC server: a credential request is a few
// KiB, so 64 KiB leaves room without letting a caller park megabytes.
const (
	DefaultMaxRequestBytes      = 64 << 10
	DefaultMaxConcurrentStreams = 100
	DefaultMaxConnections       = 1024
	DefaultKeepaliveMinTime     = 30 * time.Second
	DefaultMaxConnectionIdle    = 5 * time.Minute
)

// Limits bound what one client can hold of a server. A zero field takes
// its Default.
type Limits struct {
	// MaxRequestBytes is the largest request message; a larger one is
	// answered ResourceExhausted before any handler sees it.
	MaxRequestBytes int
	// MaxConcurrentStreams caps the calls in flight on one connection.
	MaxConcurrentStreams uint32
	// MaxConnections caps the connections open at once; further ones wait
	// in the kernel's accept queue until one closes.
	MaxConnections int
	// KeepaliveMinTime is the shortest ping interval a client may use; a
	// client pinging faster, or pinging with no call open, is closed.
	KeepaliveMinTime time.Duration
	// MaxConnectionIdle closes a connection with no call for this long.
	MaxConnectionIdle time.Duration
	// CallerRate is the calls per second one authenticated caller may
	// make, over CallerBurst; a caller over it is answered
	// ResourceExhausted (RATE_LIMITED) with a RetryInfo. NoRateLimit
	// turns the limit off.
	CallerRate float64
	// CallerBurst is how many calls a caller may make at once.
	CallerBurst int
}

// withDefaults returns l with every zero field set to its default.
func (l Limits) withDefaults() Limits {
	if l.MaxRequestBytes <= 0 {
		l.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if l.MaxConnections <= 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	if l.KeepaliveMinTime <= 0 {
		l.KeepaliveMinTime = DefaultKeepaliveMinTime
	}
	if l.MaxConnectionIdle <= 0 {
		l.MaxConnectionIdle = DefaultMaxConnectionIdle
	}
	if l.CallerRate <= 0 || math.IsNaN(l.CallerRate) {
		l.CallerRate = DefaultCallerRate
	}
	if l.CallerBurst <= 0 {
		l.CallerBurst = DefaultCallerBurst
	}
	return l
}

// serverOptions returns the grpc options enforcing l (the connection cap is
// the listener's, see limitListener).
func (l Limits) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(l.MaxRequestBytes),
		grpc.MaxConcurrentStreams(l.MaxConcurrentStreams),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: l.KeepaliveMinTime, PermitWithoutStream: false}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: l.MaxConnectionIdle}),
	}
}

// limitListener caps the connections lis has open at once.
func (l Limits) limitListener(lis net.Listener) net.Listener {
	return netutil.LimitListener(lis, l.MaxConnections)
}

// DropUnknownFields removes, recursively, every field of m that its schema
// does not define, so that bytes a caller smuggles in unknown fields are
// never stored, published or forwarded.
func DropUnknownFields(m protoreflect.Message) {
	if !m.IsValid() {
		return
	}
	if len(m.GetUnknown()) > 0 {
		m.SetUnknown(nil)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			list := v.List()
			for i := range list.Len() {
				DropUnknownFields(list.Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				DropUnknownFields(mv.Message())
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			DropUnknownFields(v.Message())
		}
		return true
	})
}

// unaryDropUnknown strips unknown fields from every unary request.
func unaryDropUnknown(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if m, ok := req.(proto.Message); ok {
		DropUnknownFields(m.ProtoReflect())
	}
	return handler(ctx, req)
}

// streamDropUnknown strips unknown fields from every message a stream
// receives.
func streamDropUnknown(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, dropUnknownStream{ss})
}

type dropUnknownStream struct{ grpc.ServerStream }

func (s dropUnknownStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if pm, ok := m.(proto.Message); ok {
		DropUnknownFields(pm.ProtoReflect())
	}
	return nil
}
