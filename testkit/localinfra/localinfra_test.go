package localinfra_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jitid/jitid/testkit"
	"github.com/jitid/jitid/testkit/localinfra"
	"github.com/jitid/jitid/testkit/testserver"
)

func startRedis(t *testing.T, o localinfra.RedisOptions) *localinfra.Redis {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := localinfra.StartRedis(ctx, o)
	if err != nil {
		if errors.Is(err, localinfra.ErrRedisNotInstalled) && !testserver.InCI() {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

func TestRedisRestartKeepsAOF(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := startRedis(t, localinfra.RedisOptions{Dir: t.TempDir(), AppendOnly: true})
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// everysec fsync: a rewrite puts the key on disk before the kill.
	if err := c.Do(ctx, "BGREWRITEAOF").Err(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "AOF rewrite finished", 10*time.Second, 20*time.Millisecond, func() (string, bool) {
		info, _ := c.Info(ctx, "persistence").Result()
		return info, strings.Contains(info, "aof_rewrite_in_progress:0\r\n") && strings.Contains(info, "aof_rewrite_scheduled:0\r\n")
	})
	if err := r.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("after restart GET k = %q, %v; want v", got, err)
	}
}

func TestRedisStartsOnAnotherPortWhenItsPortIsTaken(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	r := startRedis(t, localinfra.RedisOptions{Dir: t.TempDir(), Port: takenPort})
	if r.Addr() == "127.0.0.1:"+strconv.Itoa(takenPort) {
		t.Fatalf("Redis reports the taken port %d", takenPort)
	}
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING %s: %v", r.Addr(), err)
	}
}
