package app_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/jitid/jitid/services/policy/internal/app"
	"github.com/jitid/jitid/services/policy/internal/policy"
)

// TestReloadFailureInHealthDetail: a bad set on disk keeps the good one in
// use and shows up in the reload hook (which drives gRPC health) and in
// /policyz; fixing the file clears both.
func TestReloadFailureInHealthDetail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "p.cedar")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`@id("ok") permit (principal, action, resource);`)
	set, err := policy.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var last policy.Status
	engine := policy.NewEngine(set, policy.EngineOptions{OnReload: func(st policy.Status) { last = st }})
	srv := httptest.NewServer(app.StatusHandler(engine))
	defer srv.Close()
	status := func() map[string]any {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	r := policy.NewReloader(engine, dir, 0)

	write(`@id("bad") permit (principal, action, resource) when { resource.nope };`)
	if _, err := r.Reload(); err == nil {
		t.Fatal("Reload of a bad set: no error")
	}
	if last.LastError == nil || engine.Set().Version() != set.Version() {
		t.Errorf("after a bad reload: hook error %v, version %s; want an error and the good set kept", last.LastError, engine.Set().Version())
	}
	if m := status(); m["status"] != "degraded" || m["version"] != set.Version() || m["last_error"] == nil {
		t.Errorf("/policyz = %v, want degraded with the good version and the error", m)
	}

	write(`@id("ok2") permit (principal, action, resource);`)
	if installed, err := r.Reload(); !installed || err != nil {
		t.Fatalf("Reload of a good set = %v, %v", installed, err)
	}
	if last.LastError != nil {
		t.Errorf("after a good reload: hook error %v, want none", last.LastError)
	}
	if m := status(); m["status"] != "ok" || m["last_error"] != nil {
		t.Errorf("/policyz = %v, want ok", m)
	}
}
