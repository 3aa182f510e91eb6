package grpcapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/pkg/statusreason"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
	"github.com/jitid/jitid/services/issuer/internal/grpcapi"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/policyclient"
	"github.com/jitid/jitid/services/issuer/internal/redisstore"
	"github.com/jitid/jitid/services/issuer/internal/signing"
	"github.com/jitid/jitid/testkit/grpctest"
	"github.com/jitid/jitid/testkit/testserver"
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

// TestNoCallerIsUnauthenticated: a server that authenticates nobody (no
// mTLS, no authenticator) answers every method authorized by caller with
// UNAUTHENTICATED: it fails closed rather than act for anyone.
func TestNoCallerIsUnauthenticated(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: testserver.RedisAddr(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	st := redisstore.New(rdb, redisstore.Options{Prefix: testserver.Namespace(t)})
	keys, err := signing.Load(signing.Options{Issuer: testIssuer})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := policyclient.New(policyclient.Options{Addr: startPolicy(t, allowAll), Timeout: policyTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	iss, err := issuer.New(issuer.Config{Issuer: testIssuer, DefaultAudience: "jitid", MaxTTL: time.Hour}, pc, st, keys)
	if err != nil {
		t.Fatal(err)
	}
	conn := grpctest.Serve(t, grpcapi.New(iss, nil).Register)
	c := issuerv1.NewIssuerServiceClient(conn)
	ctx := t.Context()
	calls := map[string]func() error{
		"IntrospectCredential": func() error {
			_, err := c.IntrospectCredential(ctx, &issuerv1.IntrospectCredentialRequest{Token: "a.b.c"})
			return err
		},
		"ListCredentials": func() error {
			_, err := c.ListCredentials(ctx, &issuerv1.ListCredentialsRequest{Selector: &issuerv1.ListCredentialsRequest_TaskId{TaskId: "t"}})
			return err
		},
		"RevokeCredentials": func() error {
			_, err := c.RevokeCredentials(ctx, &issuerv1.RevokeCredentialsRequest{Selector: &issuerv1.RevokeCredentialsRequest_DelegatorId{DelegatorId: "d"}})
			return err
		},
		"CompleteTask": func() error {
			_, err := c.CompleteTask(ctx, &issuerv1.CompleteTaskRequest{TaskId: "t"})
			return err
		},
	}
	for name, call := range calls {
		if err := call(); status.Code(err) != codes.Unauthenticated || statusreason.Of(err) != statusreason.Unauthenticated {
			t.Errorf("%s without a caller: %v (reason %q); want UNAUTHENTICATED", name, err, statusreason.Of(err))
		}
	}
}
