package cli_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/mtls"
	"github.com/jitid/jitid/pkg/statusreason"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
	"github.com/jitid/jitid/testkit/gobin"
	"github.com/jitid/jitid/testkit/launch"
	"github.com/jitid/jitid/testkit/testca"
)

// TestLowLabelledPaymentsTransferIsDecidedAsCritical runs the policy
// binary with the built-in set over mTLS, as the issuer reaches it, and
// tries what a platform would: label a payment LOW, ask for a scope no one
// catalogued, call policy itself, and pick the decision time.
func TestLowLabelledPaymentsTransferIsDecidedAsCritical(t *testing.T) {
	t.Parallel()
	const (
		policyID   = "spiffe://jitid.test/policy"
		issuerID   = "spiffe://jitid.test/issuer"
		adminID    = "spiffe://jitid.test/admin"
		platformID = "spiffe://jitid.test/platform/support-bot"
	)
	ca := testca.New(t, "jitid.test")
	dir := t.TempDir()
	srv := ca.WriteSVID(t, t.TempDir(), policyID)
	bin := gobin.Build(t, gobin.Target{Module: "github.com/jitid/jitid/services/policy", Package: "./cmd/policy"})
	spec := launch.Service("policy", bin, filepath.Join(dir, "policy.log"),
		"-grpc-addr", "127.0.0.1:0", "-admin-addr", "", "-authzen-addr", "", "-log-format", "text",
		"-tls-cert", srv.Cert, "-tls-key", srv.Key, "-tls-bundle", srv.Bundle,
		// The platform passes the handshake (it may read the set in use)
		// but is no evaluator.
		"-allowed-clients", strings.Join([]string{issuerID, adminID, platformID}, ","),
		"-evaluators", issuerID, "-admins", adminID)
	// The launcher's health probe is plaintext, which an mTLS server
	// refuses: the serving line is enough.
	spec.Health = false
	p := launch.ForTest(t, spec)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	client := func(id string) policyv1.PolicyServiceClient {
		f := ca.WriteSVID(t, t.TempDir(), id)
		src, err := mtls.NewFileSource(mtls.FileConfig{CertFile: f.Cert, KeyFile: f.Key, BundleFile: f.Bundle})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = src.Close() })
		authz, err := mtls.ParseAllowList([]string{policyID})
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(p.Addr("grpc"), grpc.WithTransportCredentials(mtls.ClientCredentials(src, authz)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return policyv1.NewPolicyServiceClient(conn)
	}
	issuer, admin, platform := client(issuerID), client(adminID), client(platformID)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	request := func(scopes ...string) *policyv1.EvaluateRequest {
		return &policyv1.EvaluateRequest{
			Agent:     &identityv1.Agent{Id: "agent-1", Class: identityv1.AgentClass_AGENT_CLASS_EPHEMERAL},
			Delegator: &identityv1.Delegator{Id: "user:ceo@corp", Entitlements: scopes},
			Task:      &identityv1.Task{Id: "task-1", Sensitivity: identityv1.Sensitivity_SENSITIVITY_LOW},
			Scopes:    scopes,
			Ttl:       durationpb.New(time.Hour),
			Platform:  platformID,
		}
	}

	resp, err := issuer.Evaluate(ctx, request("payments:transfer", "tickets:read"))
	if err != nil {
		t.Fatal(err)
	}
	d := resp.GetDecision()
	if got := d.GetGrantedScopes(); len(got) != 1 || got[0] != "tickets:read" {
		t.Errorf("granted %v, want only tickets:read", got)
	}
	want := `scope "payments:transfer": needs human approval (judged CRITICAL, the scope catalogue's minimum for it; the task was labelled LOW)`
	if r := d.GetReasons(); len(r) != 1 || r[0] != want {
		t.Errorf("reasons %q, want %q", r, want)
	}

	t.Run("ScopeOutsideTheCatalogueIsDenied", func(t *testing.T) {
		resp, err := issuer.Evaluate(ctx, request("admin2:everything"))
		if err != nil {
			t.Fatal(err)
		}
		if d := resp.GetDecision(); d.GetAllow() || len(d.GetReasons()) != 1 || !strings.Contains(d.GetReasons()[0], "not in the scope catalogue") {
			t.Errorf("decision %v, want a denial naming the scope catalogue", d)
		}
	})
	t.Run("PlatformCannotEvaluateDirectly", func(t *testing.T) {
		_, err := platform.Evaluate(ctx, request("tickets:read"))
		if status.Code(err) != codes.PermissionDenied || statusreason.Of(err) != statusreason.CallerNotAllowed {
			t.Errorf("Evaluate from the platform = %v, want PermissionDenied, %s", err, statusreason.CallerNotAllowed)
		}
		if _, err := platform.GetPolicySet(ctx, &policyv1.GetPolicySetRequest{}); err != nil {
			t.Errorf("GetPolicySet from the platform = %v, want the set", err)
		}
	})
	t.Run("DecisionTimeFromANonAdminIsRefused", func(t *testing.T) {
		req := request("tickets:read")
		req.DecisionTime = timestamppb.New(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC))
		if _, err := issuer.Evaluate(ctx, req); status.Code(err) != codes.PermissionDenied {
			t.Errorf("Evaluate with a decision time from the issuer = %v, want PermissionDenied", err)
		}
		if _, err := admin.Evaluate(ctx, req); err != nil {
			t.Errorf("Evaluate with a decision time from the admin = %v, want a decision", err)
		}
	})
	t.Run("UnknownTimeZoneIsInvalidArgument", func(t *testing.T) {
		req := request("tickets:read")
		req.Delegator.TimeZone = "Mars/Olympus_Mons"
		if _, err := issuer.Evaluate(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("Evaluate with an unknown time zone = %v, want InvalidArgument", err)
		}
	})
}
