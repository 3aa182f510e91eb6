package redisstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/eventbus"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/redisstore"
	"github.com/jitid/jitid/services/issuer/redisscripts"
	"github.com/jitid/jitid/testkit"
	"github.com/jitid/jitid/testkit/testserver"
)

// env is one test's store over its own key namespace.
type env struct {
	rdb    *redis.Client
	store  *redisstore.Store
	prefix string
	events eventbus.Config
}

func newEnv(t testing.TB) *env {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testserver.RedisAddr(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	ns := testserver.Namespace(t)
	e := &env{rdb: rdb, prefix: ns, events: eventbus.Config{Stream: ns, SubjectPrefix: ns + ".events"}}
	e.store = e.newStore()
	return e
}

// newStore returns another Store over the same keys, as a second issuer
// replica would have.
func (e *env) newStore() *redisstore.Store {
	return redisstore.New(e.rdb, redisstore.Options{Prefix: e.prefix, Events: e.events})
}

func randID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func credential(taskID, agentID, delegatorID string, ttl time.Duration) *issuer.Credential {
	now := time.Now()
	return &issuer.Credential{
		ID:            randID("cred-"),
		Issuer:        "https://jitid.test",
		Audience:      "jitid",
		Agent:         &identityv1.Agent{Id: agentID, Class: identityv1.AgentClass_AGENT_CLASS_EPHEMERAL, Attributes: map[string]string{"model": "m1"}},
		Delegator:     &identityv1.Delegator{Id: delegatorID},
		Task:          &identityv1.Task{Id: taskID, Purpose: "test", Sensitivity: identityv1.Sensitivity_SENSITIVITY_LOW},
		Scopes:        []string{"tickets:read", "tickets:write"},
		IssuedAt:      now,
		ExpiresAt:     now.Add(ttl),
		Profile:       identityv1.Profile_PROFILE_MINIMAL,
		PolicyVersion: "v1",
		DecisionID:    "dec-1",
		Owner:         testOwner,
	}
}

// testOwner is the platform that issues the tests' credentials.
const testOwner = "spiffe://jitid.test/platform/a"

func event(typ eventsv1.EventType, c *issuer.Credential) *eventsv1.LifecycleEvent {
	return &eventsv1.LifecycleEvent{
		Id:           randID("ev-"),
		Type:         typ,
		Time:         timestamppb.Now(),
		CredentialId: c.ID,
		Agent:        c.Agent,
		Delegator:    c.Delegator,
		Task:         c.Task,
		Scopes:       c.Scopes,
		ExpireTime:   timestamppb.New(c.ExpiresAt),
	}
}

func revokedEvent(c *issuer.Credential) *eventsv1.LifecycleEvent {
	ev := event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED, c)
	ev.Reason = "test"
	return ev
}

func (e *env) issue(t testing.TB, c *issuer.Credential) {
	t.Helper()
	err := e.store.Issue(context.Background(), c,
		event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, c),
		event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, c))
	if err != nil {
		t.Fatalf("Issue(%s) = %v", c.ID, err)
	}
}

// outboxEvent is one decoded outbox entry.
type outboxEvent struct {
	subject string
	ev      *eventsv1.LifecycleEvent
	// field is the field that held the event: "data" (CloudEvents JSON) or
	// "pb" (protobuf binary, which the relay encodes).
	field string
}

// outbox returns every event in every shard's outbox.
func (e *env) outbox(t testing.TB) []outboxEvent {
	t.Helper()
	ctx := context.Background()
	var out []outboxEvent
	for _, key := range e.store.OutboxKeys() {
		msgs, err := e.rdb.XRange(ctx, key, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			subject, okSubject := m.Values[redisscripts.EntrySubject].(string)
			data, okData := m.Values[redisscripts.EntryData].(string)
			pb, okPB := m.Values[redisscripts.EntryPB].(string)
			if !okSubject || okData == okPB {
				t.Fatalf("outbox entry %s: fields %v, want a subject and one of data and pb", m.ID, slices.Collect(maps.Keys(m.Values)))
			}
			o := outboxEvent{subject: subject}
			if okData {
				o.field = "data"
				if o.ev, err = eventbus.Decode([]byte(data)); err != nil {
					t.Fatal(err)
				}
			} else {
				o.field = "pb"
				o.ev = &eventsv1.LifecycleEvent{}
				if err := proto.Unmarshal([]byte(pb), o.ev); err != nil {
					t.Fatal(err)
				}
			}
			if id := m.Values[redisscripts.EntryID]; id != o.ev.GetId() {
				t.Errorf("outbox entry id %v, event id %s", id, o.ev.GetId())
			}
			out = append(out, o)
		}
	}
	return out
}

// countEvents counts outbox events of a type per credential id.
func (e *env) countEvents(t testing.TB, typ eventsv1.EventType) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, o := range e.outbox(t) {
		if o.ev.GetType() == typ {
			n[o.ev.GetCredentialId()]++
		}
	}
	return n
}

// keys returns every key of the namespace.
func (e *env) keys(t testing.TB) []string {
	t.Helper()
	keys, err := e.rdb.Keys(context.Background(), e.prefix+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// shardKey returns the name of a key in the shard of taskID.
func (e *env) shardKey(taskID, rest string) string {
	return e.prefix + ":{" + strconv.Itoa(e.store.ShardOf(taskID)) + "}:" + rest
}

// waitUntil polls cond until it holds, and fails the test if it does not
// within d.
func waitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, what, d, 20*time.Millisecond, func() (bool, bool) { ok := cond(); return ok, ok })
}
