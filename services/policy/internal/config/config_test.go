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
			want: config.Config{Common: servicecmd.Common{GRPCAddr: "127.0.0.1:50052", AdminAddr: "127.0.0.1:9092", LogLevel: slog.LevelInfo, LogFormat: "json"}, AuthZENAddr: "127.0.0.1:8092", ReloadInterval: 2 * time.Second},
		},
		{
			name: "env, flag wins, an empty variable empties its flag",
			args: []string{"-grpc-addr", ":6000", "-insecure"},
			env:  map[string]string{"JITID_GRPC_ADDR": ":7000", "JITID_POLICY_FILE": "/etc/jitid/policies", "JITID_ADMIN_ADDR": "", "JITID_LOG_LEVEL": "debug", "JITID_AUTHZEN_ADDR": "127.0.0.2:8443"},
			want: config.Config{Common: servicecmd.Common{GRPCAddr: ":6000", Insecure: true, AdminAddr: "", LogLevel: slog.LevelDebug, LogFormat: "json"}, AuthZENAddr: "127.0.0.2:8443", PolicyFile: "/etc/jitid/policies", ReloadInterval: 2 * time.Second},
		},
		{
			name: "pprof",
			env:  map[string]string{"JITID_PPROF": "true"},
			want: config.Config{Common: servicecmd.Common{GRPCAddr: "127.0.0.1:50052", AdminAddr: "127.0.0.1:9092", Pprof: true, LogLevel: slog.LevelInfo, LogFormat: "json"}, AuthZENAddr: "127.0.0.1:8092", ReloadInterval: 2 * time.Second},
		},
		{name: "pprof without admin server", args: []string{"-pprof", "-admin-addr", ""}, wantErr: config.ErrInvalid},
		{name: "bad level", args: []string{"-log-level", "loud"}, wantErr: config.ErrInvalid},
		{name: "bad format", args: []string{"-log-format", "xml"}, wantErr: config.ErrInvalid},
		{name: "bad addr", args: []string{"-grpc-addr", "nowhere"}, wantErr: config.ErrInvalid},
		{name: "bad authzen addr", args: []string{"-authzen-addr", "8092"}, wantErr: config.ErrInvalid},
		{name: "plain authzen off loopback, even with -insecure", args: []string{"-insecure", "-authzen-addr", "0.0.0.0:8092"}, wantErr: config.ErrInvalid},
		{
			name: "evaluators",
			args: []string{"-evaluators", "spiffe://acme.example/jitid/issuer, spiffe://acme.example/jitid/issuer-2"},
			want: config.Config{Common: servicecmd.Common{GRPCAddr: "127.0.0.1:50052", AdminAddr: "127.0.0.1:9092", LogLevel: slog.LevelInfo, LogFormat: "json"}, AuthZENAddr: "127.0.0.1:8092", ReloadInterval: 2 * time.Second,
				Evaluators: []string{"spiffe://acme.example/jitid/issuer", "spiffe://acme.example/jitid/issuer-2"}},
		},
		{name: "reload too often", args: []string{"-reload-interval", "1ms"}, wantErr: config.ErrInvalid},
		{name: "stray argument", args: []string{"extra"}, wantErr: config.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := config.Load(tt.args, envflag.MapLookup(tt.env), io.Discard)
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

func TestLoadReportsEveryBadSettingAtOnce(t *testing.T) {
	t.Parallel()
	_, err := config.Load([]string{
		"-grpc-addr", "nowhere", "-admin-addr", "9092", "-log-level", "loud", "-log-format", "xml",
		"-authzen-addr", "8092", "-reload-interval", "1ms",
	}, envflag.MapLookup(nil), io.Discard)
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
