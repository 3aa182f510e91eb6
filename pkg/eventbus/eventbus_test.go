package eventbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/eventbus"
	"github.com/jitid/jitid/pkg/testserver"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
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
		IssuedAt:     timestamppb.New(at),
		ExpiresAt:    timestamppb.New(at.Add(10 * time.Minute)),
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
	// protojson output is deliberately unstable in whitespace, so compare
	// the decoded forms and the envelope fields, not bytes.
	gotEv, err := eventbus.Decode(got)
	if err != nil {
		t.Fatal(err)
	}
	wantEv, err := eventbus.Decode(want)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantEv, gotEv, protocmp.Transform()); diff != "" {
		t.Errorf("decoded event differs from golden (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(sampleEvent(), gotEv, protocmp.Transform()); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
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
