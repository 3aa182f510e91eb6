// Package report renders benchmark results: one table of figures, the
// ratios to the references measured in the same run, the targets of issue 5
// (met or not), each service's memory, and the machine they were measured
// on, as plain text for the terminal and as Markdown for docs/BENCHMARKS.md.
package report

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jitid/jitid/bench/internal/load"
)

// Machine describes where the figures were measured.
type Machine struct {
	CPU          string
	Cores        int
	MemoryBytes  int64
	GoVersion    string
	RedisVersion string
	NATSVersion  string
	Date         time.Time
	// LoadBefore is /proc/loadavg before the run, to judge how quiet the
	// machine was.
	LoadBefore string
	Runs       int
	Command    string
}

// Figure is the median of the runs of one workload in one mode.
type Figure struct {
	Workload string
	Result   load.Result
	Runs     int
	// Unit names what Rate counts ("calls/s" when empty).
	Unit string
}

// Mode describes how the load was driven, e.g. "closed, 64 callers".
func (f Figure) Mode() string {
	switch f.Result.Mode {
	case "closed":
		return fmt.Sprintf("closed, %d callers", f.Result.Concurrency)
	case "open":
		return fmt.Sprintf("open, %s/s", Count(f.Result.TargetRate))
	default:
		return f.Result.Mode
	}
}

// Ratio compares a jitid figure with a reference measured in the same run.
type Ratio struct {
	Name     string
	Num, Den float64
	NumLabel string
	DenLabel string
}

// Value is Num/Den, 0 when Den is 0.
func (r Ratio) Value() float64 {
	if r.Den == 0 {
		return 0
	}
	return r.Num / r.Den
}

// Target is one target of issue 5 and what was measured.
type Target struct {
	Name     string
	Want     string
	Got      string
	Met      bool
	Measured bool
}

// Verdict is "met", "NOT met" or "not measured".
func (t Target) Verdict() string {
	switch {
	case !t.Measured:
		return "not measured"
	case t.Met:
		return "met"
	default:
		return "NOT met"
	}
}

// Memory is the RSS of each process at the end of a workload.
type Memory struct {
	After string
	// RSS by process name, in bytes.
	RSS map[string]int64
}

// Report is everything one benchmark run produced.
type Report struct {
	Machine Machine
	Figures []Figure
	Ratios  []Ratio
	Targets []Target
	Memory  []Memory
	// Processes names the columns of the memory table, in order.
	Processes []string
	// CPU is the CPU time each process spent per call, by workload.
	CPU []CPUUse
	// Notes are facts measured along the way (round trips, lag, drain time).
	Notes []string
}

// CPUUse is the CPU time each process spent per call of one workload
// (user plus system, from /proc/<pid>/stat, over every run).
type CPUUse struct {
	Workload string
	PerCall  map[string]time.Duration
	// Cores is how many cores the machine has, to turn the total into the
	// rate the CPU allows.
	Cores int
}

// Total is the CPU time of one call, every process included.
func (c CPUUse) Total() time.Duration {
	var t time.Duration
	for _, d := range c.PerCall {
		t += d
	}
	return t
}

// Bound is the call rate the machine's cores allow at Total per call.
func (c CPUUse) Bound() float64 {
	if c.Total() == 0 {
		return 0
	}
	return float64(c.Cores) * float64(time.Second) / float64(c.Total())
}

// Count formats a rate or count with thousands separators: 12,345.
func Count(v float64) string {
	neg := v < 0
	if neg {
		v = -v
	}
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Millis formats a latency in milliseconds with two decimals: 1.25 ms.
func Millis(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// MiB formats bytes in mebibytes: 42.0 MiB.
func MiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// table is rows of cells, the first row the header.
type table [][]string

func (r *Report) figureTable() table {
	t := table{{"workload", "mode", "rate", "p50", "p99", "p99.9", "max", "errors", "runs"}}
	for _, f := range r.Figures {
		unit := f.Unit
		if unit == "" {
			unit = "calls/s"
		}
		res := f.Result
		row := []string{f.Workload, f.Mode(), Count(res.Rate) + " " + unit}
		if res.P50 == 0 && res.P99 == 0 {
			row = append(row, "", "", "", "")
		} else {
			row = append(row, Millis(res.P50), Millis(res.P99), Millis(res.P999), Millis(res.Max))
		}
		row = append(row, Count(float64(res.Errors)), fmt.Sprint(f.Runs))
		t = append(t, row)
	}
	return t
}

func (r *Report) ratioTable() table {
	t := table{{"ratio", "value", "jitid", "reference"}}
	for _, x := range r.Ratios {
		t = append(t, []string{x.Name, fmt.Sprintf("%.2f", x.Value()),
			x.NumLabel + " " + Count(x.Num), x.DenLabel + " " + Count(x.Den)})
	}
	return t
}

func (r *Report) targetTable() table {
	t := table{{"target", "wanted", "measured", "verdict"}}
	for _, x := range r.Targets {
		t = append(t, []string{x.Name, x.Want, x.Got, x.Verdict()})
	}
	return t
}

func (r *Report) memoryTable() table {
	t := table{append([]string{"RSS after"}, r.Processes...)}
	for _, m := range r.Memory {
		row := []string{m.After}
		for _, p := range r.Processes {
			if v, ok := m.RSS[p]; ok {
				row = append(row, MiB(v))
			} else {
				row = append(row, "")
			}
		}
		t = append(t, row)
	}
	return t
}

// CPUProcesses names the columns of the CPU table, in order.
var CPUProcesses = []string{"issuer", "policy", "audit", "jitid-nats", "redis-server", "jitid-echo", "jitid-load"}

func (r *Report) cpuTable() table {
	t := table{append(append([]string{"CPU µs per call"}, CPUProcesses...), "total", "cores allow")}
	for _, c := range r.CPU {
		row := []string{c.Workload}
		for _, p := range CPUProcesses {
			row = append(row, fmt.Sprintf("%.0f", float64(c.PerCall[p])/float64(time.Microsecond)))
		}
		row = append(row, fmt.Sprintf("%.0f", float64(c.Total())/float64(time.Microsecond)), Count(c.Bound())+"/s")
		t = append(t, row)
	}
	return t
}

func (t table) text(w io.Writer) {
	width := make([]int, len(t[0]))
	for _, row := range t {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for n, row := range t {
		var b strings.Builder
		for i, c := range row {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(c)
			b.WriteString(strings.Repeat(" ", width[i]-len([]rune(c))))
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		if n == 0 {
			var u strings.Builder
			for i := range row {
				if i > 0 {
					u.WriteString("  ")
				}
				u.WriteString(strings.Repeat("-", width[i]))
			}
			fmt.Fprintln(w, u.String())
		}
	}
}

func (t table) markdown(w io.Writer) {
	for n, row := range t {
		cells := make([]string, len(row))
		for i, c := range row {
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		if n == 0 {
			fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(row)))
		}
	}
}

func (m Machine) lines() []string {
	return []string{
		fmt.Sprintf("date: %s", m.Date.UTC().Format("2006-01-02 15:04 UTC")),
		fmt.Sprintf("CPU: %s, %d cores (load generator included)", m.CPU, m.Cores),
		fmt.Sprintf("memory: %s", MiB(m.MemoryBytes)),
		fmt.Sprintf("Go %s, Redis %s (AOF, appendfsync everysec), NATS server %s (JetStream, file storage)", m.GoVersion, m.RedisVersion, m.NATSVersion),
		fmt.Sprintf("load average before the run: %s", m.LoadBefore),
		fmt.Sprintf("each figure: the median of %d runs; command: %s", m.Runs, m.Command),
	}
}

// Text writes the report for a terminal.
func (r *Report) Text(w io.Writer) {
	for _, l := range r.Machine.lines() {
		fmt.Fprintln(w, l)
	}
	sections := []struct {
		title string
		t     table
	}{
		{"figures", r.figureTable()}, {"ratios", r.ratioTable()},
		{"targets", r.targetTable()}, {"memory", r.memoryTable()}, {"CPU", r.cpuTable()},
	}
	for _, s := range sections {
		if len(s.t) < 2 {
			continue
		}
		fmt.Fprintf(w, "\n%s\n", s.title)
		s.t.text(w)
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes")
		for _, n := range r.Notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
}

// Markdown writes the report as the generated part of docs/BENCHMARKS.md.
func (r *Report) Markdown(w io.Writer) {
	fmt.Fprintln(w, "### Machine")
	fmt.Fprintln(w)
	for _, l := range r.Machine.lines() {
		fmt.Fprintln(w, "- "+l)
	}
	sections := []struct {
		title string
		t     table
	}{
		{"Figures", r.figureTable()}, {"Ratios to references measured in the same run", r.ratioTable()},
		{"Targets (issue 5)", r.targetTable()}, {"Memory (VmRSS)", r.memoryTable()},
		{"CPU per call, by process (user + system, /proc/<pid>/stat)", r.cpuTable()},
	}
	for _, s := range sections {
		if len(s.t) < 2 {
			continue
		}
		fmt.Fprintf(w, "\n### %s\n\n", s.title)
		s.t.markdown(w)
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "\n### Measured along the way")
		fmt.Fprintln(w)
		for _, n := range r.Notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
}

// Markers delimit the generated parts of docs/BENCHMARKS.md; the text
// around them is written by hand and kept.
const (
	BeginMarker     = "<!-- BEGIN GENERATED by make bench: do not edit by hand -->"
	EndMarker       = "<!-- END GENERATED -->"
	SoakBeginMarker = "<!-- BEGIN GENERATED by make soak: do not edit by hand -->"
	SoakEndMarker   = "<!-- END GENERATED soak -->"
)

// Splice returns doc with the text between begin and end replaced by
// generated; a doc without the markers gets them, with generated, at its
// end.
func Splice(doc, begin, end, generated string) string {
	b := strings.Index(doc, begin)
	e := strings.Index(doc, end)
	block := begin + "\n\n" + strings.TrimSpace(generated) + "\n\n" + end
	if b < 0 || e < b {
		return strings.TrimRight(doc, "\n") + "\n\n" + block + "\n"
	}
	return doc[:b] + block + doc[e+len(end):]
}
