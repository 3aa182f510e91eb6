package testserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jitid/jitid/testkit/testserver"
)

func TestNATSURLServesJetStream(t *testing.T) {
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ns := testserver.Namespace(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: ns, Subjects: []string{ns + ".>"}}); err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, ns+".x", []byte("hello"))
	if err != nil || ack.Sequence != 1 {
		t.Fatalf("Publish() = %v, %v; want sequence 1", ack, err)
	}
}

func TestClosedAddrRefusesConnections(t *testing.T) {
	t.Parallel()
	nc, err := nats.Connect("nats://"+testserver.ClosedAddr(t), nats.Timeout(2*time.Second))
	if err == nil {
		nc.Close()
		t.Fatal("connected to ClosedAddr")
	}
}
