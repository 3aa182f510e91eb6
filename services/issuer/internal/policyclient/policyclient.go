// Package policyclient asks the policy service (jitid.policy.v1.PolicyService)
// for decisions. Every call carries its own deadline, and every failure is
// issuer.ErrPolicyUnavailable, so that the issuer fails closed, except a
// request policy refuses as invalid: that is the caller's mistake, and
// comes back as an *issuer.InvalidArgumentError naming every field.
package policyclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/pkg/statusreason"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
)

// Options configure a Client.
type Options struct {
	// Addr is the policy service address, e.g. "127.0.0.1:50052".
	Addr string
	// Timeout is the deadline of each call. Required.
	Timeout time.Duration
	// DialOptions replace the default transport credentials (plaintext, for
	// loopback): with mtls.ClientCredentials and the policy service's
	// SPIFFE ID, a server with any other identity fails the handshake, gets
	// no request, and Evaluate wraps issuer.ErrPolicyUnavailable.
	DialOptions []grpc.DialOption
}

// Client is a policy service client.
type Client struct {
	conn    *grpc.ClientConn
	client  policyv1.PolicyServiceClient
	timeout time.Duration
}

// New returns a Client. It does not connect: the connection is made on the
// first call and remade after failures, so the issuer starts while policy
// is down (and refuses to issue until it is up).
func New(opts Options) (*Client, error) {
	if opts.Addr == "" {
		return nil, errors.New("policyclient: Addr is required")
	}
	if opts.Timeout <= 0 {
		return nil, errors.New("policyclient: Timeout must be positive")
	}
	dial := opts.DialOptions
	if len(dial) == 0 {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(opts.Addr, dial...)
	if err != nil {
		return nil, fmt.Errorf("policyclient: %w", err)
	}
	return &Client{conn: conn, client: policyv1.NewPolicyServiceClient(conn), timeout: opts.Timeout}, nil
}

// Evaluate asks for the decision on req within the client's timeout. A
// request policy refuses as INVALID_ARGUMENT is an
// *issuer.InvalidArgumentError with policy's field violations; every other
// error wraps issuer.ErrPolicyUnavailable, the cause kept as text only, so
// that the policy service's status code never leaks through as the
// issuer's own.
func (c *Client) Evaluate(ctx context.Context, req *policyv1.EvaluateRequest) (*identityv1.Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.client.Evaluate(ctx, req)
	if err != nil {
		if invalid := invalidArgument(err); invalid != nil {
			return nil, invalid
		}
		return nil, fmt.Errorf("%w: evaluate: %v", issuer.ErrPolicyUnavailable, err) //nolint:errorlint // the sentinel is what callers match; the cause is detail, kept out of errors.As and status.FromError
	}
	if resp.GetDecision() == nil {
		return nil, fmt.Errorf("%w: evaluate: response without a decision", issuer.ErrPolicyUnavailable)
	}
	return resp.GetDecision(), nil
}

// invalidArgument is the domain error for policy's INVALID_ARGUMENT with
// its field violations, nil for any other status. A status without
// violations is not trusted as the caller's mistake: it is unavailability.
func invalidArgument(err error) *issuer.InvalidArgumentError {
	if status.Code(err) != codes.InvalidArgument || statusreason.Of(err) != statusreason.InvalidRequest {
		return nil
	}
	fvs := statusreason.BadRequest(err)
	if len(fvs) == 0 {
		return nil
	}
	out := &issuer.InvalidArgumentError{Field: fvs[0].GetField(), Reason: fvs[0].GetDescription()}
	for _, fv := range fvs[1:] {
		out.More = append(out.More, issuer.FieldViolation{Field: fv.GetField(), Reason: fv.GetDescription()})
	}
	return out
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }
