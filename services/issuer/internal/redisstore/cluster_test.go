package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/jitid/jitid/pkg/eventbus"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/redisstore"
	"github.com/jitid/jitid/services/issuer/internal/relay"
	"github.com/jitid/jitid/testkit"
	"github.com/jitid/jitid/testkit/localinfra"
	"github.com/jitid/jitid/testkit/testserver"
)

// startCluster starts a three-master Redis Cluster owned by the test and
// returns a client of it.
func startCluster(t *testing.T) *redis.ClusterClient {
	t.Helper()
	ctx := context.Background()
	const nodes = 3
	addrs := make([]string, nodes)
	for i := range nodes {
		dir := t.TempDir()
		r, err := localinfra.StartRedis(ctx, localinfra.RedisOptions{Dir: dir,
			Args: []string{"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf")}})
		if errors.Is(err, localinfra.ErrRedisNotInstalled) && !testserver.InCI() {
			t.Skipf("skipping: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Stop)
		addrs[i] = r.Addr()
	}
	clients := make([]*redis.Client, nodes)
	for i, a := range addrs {
		clients[i] = redis.NewClient(&redis.Options{Addr: a})
		t.Cleanup(func() { _ = clients[i].Close() })
		lo, hi := i*16384/nodes, (i+1)*16384/nodes-1
		if err := clients[i].Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range addrs[1:] {
		host, port, _ := strings.Cut(a, ":")
		if err := clients[0].ClusterMeet(ctx, host, port).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients {
		testkit.Eventually(t, "cluster_state:ok with 3 known nodes", 15*time.Second, 50*time.Millisecond, func() (string, bool) {
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil {
				return err.Error(), false
			}
			return info, strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3")
		})
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = cc.Close() })
	_ = testkit.Eventually(t, "cluster client reaching every shard", 10*time.Second, 50*time.Millisecond, func() (error, bool) {
		err := cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() })
		return err, err == nil
	})
	return cc
}

// TestRunsOnRedisCluster runs the whole lifecycle, and the relay, on a real
// three-node Redis Cluster: any key of a script outside its slot, or a
// multi-slot transaction, fails there with CROSSSLOT.
func TestRunsOnRedisCluster(t *testing.T) {
	t.Parallel()
	cc := startCluster(t)
	ctx := context.Background()
	ns := testserver.Namespace(t)
	events := eventbus.Config{Stream: ns, SubjectPrefix: ns + ".events"}
	s := redisstore.New(cc, redisstore.Options{Prefix: ns, Events: events})

	const n = 40
	var creds []*issuer.Credential
	for i := range n {
		c := credential(randID("task-"), fmt.Sprintf("agent-%d", i%2), "user-1", time.Minute)
		if err := s.Issue(ctx, c, event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, c), event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, c)); err != nil {
			t.Fatal(err)
		}
		creds = append(creds, c)
	}
	if _, err := s.Get(ctx, creds[0].ID, ""); err != nil {
		t.Fatalf("Get() = %v", err)
	}
	page, err := s.List(ctx, issuer.Selector{Kind: issuer.ByDelegator, ID: "user-1"}, 1000, "")
	if err != nil || len(page.Credentials) != n {
		t.Fatalf("List() = %d credentials, %v; want %d", len(page.Credentials), err, n)
	}
	revoked, err := s.Revoke(ctx, issuer.Selector{Kind: issuer.ByAgent, ID: "agent-0"}, revokedEvent)
	if err != nil || len(revoked) != n/2 {
		t.Fatalf("Revoke(agent-0) = %d ids, %v; want %d", len(revoked), err, n/2)
	}
	done, err := s.CompleteTask(ctx, creds[1].Task.GetId(), testOwner, false, revokedEvent,
		&eventsv1.LifecycleEvent{Id: randID("ev-"), Type: eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED})
	if err != nil || len(done) != 1 {
		t.Fatalf("CompleteTask() = %v, %v; want one id", done, err)
	}
	if err := s.AppendEvent(ctx, "task-denied", &eventsv1.LifecycleEvent{Id: randID("ev-"), Type: eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED}); err != nil {
		t.Fatal(err)
	}
	swept, err := s.SweepExpired(ctx, time.Now().Add(time.Hour), 0)
	if err != nil || swept != n/2-1 {
		t.Fatalf("SweepExpired() = %d, %v; want %d", swept, err, n/2-1)
	}
	// issued n, revoked n/2 + 1, completed 1, denied 1, expired n/2 - 1
	wantEvents := n + n/2 + 1 + 1 + 1 + n/2 - 1

	nc, err := nats.Connect(testserver.NATSURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	r := relay.New(cc, js, relay.Options{Streams: s.OutboxKeys(), Events: events, PollInterval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = r.Run(rctx) }()
	testkit.Eventually(t, "an empty outbox (every event relayed)", 20*time.Second, 50*time.Millisecond, func() (string, bool) {
		backlog, err := r.Backlog(ctx)
		return fmt.Sprintf("backlog %d, %v", backlog, err), err == nil && backlog == 0
	})
	stream, err := js.Stream(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(wantEvents) {
		t.Errorf("stream holds %d events, want %d", info.State.Msgs, wantEvents)
	}
	err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		keys, err := c.Keys(ctx, ns+":*").Result()
		for _, k := range keys {
			switch {
			case strings.HasSuffix(k, ":revoked"):
				// The revocation marks of agent-0, expiring.
				if ttl := c.PTTL(ctx, k).Val(); ttl <= 0 || ttl > redisstore.DefaultMarkRetention {
					return fmt.Errorf("revocation marks %s expire in %v, want within %v", k, ttl, redisstore.DefaultMarkRetention)
				}
			case !strings.HasSuffix(k, ":outbox") && !strings.Contains(k, ":done:") && !strings.Contains(k, ":owner:"):
				return fmt.Errorf("key %s left behind", k)
			}
		}
		return err
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Error(err)
	}
}
