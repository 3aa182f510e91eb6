// Package gobin builds a main package of a workspace module for a test,
// once per test binary: tests of one module run another module's binary
// (the e2e suite runs the services; policy's replay test runs audit)
// without knowing where that module lies on disk.
package gobin

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Target names a binary to build.
type Target struct {
	// Module is the module path (github.com/jitid/jitid/services/audit).
	Module string
	// Package is the main package, relative to the module (./cmd/audit).
	Package string
	// Race builds it with the race detector.
	Race bool
}

type result struct {
	once sync.Once
	path string
	err  error
}

var (
	mu     sync.Mutex
	builds = map[Target]*result{}
)

// Build returns the path of t's binary, building it the first time it is
// asked for in this test binary; a failed build fails every test that
// asks. Binaries live in the user's cache directory under a name per
// target, replaced by each build, so that nothing is left behind per run
// and no TestMain is needed.
func Build(tb testing.TB, t Target) string {
	tb.Helper()
	path, err := build(t)
	if err != nil {
		tb.Fatalf("binary unavailable: %v", err)
	}
	return path
}

func build(t Target) (string, error) {
	mu.Lock()
	r, ok := builds[t]
	if !ok {
		r = &result{}
		builds[t] = r
	}
	mu.Unlock()
	r.once.Do(func() { r.path, r.err = run(t) })
	return r.path, r.err
}

func run(t Target) (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "jitid-testkit", "gobin")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	modDir, err := ModuleDir(t.Module)
	if err != nil {
		return "", err
	}
	// The module's directory is in the name: checkouts side by side must
	// not run each other's binaries.
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s %s %s %v", modDir, t.Module, t.Package, t.Race)))
	out := filepath.Join(dir, fmt.Sprintf("%s-%x", filepath.Base(t.Package), sum[:6]))
	// Built beside and renamed over: test binaries of other packages may
	// build or run the same target at the same time, and a rename leaves a
	// running binary intact.
	tmp, err := os.CreateTemp(dir, filepath.Base(out)+".tmp-*")
	if err != nil {
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	// Gone once renamed over out; otherwise a failed build's leftover.
	defer func() { _ = os.Remove(tmp.Name()) }()
	args := []string{"build", "-o", tmp.Name()}
	if t.Race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, t.Package)...) //nolint:gosec // G204: go build of a package the test names
	cmd.Dir = modDir
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s in %s: %w\n%s", t.Package, modDir, err, b)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", err
	}
	return out, nil
}

// ModuleDir returns the directory of a module of the workspace (or of the
// build list of the current module).
func ModuleDir(module string) (string, error) {
	b, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output() //nolint:gosec // G204: go list of a module the test names
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("go list -m %s: %w: %s", module, err, ee.Stderr)
		}
		return "", fmt.Errorf("go list -m %s: %w", module, err)
	}
	d := strings.TrimSpace(string(b))
	if d == "" {
		return "", fmt.Errorf("module %s has no directory (not in the workspace?)", module)
	}
	return d, nil
}
