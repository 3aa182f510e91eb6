package mtls_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/pkg/callerauth"
	"github.com/jitid/jitid/pkg/mtls"
)

// spireMakeTarget installs the binaries this test needs.
const spireMakeTarget = "make spire"

// TestSPIREWorkloadAPIMutualTLS runs a real spire-server (SQLite datastore,
// join-token node attestation) and spire-agent (unix workload attestation),
// registers two identities for this process's uid, takes one SVID through
// the Workload API into each of two sources, and makes an mTLS gRPC call
// between them. Then a JWT-SVID from the same agent is verified as a
// bearer caller (callerauth) against the Workload API's JWT bundles.
func TestSPIREWorkloadAPIMutualTLS(t *testing.T) {
	serverBin, agentBin := spireBinary(t, "spire-server"), spireBinary(t, "spire-agent")
	// Unix socket paths are limited to 108 bytes; t.TempDir() under a long
	// TMPDIR or test name could pass that.
	dir, err := os.MkdirTemp("", "spire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	})
	for _, d := range []string{"server-data", "agent-data"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}

	const td = "jitid.test"
	serverSock, port := startSPIREServer(t, serverBin, dir, td)
	admin := func(args ...string) string {
		t.Helper()
		args = append(args, "-socketPath", serverSock)
		out, err := exec.Command(serverBin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("spire-server %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	const agentID = "spiffe://" + td + "/agent"
	token, ok := strings.CutPrefix(strings.TrimSpace(admin("token", "generate", "-spiffeID", agentID, "-ttl", "600")), "Token: ")
	if !ok {
		t.Fatal("spire-server token generate printed no token")
	}
	uid := fmt.Sprintf("unix:uid:%d", os.Getuid())
	for _, id := range []string{policyID, issuerID} {
		admin("entry", "create", "-parentID", agentID, "-spiffeID", id, "-selector", uid)
	}
	bundle := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundle, []byte(admin("bundle", "show")), 0o644); err != nil {
		t.Fatal(err)
	}
	agentSock := startSPIREAgent(t, agentBin, dir, td, port, bundle, token)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	workload := func(id string) mtls.Source {
		t.Helper()
		src, err := mtls.NewWorkloadSource(ctx, mtls.WorkloadConfig{Addr: "unix://" + agentSock, ID: spiffeid.RequireFromString(id)})
		if err != nil {
			t.Fatalf("Workload API source for %s: %v", id, err)
		}
		t.Cleanup(func() {
			if err := src.Close(); err != nil {
				t.Error(err)
			}
		})
		svid, err := src.GetX509SVID()
		if err != nil || svid.ID.String() != id {
			t.Fatalf("Workload API SVID: %v, %v; want %s", svid, err, id)
		}
		return src
	}
	policy, issuer := workload(policyID), workload(issuerID)

	addr, rec := serve(t, mtls.ServerCredentials(policy, mtls.AllowIDs(spiffeid.RequireFromString(issuerID))))
	p, err := call(t, addr, mtls.ClientCredentials(issuer, mtls.AllowIDs(spiffeid.RequireFromString(policyID))))
	if err != nil {
		t.Fatalf("Check between SPIRE-issued SVIDs: %v", err)
	}
	if got, ok := mtls.PeerIDFromPeer(p); !ok || got.String() != policyID {
		t.Errorf("client saw server %v (ok=%v), want %s", got, ok, policyID)
	}
	if calls, callers := rec.seen(); calls != 1 || len(callers) != 1 || callers[0].String() != issuerID {
		t.Errorf("server saw %d calls from %v, want 1 from %s", calls, callers, issuerID)
	}

	// The same SPIRE-issued SVID is refused where its ID is not allowed.
	_, err = call(t, addr, mtls.ClientCredentials(issuer, mtls.AllowIDs(spiffeid.RequireFromString("spiffe://"+td+"/audit"))))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Check against a server outside the allow-list: got %v, want Unavailable", err)
	}
	if calls, _ := rec.seen(); calls != 1 {
		t.Errorf("server saw %d calls, want still 1", calls)
	}

	// A JWT-SVID the agent gives the issuer workload, for policy's
	// audience, is verified against the Workload API's JWT bundles and
	// names the issuer as the caller; for another audience it is refused.
	jwtSrc, err := workloadapi.NewJWTSource(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+agentSock)))
	if err != nil {
		t.Fatalf("Workload API JWT source: %v", err)
	}
	t.Cleanup(func() { _ = jwtSrc.Close() })
	jsvid, err := jwtSrc.FetchJWTSVID(ctx, jwtsvid.Params{Audience: policyID, Subject: spiffeid.RequireFromString(issuerID)})
	if err != nil {
		t.Fatalf("fetch JWT-SVID: %v", err)
	}
	for _, tc := range []struct {
		audience, want string
	}{{policyID, issuerID}, {"spiffe://" + td + "/audit", ""}} {
		v, err := callerauth.NewVerifier(callerauth.Config{Audiences: []string{tc.audience}, Bundles: jwtSrc})
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify(jsvid.Marshal())
		_ = v.Close()
		if tc.want == "" {
			if !errors.Is(err, callerauth.ErrInvalidToken) {
				t.Errorf("JWT-SVID for policy verified by a verifier for %s: %q, %v; want ErrInvalidToken", tc.audience, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("SPIRE JWT-SVID: caller %q, %v; want %s", got, err, tc.want)
		}
	}
}

// spireBinary finds name in the repository's .bin or on PATH. Without it the
// test skips, except in CI, which must run it.
func spireBinary(t *testing.T, name string) string {
	t.Helper()
	if root, err := repoRoot(); err == nil {
		p := filepath.Join(root, ".bin", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found in .bin/ or PATH: run `%s`", name, spireMakeTarget)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work above the working directory")
		}
		dir = parent
	}
}

// startSPIREServer starts spire-server and waits until it is healthy. It
// returns the admin API socket and the port agents reach it on.
//
// spire-server refuses bind_port 0, so the port is one the kernel just gave
// out; should another process take it before spire-server binds it, the
// server exits and is started again on another.
func startSPIREServer(t *testing.T, bin, dir, td string) (sock string, port int) {
	t.Helper()
	sock = filepath.Join(dir, "server.sock")
	for attempt := 1; ; attempt++ {
		port = freePort(t)
		conf := filepath.Join(dir, "server.conf")
		writeFile(t, conf, fmt.Sprintf(`server {
	bind_address = "127.0.0.1"
	bind_port = "%d"
	socket_path = %q
	trust_domain = %q
	data_dir = %q
	log_level = "DEBUG"
}
plugins {
	DataStore "sql" {
		plugin_data {
			database_type = "sqlite3"
			connection_string = %q
		}
	}
	NodeAttestor "join_token" {
		plugin_data {}
	}
	KeyManager "memory" {
		plugin_data {}
	}
}
`, port, sock, td, filepath.Join(dir, "server-data"), filepath.Join(dir, "server-data", "datastore.sqlite3")))
		exited := startProcess(t, "spire-server", bin, dir, "run", "-config", conf)
		healthy := func() bool {
			return exec.Command(bin, "healthcheck", "-socketPath", sock).Run() == nil
		}
		if waitFor(t, exited, healthy) {
			return sock, port
		}
		if attempt == 3 {
			t.Fatal("spire-server exited before becoming healthy, three times")
		}
	}
}

// startSPIREAgent starts spire-agent attested by the join token and returns
// its Workload API socket once the agent answers on it.
func startSPIREAgent(t *testing.T, bin, dir, td string, port int, bundle, token string) string {
	t.Helper()
	sock := filepath.Join(dir, "agent.sock")
	conf := filepath.Join(dir, "agent.conf")
	writeFile(t, conf, fmt.Sprintf(`agent {
	data_dir = %q
	log_level = "DEBUG"
	server_address = "127.0.0.1"
	server_port = "%d"
	socket_path = %q
	trust_bundle_path = %q
	trust_domain = %q
	join_token = %q
}
plugins {
	NodeAttestor "join_token" {
		plugin_data {}
	}
	KeyManager "memory" {
		plugin_data {}
	}
	WorkloadAttestor "unix" {
		plugin_data {}
	}
}
`, filepath.Join(dir, "agent-data"), port, sock, bundle, td, token))
	exited := startProcess(t, "spire-agent", bin, dir, "run", "-config", conf)
	healthy := func() bool {
		return exec.Command(bin, "healthcheck", "-socketPath", sock).Run() == nil
	}
	if !waitFor(t, exited, healthy) {
		t.Fatal("spire-agent exited before becoming healthy")
	}
	return sock
}

// startProcess runs bin until the test ends, its output in dir/<name>.log
// (shown if the test fails). The returned channel is closed when it exits.
func startProcess(t *testing.T, name, bin, dir string, args ...string) <-chan struct{} {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // killed when the test ends: the exit status says nothing
		if err := logFile.Close(); err != nil {
			t.Errorf("close %s: %v", logPath, err)
		}
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // it may have exited already
		<-exited
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", name, tail(out, 60))
		}
	})
	return exited
}

// waitFor polls ready until it holds (true) or the process exits or a
// minute passes (false, or a test failure for the timeout).
func waitFor(t *testing.T, exited <-chan struct{}, ready func() bool) bool {
	t.Helper()
	deadline := time.After(time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready() {
			return true
		}
		select {
		case <-exited:
			return false
		case <-deadline:
			t.Fatal("not healthy after a minute")
		case <-tick.C:
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().(*net.TCPAddr).Port
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func tail(b []byte, lines int) []byte {
	all := bytes.Split(b, []byte("\n"))
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return bytes.Join(all, []byte("\n"))
}
