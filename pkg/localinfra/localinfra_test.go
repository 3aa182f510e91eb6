package localinfra_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/jitid/jitid/pkg/localinfra"
	"github.com/jitid/jitid/pkg/testserver"
)

func TestRedisRestartKeepsAOF(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := localinfra.StartRedis(ctx, localinfra.RedisOptions{Dir: t.TempDir(), AppendOnly: true})
	if err != nil {
		if !testserver.InCI() {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// everysec fsync: give the AOF its second before the kill.
	if err := c.Do(ctx, "BGREWRITEAOF").Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, _ := c.Info(ctx, "persistence").Result()
		if strings.Contains(info, "aof_rewrite_in_progress:0\r\n") && strings.Contains(info, "aof_rewrite_scheduled:0\r\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("AOF rewrite did not finish")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := r.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("after restart GET k = %q, %v; want v", got, err)
	}
}

func TestNATSJetStreamKeepsDataAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	port, err := localinfra.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s, err := localinfra.StartNATS(localinfra.NATSOptions{Port: port, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
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
	s2, err := localinfra.StartNATS(localinfra.NATSOptions{Port: port, StoreDir: dir})
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
