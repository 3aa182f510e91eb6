package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/mtls"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
	"github.com/jitid/jitid/services/policy/internal/cli"
	"github.com/jitid/jitid/services/policy/internal/policy"
	"github.com/jitid/jitid/services/policy/policies"
	"github.com/jitid/jitid/testkit"
	"github.com/jitid/jitid/testkit/launch"
	"github.com/jitid/jitid/testkit/testca"
)

// TestServe runs `policy serve` as main does, over mTLS, on real sockets of
// port 0 read back from its "serving" lines, and asks it everything it
// serves as an admin: Evaluate, Explain and GetPolicySet over gRPC,
// AuthZEN over HTTPS with the client certificate, /policyz, /readyz and
// /metrics on the admin server; then stops it by cancelling its context.
func TestServe(t *testing.T) {
	t.Parallel()
	const (
		policyID = "spiffe://jitid.test/policy"
		adminID  = "spiffe://jitid.test/admin"
	)
	ca := testca.New(t, "jitid.test")
	srvFiles, own := ca.WriteSVID(t, t.TempDir(), policyID), ca.WriteSVID(t, t.TempDir(), adminID)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	// Every listener binds a port the kernel chooses; the log says which.
	servingLog, serving := launch.WatchLog(servingWith("grpc"))
	authzenLog, authzenServing := launch.WatchLog(servingWith("authzen"))
	out := io.MultiWriter(logs, servingLog, authzenLog)
	done := make(chan int, 1)
	go func() {
		done <- cli.Main(ctx, cli.Env{
			Args: []string{"serve", "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-authzen-addr", "127.0.0.1:0",
				"-tls-cert", srvFiles.Cert, "-tls-key", srvFiles.Key, "-tls-bundle", srvFiles.Bundle,
				"-allowed-clients", adminID, "-admins", adminID},
			Stdout: out, Stderr: out, LookupEnv: func(string) (string, bool) { return "", false },
		})
	}()
	src, err := mtls.NewFileSource(mtls.FileConfig{CertFile: own.Cert, KeyFile: own.Key, BundleFile: own.Bundle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	policyOnly, err := mtls.ParseAllowList([]string{policyID})
	if err != nil {
		t.Fatal(err)
	}
	httpsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: mtls.ClientTLSConfig(src, policyOnly)}}
	stopped := false
	t.Cleanup(func() {
		cancel()
		if !stopped {
			<-done
		}
		if t.Failed() {
			t.Logf("policy output:\n%s", logs.String())
		}
	})

	var grpcAddr, adminAddr, authzenAddr string
	for grpcAddr == "" || authzenAddr == "" {
		select {
		case attrs := <-serving:
			grpcAddr, adminAddr = attrs["grpc"], attrs["admin"]
		case attrs := <-authzenServing:
			authzenAddr = attrs["authzen"]
		case code := <-done:
			stopped = true
			t.Fatalf("serve exited %d at start", code)
		case <-time.After(15 * time.Second):
			t.Fatalf("serve did not log its bound addresses within 15s (grpc %q, authzen %q)", grpcAddr, authzenAddr)
		}
	}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(mtls.ClientCredentials(src, policyOnly)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	testkit.Eventually(t, "policy health SERVING", 15*time.Second, 20*time.Millisecond, func() (string, bool) {
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil {
			return err.Error(), false
		}
		return resp.GetStatus().String(), resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	client := policyv1.NewPolicyServiceClient(conn)
	def, err := policy.LoadFS(policies.Default(), policies.Source)
	if err != nil {
		t.Fatal(err)
	}

	req := &policyv1.EvaluateRequest{
		Agent: &identityv1.Agent{Id: "agent-1", Class: identityv1.AgentClass_AGENT_CLASS_RECURRING},
		Delegator: &identityv1.Delegator{Id: "alice", Attributes: map[string]string{"age_verified": "true"},
			Entitlements: []string{"tickets:purchase", "tickets:read"}},
		Task:         &identityv1.Task{Id: "task-1", Purpose: "tickets", Sensitivity: identityv1.Sensitivity_SENSITIVITY_MEDIUM},
		Scopes:       []string{"tickets:purchase", "tickets:read"},
		Ttl:          durationpb.New(time.Hour),
		DecisionTime: timestamppb.New(time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)),
	}
	rpcCtx, rpcCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rpcCancel()

	t.Run("Evaluate", func(t *testing.T) {
		resp, err := client.Evaluate(rpcCtx, req)
		if err != nil {
			t.Fatalf("Evaluate: %v", err)
		}
		want := &identityv1.Decision{
			Allow: true, GrantedScopes: []string{"tickets:purchase", "tickets:read"}, MaxTtl: durationpb.New(15 * time.Minute),
			Profile: identityv1.Profile_PROFILE_FULL, Obligations: []string{"age_verified"},
			Policies:      []string{"medium-sensitivity", "recurring-full-profile", "tickets-purchase-age-verified"},
			PolicyVersion: def.Version(),
		}
		if diff := cmp.Diff(want, resp.GetDecision(), protocmp.Transform(), protocmp.IgnoreFields(&identityv1.Decision{}, "decision_id")); diff != "" {
			t.Errorf("decision (-want +got):\n%s", diff)
		}
		if resp.GetDecision().GetDecisionId() == "" {
			t.Error("no decision id")
		}
	})

	t.Run("Explain", func(t *testing.T) {
		resp, err := client.Explain(rpcCtx, &policyv1.ExplainRequest{Request: req})
		if err != nil {
			t.Fatalf("Explain: %v", err)
		}
		if got := len(resp.GetScopes()); got != 2 {
			t.Fatalf("%d scopes explained, want 2", got)
		}
		for _, s := range resp.GetScopes() {
			if got, want := len(s.GetPolicies()), len(def.PolicyIDs()); got != want || !s.GetGranted() {
				t.Errorf("scope %s: granted %v, %d policies explained; want granted, %d", s.GetScope(), s.GetGranted(), got, want)
			}
		}
	})

	t.Run("GetPolicySet", func(t *testing.T) {
		resp, err := client.GetPolicySet(rpcCtx, &policyv1.GetPolicySetRequest{})
		if err != nil {
			t.Fatalf("GetPolicySet: %v", err)
		}
		if resp.GetVersion() != def.Version() {
			t.Errorf("version = %q, want %q", resp.GetVersion(), def.Version())
		}
	})

	t.Run("AuthZEN", func(t *testing.T) {
		body := `{"subject": {"type": "agent", "id": "agent-1", "properties": {"class": "EPHEMERAL"}},
		          "action": {"name": "tickets:read"},
		          "resource": {"type": "task", "id": "t-1", "properties": {"sensitivity": "LOW"}},
		          "context": {"delegator": {"id": "carol", "entitlements": ["tickets:read"]}, "ttl": "30m"}}`
		httpReq, err := http.NewRequestWithContext(rpcCtx, http.MethodPost, "https://"+authzenAddr+"/access/v1/evaluation", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		httpReq.Header.Set("Content-Type", "application/json")
		httpReq.Header.Set("X-Request-ID", "req-7")
		resp, err := httpsClient.Do(httpReq)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got struct {
			Decision bool `json:"decision"`
			Context  struct {
				PolicyVersion string `json:"policy_version"`
				MaxTTL        string `json:"max_ttl"`
			} `json:"context"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || !got.Decision || got.Context.PolicyVersion != def.Version() || got.Context.MaxTTL != "30m0s" {
			t.Errorf("AuthZEN: %d %+v; want 200, a permit for 30m by %s", resp.StatusCode, got, def.Version())
		}
		if id := resp.Header.Get("X-Request-ID"); id != "req-7" {
			t.Errorf("X-Request-ID = %q, want it echoed", id)
		}

		batch := `{"subject": {"type": "agent", "id": "agent-1", "properties": {"class": "EPHEMERAL"}},
		           "resource": {"type": "task", "id": "t-1", "properties": {"sensitivity": "CRITICAL"}},
		           "context": {"delegator": {"id": "carol", "entitlements": ["tickets:read"]}},
		           "evaluations": [{"action": {"name": "tickets:read"}}, {"action": {"name": "tickets:read"},
		             "resource": {"type": "task", "id": "t-2", "properties": {"sensitivity": "LOW"}}}]}`
		bresp, err := httpsClient.Post("https://"+authzenAddr+"/access/v1/evaluations", "application/json", strings.NewReader(batch))
		if err != nil {
			t.Fatal(err)
		}
		defer bresp.Body.Close()
		var bgot struct {
			Evaluations []struct {
				Decision bool `json:"decision"`
			} `json:"evaluations"`
		}
		if err := json.NewDecoder(bresp.Body).Decode(&bgot); err != nil {
			t.Fatal(err)
		}
		if len(bgot.Evaluations) != 2 || bgot.Evaluations[0].Decision || !bgot.Evaluations[1].Decision {
			t.Errorf("batch: %d %+v, want a deny (CRITICAL) then a permit (LOW)", bresp.StatusCode, bgot)
		}
	})

	t.Run("admin", func(t *testing.T) {
		var status map[string]any
		if err := json.Unmarshal([]byte(httpGet(t, "http://"+adminAddr+"/policyz")), &status); err != nil {
			t.Fatal(err)
		}
		if status["status"] != "ok" || status["version"] != def.Version() || status["source"] != policies.Source {
			t.Errorf("/policyz = %v; want ok, version %s, source %s", status, def.Version(), policies.Source)
		}
		var ready struct {
			Status string `json:"status"`
			Checks []struct {
				Name  string `json:"name"`
				Ready bool   `json:"ready"`
			} `json:"checks"`
		}
		if err := json.Unmarshal([]byte(httpGet(t, "http://"+adminAddr+"/readyz")), &ready); err != nil {
			t.Fatal(err)
		}
		if ready.Status != "ready" || len(ready.Checks) != 1 || ready.Checks[0].Name != "policy_set" || !ready.Checks[0].Ready {
			t.Errorf("/readyz = %+v, want ready with policy_set ready", ready)
		}
		metrics := httpGet(t, "http://"+adminAddr+"/metrics")
		if want := `jitid_policy_set_info{source="` + policies.Source + `",version="` + def.Version() + `"} 1`; !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	})

	cancel()
	select {
	case code := <-done:
		stopped = true
		if code != cli.ExitOK {
			t.Errorf("serve exited %d after cancel, want %d", code, cli.ExitOK)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop within 15s of its context ending")
	}
}

func TestServePortTakenFailsAtOnceWithTheBindError(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ca := testca.New(t, "jitid.test")
	srv := ca.WriteSVID(t, t.TempDir(), "spiffe://jitid.test/policy")
	var out bytes.Buffer
	code := cli.Main(context.Background(), cli.Env{
		Args: []string{"serve", "-grpc-addr", "127.0.0.1:0", "-admin-addr", "", "-authzen-addr", taken.Addr().String(),
			"-tls-cert", srv.Cert, "-tls-key", srv.Key, "-tls-bundle", srv.Bundle, "-allowed-clients", "spiffe://jitid.test/admin"},
		Stdout: &out, Stderr: &out, LookupEnv: func(string) (string, bool) { return "", false },
	})
	if code == cli.ExitOK || !strings.Contains(out.String(), "address already in use") {
		t.Errorf("serve with the AuthZEN port taken: exit %d, output %q; want a failure naming the bind error", code, out.String())
	}
}

func TestServeVersion(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	code := cli.Main(context.Background(), cli.Env{Args: []string{"serve", "-version"}, Stdout: &out, Stderr: &out})
	if code != cli.ExitOK || !strings.HasPrefix(out.String(), "policy ") {
		t.Errorf("serve -version: exit %d, output %q; want 0 and the version", code, out.String())
	}
}

// servingWith recognises the "serving" line of the listener named.
func servingWith(listener string) func([]byte) (map[string]string, bool) {
	return func(line []byte) (map[string]string, bool) {
		attrs, ok := launch.ServingLine(line)
		_, named := attrs[listener]
		return attrs, ok && named
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", url, resp.StatusCode, b)
	}
	return string(b)
}
