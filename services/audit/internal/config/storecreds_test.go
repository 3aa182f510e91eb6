package config_test

import (
	"bytes"
	"errors"
	"flag"
	"regexp"
	"strings"
	"testing"

	"github.com/jitid/jitid/pkg/envflag"
	"github.com/jitid/jitid/services/audit/internal/config"
)

// A secret given as a flag shows in ps to every local user; only files
// may carry one.
func TestNATSSecretsNeverOnTheCommandLine(t *testing.T) {
	t.Parallel()
	var help bytes.Buffer
	if _, err := config.Load([]string{"-help"}, envflag.MapLookup(nil), &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Load(-help) error = %v", err)
	}
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(help.String(), -1) {
		name := m[1]
		seen[name] = true
		for _, secret := range []string{"password", "secret", "seed", "token"} {
			if strings.Contains(name, secret) && !strings.HasSuffix(name, "-file") {
				t.Errorf("-%s takes a secret on the command line", name)
			}
		}
	}
	for _, want := range []string{"nats-creds", "nats-nkey", "nats-user", "nats-password-file", "nats-tls-ca"} {
		if !seen[want] {
			t.Errorf("-%s missing from the flags", want)
		}
	}
}

func TestNATSAuthConflictsAreReportedAtOnce(t *testing.T) {
	t.Parallel()
	_, err := config.Load([]string{"-nats-creds", "a.creds", "-nats-user", "audit", "-nats-tls-key", "k.pem"}, envflag.MapLookup(nil), nil)
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Load error = %v, want ErrInvalid", err)
	}
	for _, want := range []string{"-nats-creds: conflicts with -nats-user", "-nats-user: needs -nats-password-file", "-nats-tls-cert"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %q", err, want)
		}
	}
}
