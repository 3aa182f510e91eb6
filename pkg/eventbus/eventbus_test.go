package eventbus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/eventbus"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/testkit/testserver"
)

var update = flag.Bool("update", false, "rewrite golden files")

func sampleEvent() *eventsv1.LifecycleEvent {
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	return &eventsv1.LifecycleEvent{
		Id:           "0193a1b2-0000-7000-8000-000000000001",
		Type:         eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED,
		Time:         timestamppb.New(at),
		CredentialId: "0193a1b2-0000-7000-8000-0000000000aa",
		Agent:        &identityv1.Agent{Id: "agent:research-1", Class: identityv1.AgentClass_AGENT_CLASS_EPHEMERAL, Platform: "demo"},
		Delegator:    &identityv1.Delegator{Id: "user:alice"},
		Task:         &identityv1.Task{Id: "task-42", Purpose: "summarise Q3 tickets", Sensitivity: identityv1.Sensitivity_SENSITIVITY_MEDIUM},
		Scopes:       []string{"tickets:read"},
		Audience:     "jitid",
		IssueTime:    timestamppb.New(at),
		ExpireTime:   timestamppb.New(at.Add(10 * time.Minute)),
		Issuer:       "https://jitid.local",
	}
}

func TestEncodeGolden(t *testing.T) {
	t.Parallel()
	got, err := eventbus.Encode("", sampleEvent())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "issued.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	// The golden file was written by the protojson-based encoder; the
	// output is the same to the byte.
	if !bytes.Equal(got, want) {
		t.Errorf("Encode() differs from golden\n got: %s\nwant: %s", got, want)
	}
	gotEv, err := eventbus.Decode(got)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sampleEvent(), gotEv, protocmp.Transform()); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

// protojsonEncode is the envelope as the libraries write it: protojson
// data in an encoding/json envelope, as a SIEM or another producer might.
func protojsonEncode(t testing.TB, source string, ev *eventsv1.LifecycleEvent, opts protojson.MarshalOptions) []byte {
	t.Helper()
	data, err := opts.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	subject := ev.GetCredentialId()
	if subject == "" {
		subject = ev.GetTask().GetId()
	}
	b, err := json.Marshal(eventbus.Envelope{
		SpecVersion: "1.0", ID: ev.GetId(), Source: source, Type: eventbus.CloudEventType(ev.GetType()),
		Time:    ev.GetTime().AsTime().UTC().Format(time.RFC3339Nano),
		Subject: subject, DataContentType: "application/json", Data: data,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func roundTripEvents() map[string]*eventsv1.LifecycleEvent {
	denied := issuedWithDecision()
	denied.Type = eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED
	denied.CredentialId, denied.IssueTime, denied.ExpireTime = "", nil, nil
	denied.Decision.Allow, denied.Decision.GrantedScopes = false, nil
	denied.RequestedScopes = []string{"tickets:read", "payments:send"}
	denied.RequestedTtl = durationpb.New(90 * time.Second)
	completed := &eventsv1.LifecycleEvent{
		Id: "0193a1b2-0000-7000-8000-000000000002", Type: eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED,
		Time: timestamppb.New(time.Date(2026, 11, 29, 10, 5, 0, 123456789, time.UTC)),
		Task: &identityv1.Task{Id: "task-42"}, Reason: "done: \"ok\" <é>\n",
		CredentialIds: []string{"c1", "c2", "c3"},
	}
	return map[string]*eventsv1.LifecycleEvent{
		"issued": sampleEvent(), "issued with decision": issuedWithDecision(),
		"denied": denied, "task completed": completed,
	}
}

func TestDecodeReadsEncodeAndProtojson(t *testing.T) {
	t.Parallel()
	for name, ev := range roundTripEvents() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := eventbus.Encode("urn:test", ev)
			if err != nil {
				t.Fatal(err)
			}
			typeName := []byte(`"type":"` + ev.GetType().String() + `"`)
			inputs := map[string][]byte{
				"Encode":                 b,
				"protojson":              protojsonEncode(t, "urn:test", ev, protojson.MarshalOptions{}),
				"protojson, proto names": protojsonEncode(t, "urn:test", ev, protojson.MarshalOptions{UseProtoNames: true}),
				"protojson, multiline":   protojsonEncode(t, "urn:test", ev, protojson.MarshalOptions{Multiline: true}),
				"with an extension":      []byte(`{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",` + string(b[1:])),
				"with a newer field":     bytes.Replace(b, typeName, append(append([]byte(nil), typeName...), `,"newer":{"x":[1]}`...), 1),
				"with a type number":     bytes.Replace(b, typeName, []byte(`"type":`+strconv.Itoa(int(ev.GetType()))), 1),
			}
			for in, data := range inputs {
				got, err := eventbus.Decode(data)
				if err != nil {
					t.Fatalf("Decode(%s): %v\n%s", in, err, data)
				}
				if diff := cmp.Diff(ev, got, protocmp.Transform()); diff != "" {
					t.Errorf("Decode(%s) (-want +got):\n%s", in, diff)
				}
			}
		})
	}
}

func TestAppendEncode(t *testing.T) {
	t.Parallel()
	want, err := eventbus.Encode("", issuedWithDecision())
	if err != nil {
		t.Fatal(err)
	}
	got, err := eventbus.AppendEncode([]byte("x"), "", issuedWithDecision())
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "x"+string(want) {
		t.Errorf("AppendEncode() = %s, want x%s", got, want)
	}
	bad := sampleEvent()
	bad.Task.Purpose = "\xff"
	if got, err := eventbus.AppendEncode([]byte("x"), "", bad); err == nil || string(got) != "x" {
		t.Errorf("AppendEncode(invalid UTF-8) = %q, %v; want dst and an error", got, err)
	}
}

func TestEncodeRefuses(t *testing.T) {
	t.Parallel()
	mutate := func(f func(*eventsv1.LifecycleEvent)) *eventsv1.LifecycleEvent {
		ev := sampleEvent()
		f(ev)
		return ev
	}
	tests := []struct {
		name      string
		source    string
		ev        *eventsv1.LifecycleEvent
		malformed bool
	}{
		{"no id", "", mutate(func(ev *eventsv1.LifecycleEvent) { ev.Id = "" }), true},
		{"no type", "", mutate(func(ev *eventsv1.LifecycleEvent) { ev.Type = 0 }), true},
		{"invalid UTF-8", "", mutate(func(ev *eventsv1.LifecycleEvent) { ev.Agent.Id = "a\xc3" }), false},
		{"invalid UTF-8 source", "urn:\xff", sampleEvent(), false},
		{"time out of range", "", mutate(func(ev *eventsv1.LifecycleEvent) { ev.ExpireTime.Seconds = 1 << 40 }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := eventbus.Encode(tt.source, tt.ev)
			if err == nil || b != nil {
				t.Fatalf("Encode() = %s, %v; want an error", b, err)
			}
			if got := errors.Is(err, eventbus.ErrMalformed); got != tt.malformed {
				t.Errorf("Encode() error %v: errors.Is(ErrMalformed) = %v, want %v", err, got, tt.malformed)
			}
		})
	}
}

func TestEncodeEnvelopeFields(t *testing.T) {
	t.Parallel()
	b, err := eventbus.Encode("urn:test", sampleEvent())
	if err != nil {
		t.Fatal(err)
	}
	var env eventbus.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	want := eventbus.Envelope{
		SpecVersion: "1.0", ID: sampleEvent().GetId(), Source: "urn:test",
		Type: "dev.jitid.credential.issued.v1", Time: "2026-11-29T10:00:00Z",
		Subject: sampleEvent().GetCredentialId(), DataContentType: "application/json",
	}
	env.Data = nil
	if diff := cmp.Diff(want, env); diff != "" {
		t.Errorf("envelope (-want +got):\n%s", diff)
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	good, err := eventbus.Encode("", sampleEvent())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"not json", []byte("{")},
		{"wrong specversion", []byte(`{"specversion":"0.3","id":"x","type":"dev.jitid.credential.issued.v1","data":{}}`)},
		{"id mismatch", []byte(`{"specversion":"1.0","id":"other","type":"dev.jitid.credential.issued.v1","data":{"id":"x","type":"EVENT_TYPE_CREDENTIAL_ISSUED"}}`)},
		{"type mismatch", []byte(`{"specversion":"1.0","id":"x","type":"dev.jitid.credential.revoked.v1","data":{"id":"x","type":"EVENT_TYPE_CREDENTIAL_ISSUED"}}`)},
		{"bad data", []byte(`{"specversion":"1.0","id":"x","type":"dev.jitid.credential.issued.v1","data":{"id":7}}`)},
		{"no data", []byte(`{"specversion":"1.0","id":"x","type":"dev.jitid.credential.issued.v1"}`)},
		{"null data", []byte(`{"specversion":"1.0","id":"x","type":"dev.jitid.credential.issued.v1","data":null}`)},
		{"no id", []byte(`{"specversion":"1.0","type":"dev.jitid.credential.issued.v1","data":{"type":"EVENT_TYPE_CREDENTIAL_ISSUED"}}`)},
		{"trailing data", append(append([]byte(nil), good...), "{}"...)},
		{"truncated", good[:len(good)-1]},
		{"invalid UTF-8 in data", bytes.Replace(good, []byte("summarise"), []byte("summ\xffrise"), 1)},
		{"field twice", bytes.Replace(good, []byte(`"audience":"jitid"`), []byte(`"audience":"jitid","audience":"x"`), 1)},
		{"bad timestamp", bytes.Replace(good, []byte(`"issueTime":"2026-11-29T10:00:00Z"`), []byte(`"issueTime":"2026-13-29T10:00:00Z"`), 1)},
		{"bad enum", bytes.Replace(good, []byte(`"class":"AGENT_CLASS_EPHEMERAL"`), []byte(`"class":true`), 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := eventbus.Decode(tt.in); !errors.Is(err, eventbus.ErrMalformed) {
				t.Errorf("Decode() error = %v, want ErrMalformed", err)
			}
		})
	}
	if _, err := eventbus.Decode(good); err != nil {
		t.Errorf("Decode(good) = %v", err)
	}
}

func TestSubjects(t *testing.T) {
	t.Parallel()
	var c eventbus.Config
	tests := []struct {
		typ  eventsv1.EventType
		want string
	}{
		{eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, "jitid.events.credential.issued"},
		{eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED, "jitid.events.credential.denied"},
		{eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXCHANGED, "jitid.events.credential.exchanged"},
		{eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED, "jitid.events.credential.revoked"},
		{eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, "jitid.events.credential.expired"},
		{eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED, "jitid.events.task.completed"},
		{eventsv1.EventType_EVENT_TYPE_CREDENTIAL_USE_REFUSED, "jitid.events.credential.use_refused"},
	}
	if len(tests) != len(eventsv1.EventType_name)-1 {
		t.Fatalf("%d event types tested, %d defined: add the new ones", len(tests), len(eventsv1.EventType_name)-1)
	}
	for _, tt := range tests {
		if got := c.Subject(tt.typ); got != tt.want {
			t.Errorf("Subject(%s) = %q, want %q", tt.typ, got, tt.want)
		}
		back, ok := eventbus.EventTypeFromCloudEventType(eventbus.CloudEventType(tt.typ))
		if !ok || back != tt.typ {
			t.Errorf("EventTypeFromCloudEventType(CloudEventType(%s)) = %s, %v", tt.typ, back, ok)
		}
	}
	if got := c.Wildcard(); got != "jitid.events.>" {
		t.Errorf("Wildcard() = %q", got)
	}
}

func TestEnsureStreamIdempotent(t *testing.T) {
	t.Parallel()
	nc, err := nats.Connect(testserver.NATSURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ns := testserver.Namespace(t)
	cfg := eventbus.Config{Stream: ns, SubjectPrefix: ns + ".events"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), ns) })
	for range 2 {
		s, err := eventbus.EnsureStream(ctx, js, cfg)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Storage != jetstream.FileStorage || info.Config.Duplicates != eventbus.DefaultDuplicateWindow {
			t.Errorf("stream config = %+v", info.Config)
		}
	}
	// Nats-Msg-Id deduplicates a retried publish.
	b, err := eventbus.Encode("", sampleEvent())
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		msg := nats.NewMsg(cfg.Subject(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED))
		msg.Data = b
		msg.Header.Set(jetstream.MsgIDHeader, sampleEvent().GetId())
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	s, err := js.Stream(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages after a duplicate publish, want 1", info.State.Msgs)
	}
}
