package config_test

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jitid/jitid/pkg/envflag"
	"github.com/jitid/jitid/pkg/servicecmd"
	"github.com/jitid/jitid/services/audit/internal/config"
)

func TestLoad(t *testing.T) {
	t.Parallel()
	defaults := config.Config{
		Common:   servicecmd.Common{GRPCAddr: "127.0.0.1:50053", AdminAddr: "127.0.0.1:9093", LogLevel: slog.LevelInfo, LogFormat: "json"},
		AuditDSN: "sqlite://jitid-audit.db", NATSURL: "nats://127.0.0.1:4222", Stream: "JITID_EVENTS", SubjectPrefix: "jitid.events",
		Consumer: "audit", AckWait: 10 * time.Second,
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    func(c config.Config) config.Config
		wantErr error
	}{
		{name: "defaults", want: func(c config.Config) config.Config { return c }},
		{
			name: "env",
			env:  map[string]string{"JITID_AUDIT_DSN": "postgres://db/audit", "JITID_CONSUMER": "audit2", "JITID_LOG_LEVEL": "debug", "JITID_ADMIN_ADDR": ""},
			want: func(c config.Config) config.Config {
				c.AuditDSN, c.Consumer, c.LogLevel, c.AdminAddr = "postgres://db/audit", "audit2", slog.LevelDebug, ""
				return c
			},
		},
		{
			name: "flag wins over env",
			args: []string{"-grpc-addr", "127.0.0.1:0", "-admin-addr", ""},
			env:  map[string]string{"JITID_GRPC_ADDR": "127.0.0.1:1"},
			want: func(c config.Config) config.Config {
				c.GRPCAddr, c.AdminAddr = "127.0.0.1:0", ""
				return c
			},
		},
		{name: "bad dsn", args: []string{"-audit-dsn", "mysql://x"}, wantErr: config.ErrInvalid},
		{name: "bad level", args: []string{"-log-level", "loud"}, wantErr: config.ErrInvalid},
		{name: "bad format", args: []string{"-log-format", "xml"}, wantErr: config.ErrInvalid},
		{name: "consumer with dot", args: []string{"-consumer", "a.b"}, wantErr: config.ErrInvalid},
		{name: "empty stream", args: []string{"-stream", ""}, wantErr: config.ErrInvalid},
		{name: "wildcard prefix", args: []string{"-subject-prefix", "jitid.>"}, wantErr: config.ErrInvalid},
		{
			name: "pprof",
			env:  map[string]string{"JITID_PPROF": "true"},
			want: func(c config.Config) config.Config {
				c.Pprof = true
				return c
			},
		},
		{name: "pprof without admin server", args: []string{"-pprof", "-admin-addr", ""}, wantErr: config.ErrInvalid},
		{name: "ack wait too short", args: []string{"-ack-wait", "100ms"}, wantErr: config.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := config.Load(tt.args, envflag.MapLookup(tt.env), io.Discard)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Load() error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			if diff := cmp.Diff(tt.want(defaults), got); diff != "" {
				t.Errorf("Load() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadReportsEveryBadSettingAtOnce(t *testing.T) {
	t.Parallel()
	_, err := config.Load([]string{
		"-grpc-addr", "nowhere", "-log-level", "loud", "-audit-dsn", "mysql://x", "-consumer", "a.b", "-ack-wait", "1ms",
	}, envflag.MapLookup(nil), io.Discard)
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Load() = %v, want ErrInvalid", err)
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Load() = %v, want one error per bad setting", err)
	}
	if got := len(joined.Unwrap()); got != 5 {
		t.Errorf("Load() reported %d problems, want 5 (one per bad flag):\n%v", got, err)
	}
}
