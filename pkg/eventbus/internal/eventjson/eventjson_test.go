package eventjson_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/eventbus/internal/eventjson"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
)

func TestAppendEnvelopeRandomEvents(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		invalid bool
	}{{"valid", false}, {"some invalid", true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := gen{r: rand.New(rand.NewPCG(1, uint64(len(tt.name)))), invalid: tt.invalid}
			for range 500 {
				checkEncoding(t, g.string(), g.string(), g.event())
				if t.Failed() {
					return
				}
			}
		})
	}
}

func TestAppendEnvelopeEveryField(t *testing.T) {
	t.Parallel()
	checkEncoding(t, "urn:jitid:issuer", "dev.jitid.credential.issued.v1", fullEvent())
}

// fullEvent sets every field, nested ones too.
func fullEvent() *eventsv1.LifecycleEvent {
	ts := func(s int64, n int32) *timestamppb.Timestamp { return &timestamppb.Timestamp{Seconds: s, Nanos: n} }
	return &eventsv1.LifecycleEvent{
		Id: "0193a1b2-0000-7000-8000-000000000001", Type: eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED,
		Time: ts(1795860000, 123000000), CredentialId: "cred-1",
		Agent: &identityv1.Agent{
			Id: "agent:research-1", Class: identityv1.AgentClass_AGENT_CLASS_RECURRING, Platform: "langgraph",
			Attributes: map[string]string{"team": "risk", "région": "eu-west\n", "": "empty key"},
		},
		Delegator: &identityv1.Delegator{
			Id: "user:alice@example.com", Attributes: map[string]string{"b": "2", "a": "1"},
			Entitlements: []string{"tickets:*", "pay"}, TimeZone: "Europe/Paris", AuthenticateTime: ts(1795859000, 1),
		},
		Task: &identityv1.Task{
			Id: "task-42", Purpose: `summarise "Q3" <tickets> & reply\u2028`, Sensitivity: identityv1.Sensitivity_SENSITIVITY_CRITICAL,
			DeadlineTime: ts(1795863600, 999999999),
		},
		Scopes: []string{"tickets:read", "tickets:comment"}, Audience: "jitid",
		IssueTime: ts(1795860000, 0), ExpireTime: ts(1795860600, 1000),
		Decision: &identityv1.Decision{
			Allow: true, GrantedScopes: []string{"tickets:read"}, MaxTtl: &durationpb.Duration{Seconds: -1, Nanos: -500000000},
			Profile: identityv1.Profile_PROFILE_FULL, Obligations: []string{"human_approval"}, Reasons: []string{"ok"},
			Policies: []string{"p1", "p2"}, PolicyVersion: "sha256:4b1d", DecisionId: "d-1", MaxUses: -7,
			DelegatorUnproven: true,
		},
		Reason: "done\x00\x1f\x7f", Issuer: "https://jitid.local", ParentCredentialId: "cred-0",
		CredentialIds: []string{"cred-1", "cred-2"}, AgentChain: []string{"agent:parent"},
		RequestedScopes: []string{"tickets:read", "tickets:write"}, RequestedTtl: &durationpb.Duration{Nanos: 1500},
		Caller: "spiffe://acme.example/platform/support-bot", Owner: "spiffe://acme.example/platform/support-bot",
		AssertedBy: "spiffe://acme.example/platform/batch",
	}
}

func TestAppendEnvelopeEmptyMessages(t *testing.T) {
	t.Parallel()
	// A message that is set but empty is written as {}, a timestamp at
	// the epoch as one; only unset fields are left out.
	ev := &eventsv1.LifecycleEvent{
		Id: "e", Type: eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED,
		Agent: &identityv1.Agent{}, Delegator: &identityv1.Delegator{}, Task: &identityv1.Task{},
		Decision: &identityv1.Decision{}, Time: &timestamppb.Timestamp{}, RequestedTtl: &durationpb.Duration{},
	}
	checkEncoding(t, "s", "t", ev)
	checkEncoding(t, "s", "t", &eventsv1.LifecycleEvent{})
}

func TestAppendEnvelopeRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		source string
		ev     *eventsv1.LifecycleEvent
	}{
		{"invalid UTF-8 in id", "s", &eventsv1.LifecycleEvent{Id: "a\xffb"}},
		{"invalid UTF-8 in a map key", "s", &eventsv1.LifecycleEvent{Agent: &identityv1.Agent{Attributes: map[string]string{"\xc3": "v"}}}},
		{"invalid UTF-8 in a list", "s", &eventsv1.LifecycleEvent{Scopes: []string{"ok", "\xed\xa0\x80"}}},
		{"invalid UTF-8 in the source", "\xff", &eventsv1.LifecycleEvent{Id: "e"}},
		{"timestamp before year 1", "s", &eventsv1.LifecycleEvent{IssueTime: &timestamppb.Timestamp{Seconds: -62135596801}}},
		{"timestamp nanos", "s", &eventsv1.LifecycleEvent{Task: &identityv1.Task{DeadlineTime: &timestamppb.Timestamp{Nanos: 1e9}}}},
		{"duration signs", "s", &eventsv1.LifecycleEvent{RequestedTtl: &durationpb.Duration{Seconds: 1, Nanos: -1}}},
		{"duration range", "s", &eventsv1.LifecycleEvent{Decision: &identityv1.Decision{MaxTtl: &durationpb.Duration{Seconds: 315576000001}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkEncoding(t, tt.source, "t", tt.ev)
			if _, err := eventjson.AppendEnvelope(nil, tt.source, "t", tt.ev); err == nil {
				t.Error("AppendEnvelope() succeeded, want an error")
			}
		})
	}
}

// TestParseEnvelopeSubset shows where the fast path stops: inputs the
// general decoders accept (or refuse) that ParseEnvelope leaves to them,
// and spellings it takes.
func TestParseEnvelopeSubset(t *testing.T) {
	t.Parallel()
	const head = `{"specversion":"1.0","id":"e","source":"s","type":"t","time":"2026-11-29T10:00:00Z","datacontenttype":"application/json","data":`
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"plain", head + `{"id":"e","type":"EVENT_TYPE_CREDENTIAL_ISSUED"}}`, true},
		{"escapes", head + `{"id":"\u0065\"\\\/\b\f\n\r\t\u00e9\u2028\ud83d\ude00"}}`, true},
		{"enum number", head + `{"id":"e","type":99}}`, true},
		{"nine digits", head + `{"time":"0001-01-01T00:00:00.000000001Z","requestedTtl":"315576000000.999999999s"}}`, true},
		{"empty lists and maps", head + `{"scopes":[],"agent":{"attributes":{}}}}`, true},

		{"proto names", head + `{"id":"e","credential_id":"c","issue_time":"2026-11-29T10:00:00.5Z","decision":{"max_uses":3,"max_ttl":"-0.5s"}}}`, false},
		{"spaces", head + `{"id": "e"}}`, false},
		{"newline at the end", head + `{"id":"e"}}` + "\n", false},
		{"extension attribute", `{"traceparent":"00-x","specversion":"1.0","data":{}}`, false},
		{"null", head + `{"id":null}}`, false},
		{"null data", head + `null}`, false},
		{"no data", `{"specversion":"1.0","id":"e"}`, false},
		{"member twice", head + `{"id":"e","id":"e"}}`, false},
		{"map key twice", head + `{"agent":{"attributes":{"a":"1","a":"2"}}}}`, false},
		{"attribute twice", head + `{},"id":"x"}`, false},
		{"key in other case", `{"ID":"e","specversion":"1.0","data":{}}`, false},
		{"key with an escape", `{"\u0069d":"e","specversion":"1.0","data":{}}`, false},
		{"unknown field", head + `{"id":"e","future":1}}`, false},
		{"unknown enum name", head + `{"type":"EVENT_TYPE_FUTURE"}}`, false},
		{"enum of another type", head + `{"type":"AGENT_CLASS_EPHEMERAL"}}`, false},
		{"number as string", head + `{"decision":{"maxUses":"3"}}}`, false},
		{"number with exponent", head + `{"decision":{"maxUses":3e0}}}`, false},
		{"number with fraction", head + `{"decision":{"maxUses":3.0}}}`, false},
		{"minus zero", head + `{"decision":{"maxUses":-0}}}`, false},
		{"leading zero", head + `{"decision":{"maxUses":03}}}`, false},
		{"beyond int32", head + `{"decision":{"maxUses":2147483648}}}`, false},
		{"bool as string", head + `{"decision":{"allow":"true"}}}`, false},
		{"timestamp with offset", head + `{"time":"2026-11-29T11:00:00+01:00"}}`, false},
		{"timestamp lower case", head + `{"time":"2026-11-29t10:00:00z"}}`, false},
		{"timestamp ten digits", head + `{"time":"2026-11-29T10:00:00.0000000001Z"}}`, false},
		{"timestamp 31 April", head + `{"time":"2026-04-31T10:00:00Z"}}`, false},
		{"timestamp year 0", head + `{"time":"0000-12-31T10:00:00Z"}}`, false},
		{"duration with plus", head + `{"requestedTtl":"+1s"}}`, false},
		{"duration with dot only", head + `{"requestedTtl":"1.s"}}`, false},
		{"duration out of range", head + `{"requestedTtl":"315576000001s"}}`, false},
		{"lone surrogate", head + `{"id":"\ud800"}}`, false},
		{"invalid UTF-8", head + "{\"id\":\"\xff\"}}", false},
		{"control character", head + "{\"id\":\"a\tb\"}}", false},
		{"trailing data", head + `{}} {}`, false},
		{"trailing comma", head + `{"scopes":["a",]}}`, false},
		{"not an object", head + `[]}`, false},
		{"truncated", head + `{"id":"e"`, false},
		{"empty", ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, _, ok := eventjson.ParseEnvelope([]byte(tt.in)); ok != tt.ok {
				t.Errorf("ParseEnvelope(%s) ok = %v, want %v", tt.in, ok, tt.ok)
			}
			checkParse(t, []byte(tt.in))
		})
	}
}

// FuzzEncode writes events made of the fuzzer's strings and numbers and
// compares with protojson: same refusals, same data, read back the same.
func FuzzEncode(f *testing.F) {
	f.Add("0193a1b2-0000-7000-8000-000000000001", "summarise \"Q3\"\n", "team", "risk", int64(1795860000), int32(5e8), int64(-1), int32(-5e8), int32(3), uint64(1))
	f.Add("a\xffb", "\u2028<&>", "", "\x00", int64(-62135596801), int32(1e9), int64(5), int32(-5), int32(-1), uint64(2))
	f.Fuzz(func(t *testing.T, id, text, key, value string, secs int64, nanos int32, dsecs int64, dnanos int32, n int32, seed uint64) {
		g := gen{r: rand.New(rand.NewPCG(seed, 0)), invalid: true}
		ev := g.event()
		ev.Id = id
		ev.Reason = text
		ev.IssueTime = &timestamppb.Timestamp{Seconds: secs, Nanos: nanos}
		ev.RequestedTtl = &durationpb.Duration{Seconds: dsecs, Nanos: dnanos}
		ev.Type = eventsv1.EventType(n)
		ev.Scopes = append(ev.Scopes, text, key)
		if ev.Task == nil {
			ev.Task = &identityv1.Task{}
		}
		ev.Task.Purpose = text
		if ev.Agent == nil {
			ev.Agent = &identityv1.Agent{}
		}
		if ev.Agent.Attributes == nil {
			ev.Agent.Attributes = map[string]string{}
		}
		ev.Agent.Attributes[key] = value
		if ev.Decision == nil {
			ev.Decision = &identityv1.Decision{}
		}
		ev.Decision.MaxUses = n
		checkEncoding(t, text, key, ev)
	})
}

// FuzzParseEnvelope feeds ParseEnvelope anything: it must not panic, and
// what it reads the general decoders must read the same.
func FuzzParseEnvelope(f *testing.F) {
	g := gen{r: rand.New(rand.NewPCG(3, 4))}
	for range 20 {
		ev := g.event()
		if b, err := eventjson.AppendEnvelope(nil, "urn:jitid:issuer", "dev.jitid.credential.issued.v1", ev); err == nil {
			f.Add(b)
		}
		if b, err := protojsonEnvelope("urn:jitid:issuer", "dev.jitid.credential.issued.v1", ev, protojson.MarshalOptions{UseProtoNames: true}); err == nil {
			f.Add(b)
		}
	}
	b, err := spacedEnvelope("s", "t", fullEvent())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(strings.Replace(string(b), `"id"`, `"id":null,"x"`, 1)))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkParse(t, b)
	})
}
