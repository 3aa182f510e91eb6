package gobin_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/jitid/jitid/testkit/gobin"
)

func TestBuildFindsTheModuleAndBuildsOnce(t *testing.T) {
	target := gobin.Target{Module: "github.com/jitid/jitid/testkit", Package: "./gobin/testdata/hello"}
	first := gobin.Build(t, target)
	out, err := exec.Command(first).Output()
	if err != nil || strings.TrimSpace(string(out)) != "hello" {
		t.Fatalf("built binary printed %q, %v; want hello", out, err)
	}
	info, err := os.Stat(first)
	if err != nil {
		t.Fatal(err)
	}
	if second := gobin.Build(t, target); second != first {
		t.Errorf("second Build = %s, want the first build %s", second, first)
	}
	if again, err := os.Stat(first); err != nil || !again.ModTime().Equal(info.ModTime()) {
		t.Errorf("second Build rebuilt the binary (%v)", err)
	}
}
