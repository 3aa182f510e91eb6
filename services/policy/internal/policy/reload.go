package policy

import (
	"context"
	"time"
)

// Reloader keeps an Engine's set in step with the files at a path. It polls
// rather than watching with inotify: editors replace files by rename and
// Kubernetes swaps ConfigMap directories through symlinks, which watches miss
// or see half-done; a poll of a few small files costs next to nothing, and a
// set is parsed only when its content hash changes.
type Reloader struct {
	engine   *Engine
	path     string
	interval time.Duration
	// failedVersion is the version of the last bad content, so that a bad
	// file is reported once, not on every poll.
	failedVersion string
	// failedRead is the last read error's text, for the same reason.
	failedRead string
}

// NewReloader returns a Reloader of engine from path, polling every interval
// (2s when zero).
func NewReloader(engine *Engine, path string, interval time.Duration) *Reloader {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	return &Reloader{engine: engine, path: path, interval: interval}
}

// Run polls until ctx ends.
func (r *Reloader) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = r.Reload()
		}
	}
}

// Reload reads the files once and installs them when their content changed
// and compiles. It reports whether a new set was installed, and the load
// error; on error the engine keeps its set and records the error.
func (r *Reloader) Reload() (bool, error) {
	files, err := ReadPath(r.path)
	if err != nil {
		if err.Error() != r.failedRead {
			r.failedRead = err.Error()
			r.engine.ReloadFailed(err)
		}
		return false, err
	}
	r.failedRead = ""
	v := Version(files)
	if v == r.engine.Set().Version() {
		// Back to the set in use (a bad edit undone): nothing is wrong now.
		r.failedVersion = ""
		r.engine.clearReloadError()
		return false, nil
	}
	if v == r.failedVersion {
		return false, nil
	}
	set, err := Compile(r.path, files)
	if err != nil {
		r.failedVersion = v
		r.engine.ReloadFailed(err)
		return false, err
	}
	r.failedVersion = ""
	r.engine.Install(set)
	return true, nil
}
