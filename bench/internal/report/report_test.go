package report_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jitid/jitid/bench/internal/load"
	"github.com/jitid/jitid/bench/internal/report"
)

func TestCount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   float64
		want string
	}{
		{"small", 7, "7"},
		{"thousands", 4321.4, "4,321"},
		{"millions", 1234567, "1,234,567"},
		{"negative", -12000, "-12,000"},
		{"rounds", 999.6, "1,000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := report.Count(tt.in); got != tt.want {
				t.Errorf("Count(%v) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRatioValue(t *testing.T) {
	t.Parallel()
	if got := (report.Ratio{Num: 5000, Den: 20000}).Value(); got != 0.25 {
		t.Errorf("Value = %v, want 0.25", got)
	}
	if got := (report.Ratio{Num: 5}).Value(); got != 0 {
		t.Errorf("Value with no reference = %v, want 0", got)
	}
}

func TestTargetVerdict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   report.Target
		want string
	}{
		{"met", report.Target{Measured: true, Met: true}, "met"},
		{"missed", report.Target{Measured: true}, "NOT met"},
		{"skipped", report.Target{Met: true}, "not measured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.in.Verdict(); got != tt.want {
				t.Errorf("Verdict = %q, want %q", got, tt.want)
			}
		})
	}
}

func sample() *report.Report {
	return &report.Report{
		Machine: report.Machine{CPU: "Test CPU", Cores: 2, MemoryBytes: 1 << 30, GoVersion: "go1.26", Date: time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC), Runs: 3},
		Figures: []report.Figure{
			{Workload: "issue", Runs: 3, Result: load.Result{Mode: "closed", Concurrency: 64, Rate: 4321, P50: 12 * time.Millisecond, P99: 30 * time.Millisecond}},
			{Workload: "issue", Runs: 3, Result: load.Result{Mode: "open", TargetRate: 2000, Rate: 1999, P99: 9 * time.Millisecond}},
			{Workload: "a|b", Runs: 1, Unit: "events/s", Result: load.Result{Mode: "catch-up", Rate: 5000}},
		},
		Ratios:    []report.Ratio{{Name: "issue / echo", Num: 4321, Den: 20000, NumLabel: "issue", DenLabel: "echo"}},
		Targets:   []report.Target{{Name: "Issue closed", Want: ">= 4,000/s", Got: "4,321/s", Met: true, Measured: true}},
		Memory:    []report.Memory{{After: "issue", RSS: map[string]int64{"issuer": 50 << 20}}},
		Processes: []string{"issuer", "policy"},
		Notes:     []string{"an issuance makes 1 Redis round trip"},
	}
}

func TestTextAlignsColumns(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	sample().Text(&b)
	out := b.String()
	for _, want := range []string{"closed, 64 callers", "open, 2,000/s", "4,321 calls/s", "30.00 ms", "5,000 events/s", "0.22", "50.0 MiB", "met"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
	// Every line of the figures table starts its "mode" column at the same place.
	lines := strings.Split(out, "\n")
	var col = -1
	for _, l := range lines {
		if i := strings.Index(l, "closed, 64"); i >= 0 {
			col = i
		}
	}
	for _, l := range lines {
		if i := strings.Index(l, "open, 2,000/s"); i >= 0 && i != col {
			t.Errorf("mode column at %d and %d: not aligned:\n%s", col, i, out)
		}
	}
}

func TestMarkdownEscapesPipes(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	sample().Markdown(&b)
	out := b.String()
	if !strings.Contains(out, `| a\|b |`) {
		t.Errorf("a pipe inside a cell is not escaped:\n%s", out)
	}
	if !strings.Contains(out, "|---|---|") {
		t.Errorf("no header separator:\n%s", out)
	}
	if strings.Contains(out, "| issue | open, 2,000/s | 1,999 calls/s |  |") {
		t.Errorf("p50 left blank although p99 is known:\n%s", out)
	}
}

func TestSpliceKeepsHandWrittenText(t *testing.T) {
	t.Parallel()
	doc := "# Benchmarks\n\nintro\n\n" + report.BeginMarker + "\nold\n" + report.EndMarker + "\n\n## Findings\nkept\n"
	got := report.Splice(doc, report.BeginMarker, report.EndMarker, "new table")
	if strings.Contains(got, "old") || !strings.Contains(got, "new table") {
		t.Errorf("generated part not replaced:\n%s", got)
	}
	if !strings.HasPrefix(got, "# Benchmarks\n\nintro\n\n") || !strings.HasSuffix(got, "## Findings\nkept\n") {
		t.Errorf("hand-written text not kept:\n%s", got)
	}
	fresh := report.Splice("# Benchmarks\n", report.BeginMarker, report.EndMarker, "table")
	if !strings.Contains(fresh, report.BeginMarker) || !strings.Contains(fresh, "table") {
		t.Errorf("markers not added to a doc without them:\n%s", fresh)
	}
}

func TestCPUUseBound(t *testing.T) {
	t.Parallel()
	c := report.CPUUse{Cores: 2, PerCall: map[string]time.Duration{"issuer": 300 * time.Microsecond, "policy": 200 * time.Microsecond}}
	if c.Total() != 500*time.Microsecond {
		t.Errorf("Total = %v, want 500µs", c.Total())
	}
	if got := c.Bound(); got != 4000 {
		t.Errorf("Bound = %v, want 4000 (2 cores / 500µs)", got)
	}
	if got := (report.CPUUse{Cores: 2}).Bound(); got != 0 {
		t.Errorf("Bound of nothing = %v, want 0", got)
	}
}

func TestSpliceSectionsAreIndependent(t *testing.T) {
	t.Parallel()
	doc := report.Splice("# B\n", report.BeginMarker, report.EndMarker, "bench table")
	doc = report.Splice(doc, report.SoakBeginMarker, report.SoakEndMarker, "soak table")
	doc = report.Splice(doc, report.BeginMarker, report.EndMarker, "bench table 2")
	if !strings.Contains(doc, "soak table") || !strings.Contains(doc, "bench table 2") || strings.Contains(doc, "bench table\n") {
		t.Errorf("sections interfere:\n%s", doc)
	}
}
