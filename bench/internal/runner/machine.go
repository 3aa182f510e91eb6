package runner

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/jitid/jitid/bench/internal/report"
)

func machine(runs int, command string) report.Machine {
	m := report.Machine{
		Cores:       runtime.NumCPU(),
		GoVersion:   strings.TrimPrefix(runtime.Version(), "go"),
		NATSVersion: natsserver.VERSION,
		Date:        time.Now(),
		Runs:        runs,
		Command:     command,
		LoadBefore:  loadAvg(),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				f := strings.Fields(v)
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					m.MemoryBytes = kb * 1024
				}
			}
		}
	}
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		for f := range strings.FieldsSeq(string(out)) {
			if v, ok := strings.CutPrefix(f, "v="); ok {
				m.RedisVersion = v
			}
		}
	}
	return m
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
