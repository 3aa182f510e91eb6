package embeddednats_test

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/jitid/jitid/testkit/embeddednats"
)

func TestNATSJetStreamKeepsDataAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := embeddednats.Start(embeddednats.Options{Port: -1, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	port := embeddednats.Port(s)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := nc.JetStream()
	if _, err := js.AddStream(&nats.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: nats.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish("s.x", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	s.Shutdown()
	s.WaitForShutdown()
	s2, err := embeddednats.Start(embeddednats.Options{Port: port, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Shutdown()
	nc2, err := nats.Connect(s2.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js2, _ := nc2.JetStream()
	info, err := js2.StreamInfo("S")
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("after restart stream has %d messages, want 1", info.State.Msgs)
	}
}
