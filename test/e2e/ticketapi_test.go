package e2e_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
	"github.com/jitid/jitid/testkit"
	"github.com/jitid/jitid/testkit/gobin"
	"github.com/jitid/jitid/testkit/launch"
)

// ticketAPI is one running examples/ticketapi process.
type ticketAPI struct {
	url string
	*launch.Process
}

// startTicketAPI runs the ticket API against s (keys and introspection
// from the first issuer over gRPC, revocations from s's stream) and waits
// until /healthz says its revocation list is loaded.
func startTicketAPI(t *testing.T, s *stack) *ticketAPI {
	t.Helper()
	bin := gobin.Build(t, gobin.Target{Module: "github.com/jitid/jitid/examples/ticketapi", Package: ".", Race: *raceBinaries})
	rs := s.svid(ticketAPIID)
	p := launch.ForTest(t, launch.Spec{
		Name: "ticketapi", Path: bin, LogPath: filepath.Join(t.TempDir(), "ticketapi.log"),
		Args: []string{
			"-addr", "127.0.0.1:0",
			"-issuer-addr", s.issuers[0].grpc,
			"-issuer-id", issuerID,
			"-tls-cert", rs.Cert, "-tls-key", rs.Key, "-tls-bundle", rs.Bundle,
			"-nats-url", s.natsURL,
			"-stream", s.stream,
			"-subject-prefix", s.subjectPrefix,
			"-log-format", "text",
		},
		Ready: launch.LogLine("ticket API listening"),
	})
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := &ticketAPI{url: "http://" + p.Addr("addr"), Process: p}
	testkit.Eventually(t, "ticketapi /healthz 200 (revocation list loaded)", 30*time.Second, 50*time.Millisecond, func() (string, bool) {
		res, err := http.Get(a.url + "/healthz")
		if err != nil {
			return err.Error(), false
		}
		res.Body.Close()
		return res.Status, res.StatusCode == http.StatusOK
	})
	return a
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

const purchaseBody = `{"ticket_id": "t-200", "quantity": 1}`

// ticketRequest is p's request for a credential to the ticket API.
func ticketRequest(p party, scopes ...string) *issuerv1.IssueCredentialRequest {
	r := p.request()
	r.Audience = "tickets-api"
	r.Scopes = scopes
	return r
}

// TestTicketAPIRevocation proves issue 4 §4 from the outside: a resource
// server using pkg/credverify accepts a fresh credential, refuses it
// within one second of its revocation without asking the issuer (the
// revocation list fed by NATS), and refuses a sensitive purchase at once
// through online introspection, even while no revocation event can reach it.
func TestTicketAPIRevocation(t *testing.T) {
	t.Parallel()
	// The ticket API introspects the credentials of its audience.
	s, idp := delegatorStack(t, stackOptions{issuerArgs: []string{"-resource-servers", "tickets-api=" + ticketAPIID}})
	api := startTicketAPI(t, s)

	reader := s.issue(t, ticketRequest(s.party("reader"), "tickets:read"))
	bystander := s.issue(t, ticketRequest(s.party("bystander"), "tickets:read"))
	// Buying tickets needs an age-verified delegator (default policy),
	// which only the identity provider's token can prove.
	buyerReq := ticketRequest(s.party("buyer"), "tickets:read", "tickets:purchase")
	idToken, _ := idp.tokens(t, "alice")
	buyerReq.Delegator, buyerReq.SubjectToken, buyerReq.SubjectTokenType = nil, idToken, typeIDToken
	buyer := s.issue(t, buyerReq)
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
		testkit.Eventually(t, "GET /tickets with the revoked credential refused (401) within 1s", time.Second, 20*time.Millisecond, func() (int, bool) {
			code, body := api.call(t, http.MethodGet, "/tickets", reader.GetToken(), "")
			if code != http.StatusOK && code != http.StatusUnauthorized {
				t.Fatalf("GET /tickets after revocation: %d %s; want 200 then 401", code, body)
			}
			return code, code == http.StatusUnauthorized
		})
		t.Logf("refused %v after revocation", time.Since(revokedAt).Round(time.Millisecond))
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
