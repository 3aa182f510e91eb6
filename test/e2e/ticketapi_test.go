package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
)

// The example resource server, built once per test binary run beside the
// services (go build in examples/ticketapi, like the harness does for
// services/*).
var ticketAPIBin struct {
	once sync.Once
	path string
	err  error
}

func ticketAPIBinary(t testing.TB) string {
	t.Helper()
	ticketAPIBin.once.Do(func() {
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			ticketAPIBin.err = err
			return
		}
		out := filepath.Join(binaries.dir, "ticketapi")
		args := []string{"build", "-o", out}
		if *raceBinaries {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, ".")...)
		cmd.Dir = filepath.Join(root, "examples", "ticketapi")
		if b, err := cmd.CombinedOutput(); err != nil {
			ticketAPIBin.err = fmt.Errorf("go build in examples/ticketapi: %w\n%s", err, b)
			return
		}
		ticketAPIBin.path = out
	})
	if ticketAPIBin.err != nil {
		t.Fatalf("ticketapi binary unavailable: %v", ticketAPIBin.err)
	}
	return ticketAPIBin.path
}

// ticketAPI is one running examples/ticketapi process.
type ticketAPI struct {
	url     string
	logPath string
}

// startTicketAPI runs the ticket API against s (keys and introspection
// from the first issuer over gRPC, revocations from s's stream) and waits
// until /healthz says its revocation list is loaded.
func startTicketAPI(t *testing.T, s *stack) *ticketAPI {
	t.Helper()
	addr := freeAddr(t)
	a := &ticketAPI{url: "http://" + addr, logPath: filepath.Join(t.TempDir(), "ticketapi.log")}
	f, err := os.Create(a.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ticketAPIBinary(t),
		"-addr", addr,
		"-issuer-addr", s.issuers[0].grpc,
		"-nats-url", s.natsURL,
		"-stream", s.stream,
		"-subject-prefix", s.subjectPrefix,
		"-log-format", "text",
	)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); _ = f.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ticketapi exited with %v after SIGTERM; want status 0", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("ticketapi did not exit within 10s of SIGTERM")
			_ = cmd.Process.Kill()
			<-done //nolint:errcheck // killed: how it ended is already reported above
		}
		if t.Failed() || *keepLogs {
			t.Logf("--- ticketapi log (tail) %s ---\n%s", a.logPath, tail(a.logPath, 60))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(a.url + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return a
			}
		}
		select {
		case err := <-done:
			t.Fatalf("ticketapi exited before it was ready: %v\n%s", err, tail(a.logPath, 40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ticketapi not ready within 30s\n%s", tail(a.logPath, 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// call sends one request with token as the bearer credential and returns
// the status and body.
func (a *ticketAPI) call(t testing.TB, method, path, token, body string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

func (a *ticketAPI) Log() string {
	b, _ := os.ReadFile(a.logPath)
	return string(b)
}

const purchaseBody = `{"ticket_id": "t-200", "quantity": 1}`

// ticketRequest is p's request for a credential to the ticket API.
func ticketRequest(p party, scopes ...string) *issuerv1.IssueCredentialRequest {
	r := p.request()
	r.Audience = "tickets-api"
	r.Scopes = scopes
	// Buying tickets needs an age-verified delegator (default policy).
	r.Delegator.Attributes = map[string]string{"age_verified": "true"}
	return r
}

// TestTicketAPIRevocation proves issue 4 §4 from the outside: a resource
// server using pkg/credverify accepts a fresh credential, refuses it
// within one second of its revocation without asking the issuer (the
// revocation list fed by NATS), and refuses a sensitive purchase at once
// through online introspection, even while no revocation event can reach it.
func TestTicketAPIRevocation(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	api := startTicketAPI(t, s)

	reader := s.issue(t, ticketRequest(s.party("reader"), "tickets:read"))
	bystander := s.issue(t, ticketRequest(s.party("bystander"), "tickets:read"))
	buyer := s.issue(t, ticketRequest(s.party("buyer"), "tickets:read", "tickets:purchase"))
	tokens := []string{reader.GetToken(), bystander.GetToken(), buyer.GetToken()}

	// Accepted, and the response names who authorised what.
	code, body := api.call(t, http.MethodGet, "/tickets", reader.GetToken(), "")
	if code != http.StatusOK {
		t.Fatalf("GET /tickets with a fresh credential: %d %s", code, body)
	}
	var list struct {
		Delegation struct {
			CredentialID string   `json:"credential_id"`
			Delegator    string   `json:"delegator"`
			AgentChain   []string `json:"agent_chain"`
			TaskID       string   `json:"task_id"`
		} `json:"delegation"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("GET /tickets body %s: %v", body, err)
	}
	p := s.party("reader")
	if d := list.Delegation; d.CredentialID != reader.GetId() || d.Delegator != p.delegator ||
		len(d.AgentChain) != 1 || d.AgentChain[0] != p.agent || d.TaskID != p.task {
		t.Errorf("delegation in the response = %+v; want credential %s, delegator %s, agents [%s], task %s",
			d, reader.GetId(), p.delegator, p.agent, p.task)
	}
	if code, body := api.call(t, http.MethodPost, "/tickets/purchase", reader.GetToken(), purchaseBody); code != http.StatusForbidden {
		t.Errorf("purchase without tickets:purchase: %d %s; want 403", code, body)
	}

	t.Run("offline: refused within one second of revocation", func(t *testing.T) {
		ctx := ctxTimeout(t, 10*time.Second)
		if _, err := s.issuer.RevokeCredentials(ctx, &issuerv1.RevokeCredentialsRequest{
			Selector: &issuerv1.RevokeCredentialsRequest_CredentialId{CredentialId: reader.GetId()}, Reason: "e2e: agent misbehaved",
		}); err != nil {
			t.Fatalf("RevokeCredentials: %v", err)
		}
		revokedAt := time.Now()
		for {
			code, body := api.call(t, http.MethodGet, "/tickets", reader.GetToken(), "")
			if code == http.StatusUnauthorized {
				t.Logf("refused %v after revocation", time.Since(revokedAt).Round(time.Millisecond))
				break
			}
			if code != http.StatusOK {
				t.Fatalf("GET /tickets after revocation: %d %s; want 200 then 401", code, body)
			}
			if time.Since(revokedAt) > time.Second {
				t.Fatalf("revoked credential still accepted %v after revocation", time.Since(revokedAt).Round(time.Millisecond))
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The refusal came from the revocation list, not from a call to
		// the issuer: with the issuer frozen, the revoked credential stays
		// refused and a live one is still served.
		s.issuers[0].Pause()
		defer s.issuers[0].Resume()
		if code, body := api.call(t, http.MethodGet, "/tickets", reader.GetToken(), ""); code != http.StatusUnauthorized {
			t.Errorf("revoked credential with the issuer frozen: %d %s; want 401", code, body)
		}
		if code, body := api.call(t, http.MethodGet, "/tickets", bystander.GetToken(), ""); code != http.StatusOK {
			t.Errorf("live credential with the issuer frozen: %d %s; want 200 (offline verification)", code, body)
		}
	})

	t.Run("online: purchase refused at once, before any revocation event", func(t *testing.T) {
		if code, body := api.call(t, http.MethodPost, "/tickets/purchase", buyer.GetToken(), purchaseBody); code != http.StatusOK {
			t.Fatalf("purchase with a fresh credential: %d %s", code, body)
		}
		// With NATS down, no revocation event can reach the API: only the
		// issuer knows.
		s.StopNATS()
		natsUp := false
		defer func() {
			if !natsUp {
				s.StartNATS()
			}
		}()
		ctx := ctxTimeout(t, 10*time.Second)
		if _, err := s.issuer.RevokeCredentials(ctx, &issuerv1.RevokeCredentialsRequest{
			Selector: &issuerv1.RevokeCredentialsRequest_CredentialId{CredentialId: buyer.GetId()}, Reason: "e2e: purchase cancelled",
		}); err != nil {
			t.Fatalf("RevokeCredentials: %v", err)
		}
		if code, body := api.call(t, http.MethodPost, "/tickets/purchase", buyer.GetToken(), purchaseBody); code != http.StatusUnauthorized {
			t.Errorf("purchase right after revocation: %d %s; want 401 (introspection)", code, body)
		}
		// Reads are offline: the revocation has not reached the list.
		if code, body := api.call(t, http.MethodGet, "/tickets", buyer.GetToken(), ""); code != http.StatusOK {
			t.Errorf("read while the revocation event is held back: %d %s; want 200 (nothing revoked known yet)", code, body)
		}
		// Once NATS is back the event arrives, and reads are refused too.
		s.StartNATS()
		natsUp = true
		waitFor(t, 30*time.Second, "the revocation event to reach the ticket API after NATS came back", func() bool {
			code, _ := api.call(t, http.MethodGet, "/tickets", buyer.GetToken(), "")
			return code == http.StatusUnauthorized
		})
	})

	// Secrets never leave: the API logs the delegation, never a token.
	log := api.Log()
	for i, tok := range tokens {
		if strings.Contains(log, tok) || strings.Contains(log, tok[strings.LastIndex(tok, ".")+1:]) {
			t.Errorf("ticketapi log contains token %d", i)
		}
	}
	for _, want := range []string{"tickets listed", reader.GetId(), p.delegator, "credential refused", "tickets purchased"} {
		if !strings.Contains(log, want) {
			t.Errorf("ticketapi log lacks %q", want)
		}
	}
}
