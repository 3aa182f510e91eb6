package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
	"github.com/jitid/jitid/services/issuer/internal/app"
	"github.com/jitid/jitid/testkit/testca"
	"github.com/jitid/jitid/testkit/testserver"
)

// limitsIssuer is an mTLS issuer whose Redis keys, stream and NATS server
// the test reads.
type limitsIssuer struct {
	addr      string
	redisAddr string
	prefix    string
	natsURL   string
	stream    string
}

func startLimitsIssuer(t *testing.T, ca *testca.CA, policyAddr string) limitsIssuer {
	t.Helper()
	li := limitsIssuer{redisAddr: testserver.RedisAddr(t), prefix: testserver.Namespace(t), natsURL: testserver.NATSURL(t), stream: testserver.Namespace(t)}
	f := ca.WriteSVID(t, t.TempDir(), issuerID)
	cfg := load(t, map[string]string{
		"JITID_REDIS_ADDR":      li.redisAddr,
		"JITID_KEY_PREFIX":      li.prefix,
		"JITID_NATS_URL":        li.natsURL,
		"JITID_STREAM":          li.stream,
		"JITID_POLICY_ADDR":     policyAddr,
		"JITID_POLICY_ID":       policyID,
		"JITID_TLS_CERT":        f.Cert,
		"JITID_TLS_KEY":         f.Key,
		"JITID_TLS_BUNDLE":      f.Bundle,
		"JITID_ALLOWED_CLIENTS": platformID,
	})
	a, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v after cancel", err)
		}
	})
	li.addr = a.Server().GRPCAddress()
	return li
}

// storedValues returns the serialized value of every Redis key under the
// issuer's prefix.
func (li limitsIssuer) storedValues(t *testing.T) map[string][]byte {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: li.redisAddr})
	defer rdb.Close()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, li.prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, k := range keys {
		v, err := rdb.Dump(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		out[k] = []byte(v)
	}
	return out
}

// events returns the data of every event in the issuer's stream.
func (li limitsIssuer) events(t *testing.T) [][]byte {
	t.Helper()
	nc, err := nats.Connect(li.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, li.stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Data)
	}
	return out
}

// TestUnknownFieldIsNotStored sends an issuance whose Agent carries 48 KiB
// of random bytes in a field the schema does not define (within the request
// cap): the credential is issued, and neither a Redis value nor a published
// event holds those bytes.
func TestUnknownFieldIsNotStored(t *testing.T) {
	t.Parallel()
	ca := testca.New(t, "jitid.test")
	policyAddr, _ := startFakePolicy(t, ca, policyID)
	li := startLimitsIssuer(t, ca, policyAddr)
	c := issuerClient(t, li.addr, platformCreds(t, ca))

	smuggled := make([]byte, 48<<10)
	if _, err := rand.Read(smuggled); err != nil {
		t.Fatal(err)
	}
	req := issueRequest("task-unknown-field")
	unknown := protowire.AppendTag(nil, 9999, protowire.BytesType)
	req.Agent.ProtoReflect().SetUnknown(protowire.AppendBytes(unknown, smuggled))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.IssueCredential(ctx, req)
	if err != nil {
		t.Fatalf("IssueCredential() = %v", err)
	}
	if res.GetToken() == "" || res.GetCredential().GetId() == "" {
		t.Fatalf("no credential issued: %v", res)
	}

	marker := smuggled[:64]
	var events [][]byte
	eventually(t, "the issuance event is published", func() bool {
		events = li.events(t)
		return len(events) > 0
	})
	for i, e := range events {
		if bytes.Contains(e, marker) || len(e) > 16<<10 {
			t.Errorf("event %d (%d bytes) carries the unknown field", i, len(e))
		}
	}
	stored := li.storedValues(t)
	if len(stored) == 0 {
		t.Fatal("nothing stored under the issuer's prefix")
	}
	for k, v := range stored {
		if bytes.Contains(v, marker) || len(v) > 16<<10 {
			t.Errorf("Redis key %s (%d bytes) carries the unknown field", k, len(v))
		}
	}
}

// TestOversizedIssuanceIsRefusedAndNothingIsStored sends an issuance over
// the 64 KiB cap: RESOURCE_EXHAUSTED, the policy service is never asked and
// no Redis value names its task.
func TestOversizedIssuanceIsRefusedAndNothingIsStored(t *testing.T) {
	t.Parallel()
	ca := testca.New(t, "jitid.test")
	policyAddr, policy := startFakePolicy(t, ca, policyID)
	li := startLimitsIssuer(t, ca, policyAddr)
	c := issuerClient(t, li.addr, platformCreds(t, ca))

	req := issueRequest("task-oversized")
	req.Task.Purpose = string(bytes.Repeat([]byte("x"), 65<<10))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.IssueCredential(ctx, req); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized IssueCredential() = %v, want ResourceExhausted", err)
	}
	if n := policy.calls.Load(); n != 0 {
		t.Errorf("policy asked %d times for an oversized request", n)
	}
	for k, v := range li.storedValues(t) {
		if bytes.Contains(v, []byte("task-oversized")) {
			t.Errorf("Redis key %s holds the refused request's task", k)
		}
	}
}

// TestLookAlikeIdIsRefused sends issuances whose agent id holds U+202E
// (RIGHT-TO-LEFT OVERRIDE) and whose task id holds U+200B (ZERO WIDTH
// SPACE): INVALID_ARGUMENT naming the field, and policy is never asked.
func TestLookAlikeIdIsRefused(t *testing.T) {
	t.Parallel()
	ca := testca.New(t, "jitid.test")
	policyAddr, policy := startFakePolicy(t, ca, policyID)
	li := startLimitsIssuer(t, ca, policyAddr)
	c := issuerClient(t, li.addr, platformCreds(t, ca))

	for _, tc := range []struct {
		name, field string
		edit        func(r *issuerv1.IssueCredentialRequest)
	}{
		{"U+202E in agent id", "agent.id", func(r *issuerv1.IssueCredentialRequest) { r.Agent.Id = "agent:\u202ea3f7-hcraeser" }},
		{"U+200B in task id", "task.id", func(r *issuerv1.IssueCredentialRequest) { r.Task.Id = "task-\u200b1" }},
	} {
		req := issueRequest("task-1")
		tc.edit(req)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.IssueCredential(ctx, req)
		cancel()
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: IssueCredential() = %v, want InvalidArgument", tc.name, err)
			continue
		}
		var named bool
		for _, d := range status.Convert(err).Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range br.GetFieldViolations() {
					named = named || v.GetField() == tc.field
				}
			}
		}
		if !named {
			t.Errorf("%s: %v does not name %s", tc.name, err, tc.field)
		}
	}
	if n := policy.calls.Load(); n != 0 {
		t.Errorf("policy asked %d times for refused ids", n)
	}
}
