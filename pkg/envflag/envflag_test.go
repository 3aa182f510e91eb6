package envflag_test

import (
	"flag"
	"io"
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
		{name: "bad env value", env: map[string]string{"JITID_MAX_TTL": "soon"}, wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			addr := fs.String("redis-addr", "127.0.0.1:6379", "Redis address")
			ttl := fs.Duration("max-ttl", time.Hour, "max TTL")
			err := envflag.Parse(fs, tt.args, func(k string) string { return tt.env[k] })
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

func TestEnvName(t *testing.T) {
	t.Parallel()
	if got := envflag.EnvName("policy-timeout"); got != "JITID_POLICY_TIMEOUT" {
		t.Errorf("EnvName = %q", got)
	}
}
