// Package policymetrics exposes the state of the policy engine to
// Prometheus: which set version is in use and whether reloads fail. It reads
// the engine at scrape time, so the engine needs no metric hooks.
package policymetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitid/jitid/services/policy/internal/policy"
)

// Collector is a prometheus.Collector over an Engine's Status.
type Collector struct {
	engine      *policy.Engine
	info        *prometheus.Desc
	loadedAt    *prometheus.Desc
	failures    *prometheus.Desc
	lastFailing *prometheus.Desc
}

// New returns a Collector of engine.
func New(engine *policy.Engine) *Collector {
	return &Collector{
		engine: engine,
		info: prometheus.NewDesc("jitid_policy_set_info",
			"The policy set in use (always 1), labelled with its content hash and source.",
			[]string{"version", "source"}, nil),
		loadedAt: prometheus.NewDesc("jitid_policy_set_loaded_timestamp_seconds",
			"When the policy set in use was installed, in Unix seconds.", nil, nil),
		failures: prometheus.NewDesc("jitid_policy_reload_failures_total",
			"Policy reloads that failed; the last good set stayed in use.", nil, nil),
		lastFailing: prometheus.NewDesc("jitid_policy_reload_failing",
			"1 while the policy files on disk do not load (the last good set is served), else 0.", nil, nil),
	}
}

// Register adds a Collector of engine to reg.
func Register(reg prometheus.Registerer, engine *policy.Engine) error {
	return reg.Register(New(engine))
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.info
	ch <- c.loadedAt
	ch <- c.failures
	ch <- c.lastFailing
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.engine.Status()
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, st.Set.Version(), st.Set.Source())
	ch <- prometheus.MustNewConstMetric(c.loadedAt, prometheus.GaugeValue, float64(st.LoadedAt.UnixNano())/1e9)
	ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(st.ReloadFailures))
	failing := 0.0
	if st.LastError != nil {
		failing = 1
	}
	ch <- prometheus.MustNewConstMetric(c.lastFailing, prometheus.GaugeValue, failing)
}
