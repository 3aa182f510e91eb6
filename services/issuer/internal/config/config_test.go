package config_test

import (
	"errors"
	"flag"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jitid/jitid/pkg/envflag"
	"github.com/jitid/jitid/pkg/servicecmd"
	"github.com/jitid/jitid/services/issuer/internal/config"
)

func env(m map[string]string) func(string) (string, bool) { return envflag.MapLookup(m) }

func TestDefaults(t *testing.T) {
	t.Parallel()
	got, err := config.Load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Config{
		Common:     servicecmd.Common{GRPCAddr: "127.0.0.1:50051", AdminAddr: "127.0.0.1:9091", LogLevel: slog.LevelInfo, LogFormat: "json"},
		RedisAddrs: []string{"127.0.0.1:6379"}, KeyPrefix: "jitid", Shards: 16,
		NATSURL: "nats://127.0.0.1:4222", Stream: "JITID_EVENTS", SubjectPrefix: "jitid.events",
		PolicyAddr: "127.0.0.1:50052", PolicyTimeout: 500 * time.Millisecond,
		Issuer: "https://jitid.local", DefaultAudience: "jitid", MaxTTL: time.Hour, SweepInterval: 500 * time.Millisecond,
		KeyPublishDelay: 5 * time.Minute, KeyPollInterval: 10 * time.Second, MaxChainDepth: 4,
		PublicURL: "https://jitid.local", PublicGRPCURL: "grpc://127.0.0.1:50051", RedisCheckInterval: time.Second,
		DelegatorQuota: config.DefaultDelegatorQuota,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestResourceServersAndQuota(t *testing.T) {
	t.Parallel()
	got, err := config.Load([]string{"-resource-servers", "tickets-api=spiffe://a/rs/1, tickets-api=spiffe://a/rs/2,mail=spiffe://a/rs/m"},
		env(map[string]string{"JITID_DELEGATOR_QUOTA": "0"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"tickets-api": {"spiffe://a/rs/1", "spiffe://a/rs/2"}, "mail": {"spiffe://a/rs/m"}}
	if diff := cmp.Diff(want, got.ResourceServers); diff != "" {
		t.Errorf("resource servers (-want +got):\n%s", diff)
	}
	if got.DelegatorQuota != 0 {
		t.Errorf("delegator quota %d, want 0 (off)", got.DelegatorQuota)
	}
}

func TestFlagsAndEnv(t *testing.T) {
	t.Parallel()
	got, err := config.Load(
		[]string{"-shards", "4"},
		env(map[string]string{
			"JITID_ADMIN_ADDR":     "",  // set empty: the admin server is off
			"JITID_SHARDS":         "8", // the flag wins
			"JITID_REDIS_ADDR":     "10.0.0.1:7000, 10.0.0.2:7000",
			"JITID_POLICY_TIMEOUT": "250ms",
			"JITID_LOG_LEVEL":      "debug",
			"JITID_KEY_DIR":        "/keys",
		}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got.Shards != 4 || got.AdminAddr != "" || got.PolicyTimeout != 250*time.Millisecond ||
		got.LogLevel != slog.LevelDebug || got.KeyDir != "/keys" ||
		!cmp.Equal(got.RedisAddrs, []string{"10.0.0.1:7000", "10.0.0.2:7000"}) {
		t.Errorf("Load() = %+v", got)
	}
}

func TestInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{name: "bad duration flag", args: []string{"-max-ttl", "forever"}},
		{name: "bad duration env", env: map[string]string{"JITID_POLICY_TIMEOUT": "soon"}},
		{name: "zero policy timeout", args: []string{"-policy-timeout", "0s"}},
		{name: "negative max ttl", args: []string{"-max-ttl", "-1h"}},
		{name: "zero sweep interval", args: []string{"-sweep-interval", "0"}},
		{name: "no shards", args: []string{"-shards", "0"}},
		{name: "shards not a number", env: map[string]string{"JITID_SHARDS": "many"}},
		{name: "empty redis addr", args: []string{"-redis-addr", " , "}},
		{name: "redis addr without port", args: []string{"-redis-addr", "redis"}},
		{name: "empty grpc addr", args: []string{"-grpc-addr", ""}},
		{name: "empty nats url", args: []string{"-nats-url", ""}},
		{name: "empty policy addr", args: []string{"-policy-addr", ""}},
		{name: "empty issuer", args: []string{"-issuer", ""}},
		{name: "empty audience", args: []string{"-default-audience", ""}},
		{name: "stream with a dot", args: []string{"-stream", "a.b"}},
		{name: "subject prefix with a wildcard", args: []string{"-subject-prefix", "jitid.>"}},
		{name: "key prefix with a brace", args: []string{"-key-prefix", "a{b"}},
		{name: "log level", args: []string{"-log-level", "loud"}},
		{name: "log format", args: []string{"-log-format", "xml"}},
		{name: "unknown flag", args: []string{"-frobnicate"}},
		{name: "stray argument", args: []string{"serve"}},
		{name: "publish delay shorter than the JWKS cache", args: []string{"-key-publish-delay", "30s"}},
		{name: "zero key poll interval", args: []string{"-key-poll-interval", "0"}},
		{name: "zero chain depth", args: []string{"-max-chain-depth", "0"}},
		{name: "relative public url", args: []string{"-public-url", "/jwks"}},
		{name: "public http addr without port", args: []string{"-public-http-addr", "localhost"}},
		{name: "pprof without admin server", args: []string{"-pprof", "-admin-addr", ""}},
		{name: "negative delegator quota", args: []string{"-delegator-quota", "-1"}},
		{name: "resource server without audience", args: []string{"-resource-servers", "=spiffe://a/rs"}},
		{name: "resource server without caller", args: []string{"-resource-servers", "tickets-api"}},
		{name: "negative delegator quota", args: []string{"-delegator-quota", "-1"}},
		{name: "resource server without audience", args: []string{"-resource-servers", "=spiffe://a/rs"}},
		{name: "resource server without caller", args: []string{"-resource-servers", "tickets-api"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := config.Load(tt.args, env(tt.env), io.Discard); err == nil {
				t.Error("Load() succeeded, want an error")
			}
		})
	}
}

func TestLoadReportsEveryBadSettingAtOnce(t *testing.T) {
	t.Parallel()
	_, err := config.Load([]string{
		"-grpc-addr", "nowhere", "-log-level", "loud", "-log-format", "xml",
		"-shards", "0", "-policy-timeout", "0s", "-public-url", "/jwks",
	}, env(nil), io.Discard)
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Load() = %v, want ErrInvalid", err)
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Load() = %v, want one error per bad setting", err)
	}
	if got := len(joined.Unwrap()); got != 6 {
		t.Errorf("Load() reported %d problems, want 6 (one per bad flag):\n%v", got, err)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	if _, err := config.Load([]string{"-version"}, env(nil), io.Discard); !errors.Is(err, servicecmd.ErrVersion) {
		t.Errorf("Load(-version) error = %v, want servicecmd.ErrVersion", err)
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	if _, err := config.Load([]string{"-help"}, env(nil), io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("Load(-help) error = %v, want flag.ErrHelp", err)
	}
}
