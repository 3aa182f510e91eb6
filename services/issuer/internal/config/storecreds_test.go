package config_test

import (
	"bytes"
	"errors"
	"flag"
	"regexp"
	"strings"
	"testing"

	"github.com/jitid/jitid/services/issuer/internal/config"
)

// A password given as a flag shows in ps to every local user; only files
// may carry one.
func TestRedisPasswordNeverOnTheCommandLine(t *testing.T) {
	t.Parallel()
	var help bytes.Buffer
	if _, err := config.Load([]string{"-help"}, env(nil), &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Load(-help) error = %v", err)
	}
	names := regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(help.String(), -1)
	if len(names) == 0 {
		t.Fatalf("no flag in the help output:\n%s", help.String())
	}
	seen := map[string]bool{}
	for _, m := range names {
		name := m[1]
		seen[name] = true
		for _, secret := range []string{"password", "secret", "seed", "token"} {
			if strings.Contains(name, secret) && !strings.HasSuffix(name, "-file") {
				t.Errorf("-%s takes a secret on the command line", name)
			}
		}
	}
	for _, want := range []string{"redis-password-file", "redis-username", "nats-password-file", "nats-creds", "nats-nkey"} {
		if !seen[want] {
			t.Errorf("-%s missing from the flags", want)
		}
	}
}

func TestRedisPasswordEnvironmentVariableIsRefusedWithAPointerToTheFile(t *testing.T) {
	t.Parallel()
	_, err := config.Load(nil, env(map[string]string{"JITID_REDIS_PASSWORD": "hunter2-secret"}), nil)
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Load with JITID_REDIS_PASSWORD: error = %v, want ErrInvalid", err)
	}
	if !strings.Contains(err.Error(), "-redis-password-file") {
		t.Errorf("error %q does not name -redis-password-file", err)
	}
	if strings.Contains(err.Error(), "hunter2-secret") {
		t.Errorf("error quotes the password: %v", err)
	}
}

func TestStoreCredentialConflictsAreReportedAtOnce(t *testing.T) {
	t.Parallel()
	_, err := config.Load([]string{
		"-redis-username", "jitid",
		"-redis-tls-key", "k.pem",
		"-nats-creds", "a.creds", "-nats-nkey", "seed",
	}, env(nil), nil)
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Load error = %v, want ErrInvalid", err)
	}
	for _, want := range []string{"-redis-username: needs -redis-password-file", "-redis-tls-cert", "-nats-creds: conflicts with -nats-nkey"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %q", err, want)
		}
	}
}
