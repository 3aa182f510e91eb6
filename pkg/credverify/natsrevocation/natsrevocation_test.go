package natsrevocation_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/credverify/natsrevocation"
	"github.com/jitid/jitid/pkg/eventbus"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/testkit"
	"github.com/jitid/jitid/testkit/testserver"
)

func publish(t *testing.T, js jetstream.JetStream, cfg eventbus.Config, ev *eventsv1.LifecycleEvent) {
	t.Helper()
	b, err := eventbus.Encode("", ev)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(cfg.Subject(ev.GetType()))
	msg.Data = b
	msg.Header.Set(jetstream.MsgIDHeader, ev.GetId())
	if _, err := js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

func TestWatch(t *testing.T) {
	t.Parallel()
	nc, err := nats.Connect(testserver.NATSURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ns := testserver.Namespace(t)
	cfg := eventbus.Config{Stream: ns, SubjectPrefix: ns + ".events"}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if _, err := eventbus.EnsureStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), ns) })
	task := &identityv1.Task{Id: "task-1"}
	exp := timestamppb.New(time.Now().Add(time.Hour))
	// Revoked before the watcher starts: learnt from the replay.
	publish(t, js, cfg, &eventsv1.LifecycleEvent{Id: "e1", Type: eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED,
		Time: timestamppb.Now(), CredentialId: "before", Task: task, ExpireTime: exp})
	l, err := natsrevocation.Watch(ctx, js, natsrevocation.Options{Events: cfg})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("replay did not complete")
	}
	if !l.Revoked("before") {
		t.Error("credential revoked before the watcher started is not known")
	}
	// Revoked while watching: learnt live. Issued events are not revocations.
	publish(t, js, cfg, &eventsv1.LifecycleEvent{Id: "e2", Type: eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED,
		Time: timestamppb.Now(), CredentialId: "issued-only", Task: task})
	publish(t, js, cfg, &eventsv1.LifecycleEvent{Id: "e3", Type: eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED,
		Time: timestamppb.Now(), Task: task, CredentialIds: []string{"c1", "c2"}})
	testkit.Eventually(t, "c1 and c2 (a completed task's credentials) revoked", 5*time.Second, 10*time.Millisecond, func() (string, bool) {
		got := fmt.Sprintf("c1 %v, c2 %v", l.Revoked("c1"), l.Revoked("c2"))
		return got, l.Revoked("c1") && l.Revoked("c2")
	})
	if l.Revoked("issued-only") || l.Revoked("never-seen") {
		t.Error("a credential that was never revoked is reported revoked")
	}
}
