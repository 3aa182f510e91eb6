package envflag_test

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jitid/jitid/pkg/envflag"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantAddr  string
		wantTTL   time.Duration
		wantError bool
	}{
		{name: "defaults", wantAddr: "127.0.0.1:6379", wantTTL: time.Hour},
		{name: "env fills", env: map[string]string{"JITID_REDIS_ADDR": "redis:6379", "JITID_MAX_TTL": "5m"}, wantAddr: "redis:6379", wantTTL: 5 * time.Minute},
		{name: "flag wins over env", args: []string{"-redis-addr", "flag:1"}, env: map[string]string{"JITID_REDIS_ADDR": "env:1"}, wantAddr: "flag:1", wantTTL: time.Hour},
		{name: "empty variable empties the flag", env: map[string]string{"JITID_REDIS_ADDR": ""}, wantAddr: "", wantTTL: time.Hour},
		{name: "bad env value", env: map[string]string{"JITID_MAX_TTL": "soon"}, wantError: true},
		{name: "empty value of a duration is bad", env: map[string]string{"JITID_MAX_TTL": ""}, wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			addr := fs.String("redis-addr", "127.0.0.1:6379", "Redis address")
			ttl := fs.Duration("max-ttl", time.Hour, "max TTL")
			err := envflag.Parse(fs, tt.args, envflag.MapLookup(tt.env))
			if (err != nil) != tt.wantError {
				t.Fatalf("Parse() error = %v, want error %v", err, tt.wantError)
			}
			if tt.wantError {
				return
			}
			if *addr != tt.wantAddr || *ttl != tt.wantTTL {
				t.Errorf("got addr %q ttl %v, want %q %v", *addr, *ttl, tt.wantAddr, tt.wantTTL)
			}
		})
	}
}

func TestParseReportsEveryBadVariable(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.Duration("max-ttl", time.Hour, "")
	fs.Int("shards", 16, "")
	err := envflag.Parse(fs, nil, envflag.MapLookup(map[string]string{"JITID_MAX_TTL": "soon", "JITID_SHARDS": "many"}))
	if err == nil {
		t.Fatal("Parse() = nil, want both variables reported")
	}
	for _, name := range []string{"JITID_MAX_TTL", "JITID_SHARDS"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("Parse() = %v, does not name %s", err, name)
		}
	}
}

func TestCommandLineOnlyFlagIgnoresEnvironment(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	version := fs.Bool("version", false, "")
	if err := envflag.Parse(fs, nil, envflag.MapLookup(map[string]string{"JITID_VERSION": "true"}), "version"); err != nil {
		t.Fatal(err)
	}
	if *version {
		t.Error("JITID_VERSION set -version; it is command-line only")
	}
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	if got := envflag.EnvName("policy-timeout"); got != "JITID_POLICY_TIMEOUT" {
		t.Errorf("EnvName = %q", got)
	}
}
