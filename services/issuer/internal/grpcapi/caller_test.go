package grpcapi_test

import (
	"context"

	"google.golang.org/grpc/metadata"

	"github.com/jitid/jitid/pkg/grpcserver"
)

// Callers of the tests: platforms A and B, and an admin.
const (
	platformA = "spiffe://jitid.test/platform/a"
	platformB = "spiffe://jitid.test/platform/b"
	adminID   = "spiffe://jitid.test/admin"
)

// callerHeader names, in a test, the caller the test authenticator makes
// of a call; platformA when absent. The real chain takes it from the mTLS
// peer (the e2e tests).
const callerHeader = "x-test-caller"

// testCaller is the Authenticator of the tests' servers.
func testCaller(ctx context.Context) (context.Context, error) {
	caller := platformA
	if v := metadata.ValueFromIncomingContext(ctx, callerHeader); len(v) > 0 {
		caller = v[0]
	}
	return grpcserver.WithCaller(ctx, caller), nil
}

// as returns ctx calling as caller.
func as(ctx context.Context, caller string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, callerHeader, caller)
}
