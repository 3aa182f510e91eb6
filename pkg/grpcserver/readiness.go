package grpcserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"sync"
	"time"
)

// errNotChecked is the state of a dependency until its first report: a
// server is not ready on the strength of a check that has not run.
var errNotChecked = errors.New("not checked yet")

// Readiness is the registry of the dependencies a server needs, each by
// name. The server is ready while every required one is; /readyz reports
// each, and the gRPC health of the server ("") and of every service
// registered on it follows the outcome.
type Readiness struct {
	mu   sync.Mutex
	deps map[string]*Dependency
	// notifyMu orders the calls of onChange, each with the state at the
	// time of the call, so that the last call has the latest state.
	notifyMu sync.Mutex
	onChange func(ready bool)
}

// Dependency is one named dependency of a server (a store, a bus, a policy
// set). Its owner reports its state with Set or Watch.
type Dependency struct {
	r        *Readiness
	name     string
	required bool
	err      error
	since    time.Time
}

func newReadiness(onChange func(bool)) *Readiness {
	return &Readiness{deps: map[string]*Dependency{}, onChange: onChange}
}

// Add registers the dependency name, not ready until its first report. A
// required dependency that is not ready makes the server not ready; an
// optional one is only reported. Adding a name twice returns the first.
func (r *Readiness) Add(name string, required bool) *Dependency {
	r.mu.Lock()
	d, ok := r.deps[name]
	if !ok {
		d = &Dependency{r: r, name: name, required: required, err: errNotChecked, since: time.Now()}
		r.deps[name] = d
	}
	r.mu.Unlock()
	if !ok {
		r.notify()
	}
	return d
}

// Set reports the dependency usable (nil) or not (the reason, shown on
// /readyz: it must name what is unreachable, never a secret).
func (d *Dependency) Set(err error) {
	r := d.r
	r.mu.Lock()
	changed := (d.err == nil) != (err == nil)
	if changed {
		d.since = time.Now()
	}
	d.err = err
	r.mu.Unlock()
	if changed {
		r.notify()
	}
}

// Watch runs check at once and then every interval until ctx ends,
// reporting each outcome with Set. Each check gets at most one interval.
func (d *Dependency) Watch(ctx context.Context, interval time.Duration, check func(context.Context) error) {
	run := func() {
		cctx, cancel := context.WithTimeout(ctx, interval)
		defer cancel()
		err := check(cctx)
		if ctx.Err() == nil {
			d.Set(err)
		}
	}
	run()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			run()
		}
	}
}

func (r *Readiness) notify() {
	r.notifyMu.Lock()
	defer r.notifyMu.Unlock()
	r.onChange(r.Ready())
}

// Ready reports whether every required dependency is usable.
func (r *Readiness) Ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.readyLocked()
}

func (r *Readiness) readyLocked() bool {
	for _, d := range r.deps {
		if d.required && d.err != nil {
			return false
		}
	}
	return true
}

// ReadyReport is the JSON body of /readyz.
type ReadyReport struct {
	// Status is "ready" or "not_ready".
	Status string        `json:"status"`
	Checks []CheckReport `json:"checks"`
}

// CheckReport is one dependency in a ReadyReport.
type CheckReport struct {
	Name     string `json:"name"`
	Ready    bool   `json:"ready"`
	Required bool   `json:"required"`
	// Since is when the dependency entered its present state.
	Since time.Time `json:"since"`
	Error string    `json:"error,omitempty"`
}

// Report returns the state of every dependency, by name.
func (r *Readiness) Report() ReadyReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := ReadyReport{Status: "ready", Checks: []CheckReport{}}
	if !r.readyLocked() {
		rep.Status = "not_ready"
	}
	for _, d := range r.deps {
		c := CheckReport{Name: d.name, Ready: d.err == nil, Required: d.required, Since: d.since.UTC()}
		if d.err != nil {
			c.Error = d.err.Error()
		}
		rep.Checks = append(rep.Checks, c)
	}
	sort.Slice(rep.Checks, func(i, j int) bool { return rep.Checks[i].Name < rep.Checks[j].Name })
	return rep
}

// ServeHTTP answers /readyz: the report as JSON, 200 when ready and 503
// when a required dependency is not.
func (r *Readiness) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	rep := r.Report()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if rep.Status != "ready" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(rep)
}
