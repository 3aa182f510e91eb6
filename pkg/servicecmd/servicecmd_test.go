package servicecmd_test

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/jitid/jitid/pkg/envflag"
	"github.com/jitid/jitid/pkg/mtls"
	"github.com/jitid/jitid/pkg/servicecmd"
)

func parse(t *testing.T, args []string, env map[string]string) (servicecmd.Common, *servicecmd.Flags, error) {
	t.Helper()
	var c servicecmd.Common
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := servicecmd.AddFlags(fs, &c, "127.0.0.1:50051", "127.0.0.1:9091")
	err := f.Parse(args, envflag.MapLookup(env))
	return c, f, err
}

func TestEveryBadCommonFlagIsReported(t *testing.T) {
	t.Parallel()
	_, f, err := parse(t, []string{"-grpc-addr", "nowhere", "-admin-addr", "", "-pprof", "-log-level", "loud", "-log-format", "xml"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	errs := f.Errors()
	if len(errs) != 4 {
		t.Fatalf("Errors() = %v, want 4 (grpc-addr, pprof, log-level, log-format)", errs)
	}
	for _, e := range errs {
		if !errors.Is(e, servicecmd.ErrInvalid) {
			t.Errorf("%v does not wrap ErrInvalid", e)
		}
	}
}

func TestEmptyAdminAddrVariableTurnsTheAdminServerOff(t *testing.T) {
	t.Parallel()
	c, f, err := parse(t, nil, map[string]string{"JITID_ADMIN_ADDR": ""})
	if err != nil || len(f.Errors()) != 0 {
		t.Fatalf("Parse() = %v, %v", err, f.Errors())
	}
	if c.AdminAddr != "" {
		t.Errorf("AdminAddr = %q, want empty", c.AdminAddr)
	}
}

func TestVersionIsCommandLineOnly(t *testing.T) {
	t.Parallel()
	if _, _, err := parse(t, []string{"-version"}, nil); !errors.Is(err, servicecmd.ErrVersion) {
		t.Errorf("-version: Parse() = %v, want ErrVersion", err)
	}
	if _, _, err := parse(t, nil, map[string]string{"JITID_VERSION": "true"}); err != nil {
		t.Errorf("JITID_VERSION: Parse() = %v, want nil (the variable is ignored)", err)
	}
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		want       int
		wantStdout string
		wantStderr string
	}{
		{name: "nil", want: 0},
		{name: "help", err: flag.ErrHelp, want: 0},
		{name: "version", err: servicecmd.ErrVersion, want: 0, wantStdout: "issuer "},
		{name: "failure", err: errors.New("redis: boom"), want: 1, wantStderr: "issuer: redis: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if got := servicecmd.ExitCode("issuer", tt.err, &stdout, &stderr); got != tt.want {
				t.Errorf("ExitCode() = %d, want %d", got, tt.want)
			}
			if !strings.HasPrefix(stdout.String(), tt.wantStdout) || (tt.wantStdout == "" && stdout.Len() > 0) {
				t.Errorf("stdout = %q, want prefix %q", stdout.String(), tt.wantStdout)
			}
			if !strings.HasPrefix(stderr.String(), tt.wantStderr) || (tt.wantStderr == "" && stderr.Len() > 0) {
				t.Errorf("stderr = %q, want prefix %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

func TestEveryBadTLSCombinationIsReported(t *testing.T) {
	t.Parallel()
	_, f, err := parse(t, []string{
		"-tls-cert", "svid.pem", // no -tls-key, no -tls-bundle
		"-spiffe-socket", "/run/agent.sock", // files and socket; not unix://
		"-insecure", // with TLS
		"-allowed-clients", "https://not-spiffe",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	errs := f.Errors()
	want := []string{"-tls-key", "-tls-bundle", "-spiffe-socket: give either", "-spiffe-socket: \"/run/agent.sock\"", "-insecure", "-allowed-clients"}
	if len(errs) != len(want) {
		t.Fatalf("Errors() = %v, want %d", errs, len(want))
	}
	for i, w := range want {
		if !errors.Is(errs[i], servicecmd.ErrInvalid) || !strings.Contains(errs[i].Error(), w) {
			t.Errorf("Errors()[%d] = %v, want ErrInvalid naming %s", i, errs[i], w)
		}
	}
}

func TestPlaintextOnANonLoopbackAddressNeedsInsecure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args    []string
		refused bool
	}{
		{[]string{"-grpc-addr", "127.0.0.1:50051"}, false},
		{[]string{"-grpc-addr", "[::1]:50051"}, false},
		{[]string{"-grpc-addr", "0.0.0.0:50051"}, true},
		{[]string{"-grpc-addr", ":50051"}, true},
		{[]string{"-grpc-addr", ":50051", "-insecure"}, false},
		{[]string{"-grpc-addr", ":50051", "-tls-cert", "c", "-tls-key", "k", "-tls-bundle", "b", "-allowed-clients", "spiffe://acme.example"}, false},
	} {
		_, f, err := parse(t, tc.args, nil)
		if err != nil {
			t.Fatal(err)
		}
		errs := f.Errors()
		if !tc.refused {
			if len(errs) != 0 {
				t.Errorf("%v: Errors() = %v, want none", tc.args, errs)
			}
			continue
		}
		if len(errs) != 1 || !errors.Is(errs[0], mtls.ErrPlaintextListen) || strings.Contains(errs[0].Error(), "\n") || !strings.Contains(errs[0].Error(), "-insecure") {
			t.Errorf("%v: Errors() = %v, want one line naming -insecure", tc.args, errs)
		}
	}
}

func TestAllowedClientsWithoutTLSIsReported(t *testing.T) {
	t.Parallel()
	_, f, err := parse(t, []string{"-allowed-clients", "spiffe://acme.example"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	errs := f.Errors()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "-allowed-clients: needs TLS") {
		t.Errorf("Errors() = %v, want -allowed-clients: needs TLS", errs)
	}
}

func TestLimitFlagsReadTheirVariablesAndRefuseNegatives(t *testing.T) {
	t.Parallel()
	c, f, err := parse(t, []string{"-max-concurrent-streams", "7"}, map[string]string{"JITID_MAX_REQUEST_BYTES": "1024", "JITID_MAX_CONNECTIONS": "3", "JITID_MAX_CONNECTION_IDLE": "1m"})
	if err != nil || len(f.Errors()) != 0 {
		t.Fatalf("Parse() = %v, %v", err, f.Errors())
	}
	if c.Limits.MaxRequestBytes != 1024 || c.Limits.MaxConcurrentStreams != 7 || c.Limits.MaxConnections != 3 || c.Limits.MaxConnectionIdle.String() != "1m0s" {
		t.Errorf("Limits = %+v", c.Limits)
	}
	if got := c.ServerOptions("test", nil, nil, nil).Limits; got != c.Limits {
		t.Errorf("ServerOptions().Limits = %+v, want %+v", got, c.Limits)
	}
	_, f, err = parse(t, []string{"-max-request-bytes", "-1", "-max-connections", "-2", "-keepalive-min-time", "-1s", "-max-connection-idle", "-1s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if errs := f.Errors(); len(errs) != 4 {
		t.Errorf("Errors() = %v, want 4", errs)
	}
}
