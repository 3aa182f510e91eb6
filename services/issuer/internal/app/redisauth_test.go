package app_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jitid/jitid/services/issuer/internal/app"
	"github.com/jitid/jitid/services/issuer/internal/config"
	"github.com/jitid/jitid/testkit/localinfra"
	"github.com/jitid/jitid/testkit/testserver"
)

const (
	defaultPassword = "default-user-pw-7f3a"
	aclPassword     = "acl-user-pw-91c2"
)

// startAuthRedis starts a redis-server that requires a password for the
// default user and has an ACL user jitid.
func startAuthRedis(t *testing.T) string {
	t.Helper()
	r, err := localinfra.StartRedis(context.Background(), localinfra.RedisOptions{
		Dir:  t.TempDir(),
		Args: []string{"--requirepass", defaultPassword, "--user", "jitid", "on", ">" + aclPassword, "~*", "&*", "+@all"},
	})
	if err != nil {
		if errors.Is(err, localinfra.ErrRedisNotInstalled) && !testserver.InCI() {
			t.Skipf("skipping: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r.Addr()
}

func secretFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "redis-password")
	if err := os.WriteFile(p, []byte(content+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func ping(t *testing.T, cfg config.Config) error {
	t.Helper()
	o, err := app.RedisOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewUniversalClient(&o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

func TestRedisClientLogsInWithThePasswordFile(t *testing.T) {
	addr := startAuthRedis(t)
	if err := ping(t, config.Config{RedisAddrs: []string{addr}, RedisPasswordFile: secretFile(t, defaultPassword, 0o600)}); err != nil {
		t.Fatalf("ping with the password file: %v", err)
	}
	if err := ping(t, config.Config{RedisAddrs: []string{addr}, RedisUsername: "jitid", RedisPasswordFile: secretFile(t, aclPassword, 0o600)}); err != nil {
		t.Fatalf("ping as ACL user jitid with its password file: %v", err)
	}
}

func TestRedisClientWithoutThePasswordIsRefusedByTheServer(t *testing.T) {
	addr := startAuthRedis(t)
	err := ping(t, config.Config{RedisAddrs: []string{addr}})
	if err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("ping without a password: %v, want NOAUTH", err)
	}
	err = ping(t, config.Config{RedisAddrs: []string{addr}, RedisUsername: "jitid", RedisPasswordFile: secretFile(t, "wrong-pw", 0o600)})
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("ping with a wrong password: %v, want WRONGPASS", err)
	}
}

// A password file others can read is a password already shared: the
// issuer refuses to start on it rather than use it.
func TestRedisPasswordFileReadableByOthersStopsTheIssuer(t *testing.T) {
	cfg := config.Config{RedisAddrs: []string{"127.0.0.1:1"}, RedisPasswordFile: secretFile(t, defaultPassword, 0o644)}
	_, err := app.RedisOptions(cfg)
	if err == nil {
		t.Fatal("RedisOptions accepted a world-readable password file")
	}
	if strings.Contains(err.Error(), defaultPassword) {
		t.Fatalf("error quotes the password: %v", err)
	}
	if !strings.Contains(err.Error(), "redis-password-file") {
		t.Fatalf("error %q does not name the flag", err)
	}
}
