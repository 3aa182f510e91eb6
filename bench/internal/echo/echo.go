// Package echo is a bare gRPC unary echo service, hand-described (no
// generated code): the ceiling of what any gRPC service can answer on this
// machine, with the same payload sizes as a real call.
package echo

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Method is the full method name of the echo call.
const Method = "/jitid.bench.v1.Echo/Echo"

// ServiceDesc describes the echo service: one unary method that returns its
// request (a BytesValue) as it came.
var ServiceDesc = grpc.ServiceDesc{
	ServiceName: "jitid.bench.v1.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := &wrapperspb.BytesValue{}
			if err := dec(in); err != nil {
				return nil, err
			}
			return in, nil
		},
	}},
	Metadata: "echo",
}

// Call sends payload and receives it back.
func Call(ctx context.Context, conn grpc.ClientConnInterface, payload []byte) error {
	out := &wrapperspb.BytesValue{}
	return conn.Invoke(ctx, Method, &wrapperspb.BytesValue{Value: payload}, out)
}
