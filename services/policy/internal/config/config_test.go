package config_test

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jitid/jitid/services/policy/internal/config"
)

func TestLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    config.Config
		wantErr error
	}{
		{
			name: "defaults",
			want: config.Config{GRPCAddr: "127.0.0.1:50052", AdminAddr: "127.0.0.1:9092", AuthZENAddr: "127.0.0.1:8092", LogLevel: slog.LevelInfo, LogFormat: "json", ReloadInterval: 2 * time.Second},
		},
		{
			name: "env, flag wins",
			args: []string{"-grpc-addr", ":6000"},
			env:  map[string]string{"JITID_GRPC_ADDR": ":7000", "JITID_POLICY_FILE": "/etc/jitid/policies", "JITID_ADMIN_ADDR": "", "JITID_LOG_LEVEL": "debug", "JITID_AUTHZEN_ADDR": "0.0.0.0:8443"},
			want: config.Config{GRPCAddr: ":6000", AdminAddr: "127.0.0.1:9092", AuthZENAddr: "0.0.0.0:8443", PolicyFile: "/etc/jitid/policies", LogLevel: slog.LevelDebug, LogFormat: "json", ReloadInterval: 2 * time.Second},
		},
		{
			name: "pprof",
			env:  map[string]string{"JITID_PPROF": "true"},
			want: config.Config{GRPCAddr: "127.0.0.1:50052", AdminAddr: "127.0.0.1:9092", Pprof: true, AuthZENAddr: "127.0.0.1:8092", LogLevel: slog.LevelInfo, LogFormat: "json", ReloadInterval: 2 * time.Second},
		},
		{name: "pprof without admin server", args: []string{"-pprof", "-admin-addr", ""}, wantErr: config.ErrInvalid},
		{name: "bad level", args: []string{"-log-level", "loud"}, wantErr: config.ErrInvalid},
		{name: "bad format", args: []string{"-log-format", "xml"}, wantErr: config.ErrInvalid},
		{name: "bad addr", args: []string{"-grpc-addr", "nowhere"}, wantErr: config.ErrInvalid},
		{name: "bad authzen addr", args: []string{"-authzen-addr", "8092"}, wantErr: config.ErrInvalid},
		{name: "reload too often", args: []string{"-reload-interval", "1ms"}, wantErr: config.ErrInvalid},
		{name: "stray argument", args: []string{"extra"}, wantErr: config.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := config.Load(tt.args, func(k string) string { return tt.env[k] })
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Load error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Config (-want +got):\n%s", diff)
			}
		})
	}
}
