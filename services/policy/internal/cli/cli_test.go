package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitid/jitid/services/policy/internal/cli"
)

func run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := cli.Main(context.Background(), cli.Env{Args: args, Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }})
	return code, out.String()
}

// TestShippedCases runs the cases shipped with the default set and with
// every example set through `policy test`, the same path authors use.
func TestShippedCases(t *testing.T) {
	t.Parallel()
	examples, err := filepath.Glob("../../../../examples/policies/*")
	if err != nil || len(examples) < 4 {
		t.Fatalf("example sets: %v %v", examples, err)
	}
	tests := [][]string{{"test", "../../policies/testdata"}}
	for _, dir := range examples {
		if info, err := os.Stat(dir); err == nil && info.IsDir() {
			tests = append(tests, []string{"test", "-policy-file", dir})
		}
	}
	for _, args := range tests {
		t.Run(args[len(args)-1], func(t *testing.T) {
			t.Parallel()
			if code, out := run(t, args...); code != cli.ExitOK {
				t.Errorf("policy %s: exit %d\n%s", strings.Join(args, " "), code, out)
			}
		})
	}
}

func TestTestExitCodeAndDiff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cases := `time: 2026-03-04T10:30:00Z
cases:
  - name: wrong ttl and scopes
    request:
      agent: {id: a, class: EPHEMERAL}
      delegator: {id: d, entitlements: [papers:read]}
      task: {id: t, sensitivity: LOW}
      scopes: [papers:read]
      ttl: 2h
    expect: {allow: true, scopes: [papers:read, papers:write], ttl: 2h}
  - name: right
    request:
      agent: {id: a, class: EPHEMERAL}
      delegator: {id: d, entitlements: [papers:read]}
      task: {id: t, sensitivity: LOW}
      scopes: [papers:read]
      ttl: 2h
    expect: {allow: true, ttl: 1h}
`
	path := filepath.Join(dir, "bad.cases.yaml")
	if err := os.WriteFile(path, []byte(cases), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := run(t, "test", path)
	if code != cli.ExitFailed {
		t.Errorf("exit = %d, want %d\n%s", code, cli.ExitFailed, out)
	}
	for _, want := range []string{
		"FAIL " + path + ":3 wrong ttl and scopes",
		"scopes:     want [papers:read, papers:write], got [papers:read]",
		"ttl:        want 2h0m0s, got 1h0m0s",
		"FAIL 1 of 2 cases",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// A misspelt expectation is an error, not a check that passes.
	typo := strings.Replace(cases, "expect: {allow: true, ttl: 1h}", "expect: {allow: true, tll: 1h}", 1)
	if err := os.WriteFile(path, []byte(typo), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := run(t, "test", path); code != cli.ExitUsage {
		t.Errorf("typo: exit = %d, want %d\n%s", code, cli.ExitUsage, out)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	bad := t.TempDir()
	src := "@id(\"a\")\npermit (principal, action, resource) when { resource.sensitivty == \"LOW\" };\n\n@id(\"b\")\n@max_ttl(\"soon\")\npermit (principal, action, resource);\n"
	if err := os.WriteFile(filepath.Join(bad, "p.cedar"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	badCatalogue := t.TempDir()
	if err := os.WriteFile(filepath.Join(badCatalogue, "p.cedar"), []byte(`permit (principal, action, resource);`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(badCatalogue, "scopes.yaml"), []byte("scopes:\n  - {scope: payments:transfer, min_sensitivity: SEVERE}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := run(t, "check", "../../policies", bad, badCatalogue)
	if code != cli.ExitFailed {
		t.Errorf("exit = %d, want %d\n%s", code, cli.ExitFailed, out)
	}
	for _, want := range []string{
		"ok   ../../policies: 8 policies, schema jitid.cedarschema, scope catalogue scopes.yaml",
		filepath.Join(badCatalogue, "scopes.yaml") + `:2:1: bad scope catalogue: scope "payments:transfer": min_sensitivity "SEVERE"`,
		filepath.Join(bad, "p.cedar") + `:1:1: policy "a": policy does not validate against the schema`,
		filepath.Join(bad, "p.cedar") + `:4:1: policy "b": bad annotation: @max_ttl`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code, out := run(t, "check", "../../policies"); code != cli.ExitOK {
		t.Errorf("good set: exit %d\n%s", code, out)
	}
	if code, _ := run(t, "nonsense"); code != cli.ExitUsage {
		t.Errorf("unknown command: exit %d, want %d", code, cli.ExitUsage)
	}
}
