package grpcapi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/statusreason"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
)

// TestPlatformCannotEvaluateDirectly: a platform that reaches the policy
// port cannot probe the policy (Evaluate, Explain) for the attributes that
// get a scope through; it may read which set is in use.
func TestPlatformCannotEvaluateDirectly(t *testing.T) {
	t.Parallel()
	ts := start(t)
	ctx := as(platformID)
	_, err := ts.client.Evaluate(ctx, evaluateRequest())
	if status.Code(err) != codes.PermissionDenied || statusreason.Of(err) != statusreason.CallerNotAllowed {
		t.Errorf("Evaluate from a platform = %v, want PermissionDenied, %s", err, statusreason.CallerNotAllowed)
	}
	_, err = ts.client.Explain(ctx, &policyv1.ExplainRequest{Request: evaluateRequest()})
	if status.Code(err) != codes.PermissionDenied || statusreason.Of(err) != statusreason.CallerNotAllowed {
		t.Errorf("Explain from a platform = %v, want PermissionDenied, %s", err, statusreason.CallerNotAllowed)
	}
	if _, err := ts.client.GetPolicySet(ctx, &policyv1.GetPolicySetRequest{}); err != nil {
		t.Errorf("GetPolicySet from a platform = %v, want the set (any authenticated caller)", err)
	}
	for _, caller := range []string{issuerID, adminID} {
		if _, err := ts.client.Evaluate(as(caller), evaluateRequest()); err != nil {
			t.Errorf("Evaluate from %s = %v, want a decision", caller, err)
		}
	}
}

// TestDecisionTimeFromANonAdminIsRefused: the decision time is the
// server's clock. An evaluator that sets it (to dodge a time rule, or to
// make an expired authentication look fresh) is refused; an admin, such
// as the replay tool, may.
func TestDecisionTimeFromANonAdminIsRefused(t *testing.T) {
	t.Parallel()
	ts := start(t)
	req := evaluateRequest()
	req.DecisionTime = timestamppb.New(time.Date(2099, 1, 1, 10, 0, 0, 0, time.UTC))
	for _, caller := range []string{issuerID, platformID} {
		_, err := ts.client.Evaluate(as(caller), req)
		if status.Code(err) != codes.PermissionDenied || statusreason.Of(err) != statusreason.CallerNotAllowed {
			t.Errorf("Evaluate with a decision time from %s = %v, want PermissionDenied, %s", caller, err, statusreason.CallerNotAllowed)
		}
		_, err = ts.client.Explain(as(caller), &policyv1.ExplainRequest{Request: req})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("Explain with a decision time from %s = %v, want PermissionDenied", caller, err)
		}
	}
	if _, err := ts.client.Evaluate(as(adminID), req); err != nil {
		t.Errorf("Evaluate with a decision time from the admin = %v, want a decision", err)
	}
	if _, err := ts.client.Explain(as(adminID), &policyv1.ExplainRequest{Request: req}); err != nil {
		t.Errorf("Explain with a decision time from the admin = %v, want an explanation", err)
	}
}

// TestPolicyWithoutAnAuthenticatorFailsClosed: a server wired with no
// authentication step (no caller on any call) answers UNAUTHENTICATED,
// never a decision.
func TestPolicyWithoutAnAuthenticatorFailsClosed(t *testing.T) {
	t.Parallel()
	ts := startWith(t, nil)
	ctx := context.Background()
	_, err := ts.client.Evaluate(ctx, evaluateRequest())
	if status.Code(err) != codes.Unauthenticated || statusreason.Of(err) != statusreason.Unauthenticated {
		t.Errorf("Evaluate = %v, want Unauthenticated, %s", err, statusreason.Unauthenticated)
	}
	if _, err := ts.client.Explain(ctx, &policyv1.ExplainRequest{Request: evaluateRequest()}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Explain = %v, want Unauthenticated", err)
	}
	if _, err := ts.client.GetPolicySet(ctx, &policyv1.GetPolicySetRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("GetPolicySet = %v, want Unauthenticated", err)
	}
}

// TestMissingEntitlementsGrantNothingOverGRPC: leaving the delegator's
// entitlements out of the request does not lift the entitlement check.
func TestMissingEntitlementsGrantNothingOverGRPC(t *testing.T) {
	t.Parallel()
	ts := start(t)
	req := evaluateRequest()
	req.Delegator.Entitlements = nil
	resp, err := ts.client.Evaluate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if d := resp.GetDecision(); d.GetAllow() || len(d.GetGrantedScopes()) > 0 {
		t.Errorf("decision without entitlements = %v, want a denial", d)
	}
}

// TestPlatformThatMayNotAssertGetsDelegatorUnproven: the default set lets
// no platform vouch for a delegator without a token, so an asserted
// delegator is a denial marked delegator_unproven, whatever the rest of
// the request, and Explain shows the check.
func TestPlatformThatMayNotAssertGetsDelegatorUnproven(t *testing.T) {
	t.Parallel()
	ts := start(t)
	req := evaluateRequest()
	req.Platform = platformID
	req.DelegatorAsserted = true
	resp, err := ts.client.Evaluate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	d := resp.GetDecision()
	want := `platform "` + platformID + `" may not assert delegators; send the delegator's subject_token`
	if d.GetAllow() || !d.GetDelegatorUnproven() || len(d.GetReasons()) != 1 || d.GetReasons()[0] != want {
		t.Errorf("decision = %v, want a denial, delegator_unproven and the reason %q", d, want)
	}
	ex, err := ts.client.Explain(context.Background(), &policyv1.ExplainRequest{Request: req})
	if err != nil {
		t.Fatal(err)
	}
	if sc := ex.GetScopes(); len(sc) == 0 || sc[0].GetScope() != "delegator:assert" || sc[0].GetGranted() {
		t.Errorf("Explain scopes = %v, want the refused delegator:assert check first", sc)
	}
	if !ex.GetDecision().GetDelegatorUnproven() {
		t.Errorf("Explain decision = %v, want delegator_unproven", ex.GetDecision())
	}
	// Proven (no assertion): the same request is decided on its merits.
	req.DelegatorAsserted = false
	if resp, err := ts.client.Evaluate(context.Background(), req); err != nil || !resp.GetDecision().GetAllow() {
		t.Errorf("the same request with a proven delegator = %v, %v; want an allow", resp.GetDecision(), err)
	}
}

// TestLowLabelledPaymentsTransferIsDecidedAsCriticalOverGRPC: the label
// is the caller's; the catalogue's minimum is the security team's.
func TestLowLabelledPaymentsTransferIsDecidedAsCriticalOverGRPC(t *testing.T) {
	t.Parallel()
	ts := start(t)
	req := evaluateRequest()
	req.Task.Sensitivity = identityv1.Sensitivity_SENSITIVITY_LOW
	req.Scopes = []string{"payments:transfer", "tickets:read"}
	req.Delegator.Entitlements = req.Scopes
	resp, err := ts.client.Evaluate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	d := resp.GetDecision()
	if got := d.GetGrantedScopes(); len(got) != 1 || got[0] != "tickets:read" {
		t.Errorf("granted %v, want only tickets:read", got)
	}
	if r := d.GetReasons(); len(r) != 1 || !strings.Contains(r[0], "needs human approval") || !strings.Contains(r[0], "judged CRITICAL") {
		t.Errorf("reasons %q, want payments:transfer judged CRITICAL and sent to a human", r)
	}
	// Explain says at what each scope was judged, granted or not.
	ex, err := ts.client.Explain(context.Background(), &policyv1.ExplainRequest{Request: req})
	if err != nil {
		t.Fatal(err)
	}
	judged := map[string]identityv1.Sensitivity{}
	for _, sc := range ex.GetScopes() {
		judged[sc.GetScope()] = sc.GetSensitivity()
	}
	if judged["payments:transfer"] != identityv1.Sensitivity_SENSITIVITY_CRITICAL || judged["tickets:read"] != identityv1.Sensitivity_SENSITIVITY_LOW {
		t.Errorf("Explain judged %v, want payments:transfer CRITICAL and tickets:read LOW", judged)
	}
}
