package workload_test

import (
	"testing"
	"time"

	"github.com/jitid/jitid/bench/internal/workload"
)

func TestParseRedisBenchmarkCSV(t *testing.T) {
	t.Parallel()
	out := []byte(`"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"EVALSHA 5e1b...","12345.68","5.100","0.500","4.900","7.000","9.000","20.000"
`)
	got, err := workload.ParseRedisBenchmarkCSV(out)
	if err != nil || got != 12345.68 {
		t.Errorf("ParseRedisBenchmarkCSV = %v, %v; want 12345.68", got, err)
	}
	if _, err := workload.ParseRedisBenchmarkCSV([]byte("\"test\",\"rps\"\n")); err == nil {
		t.Error("no result line: want an error")
	}
}

func TestParseCommandStats(t *testing.T) {
	t.Parallel()
	info := "# Commandstats\r\ncmdstat_evalsha:calls=1000,usec=5000,usec_per_call=5.00\r\ncmdstat_xack:calls=31,usec=10\r\n"
	got := workload.ParseCommandStats(info)
	if got["evalsha"] != 1000 || got["xack"] != 31 || len(got) != 2 {
		t.Errorf("ParseCommandStats = %v", got)
	}
}

func TestGrowth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		behind []uint64
		want   float64
	}{
		{"flat", []uint64{100, 100, 100, 100}, 0},
		{"growing 50 per second", []uint64{0, 50, 100, 150}, 50},
		{"noisy but flat", []uint64{100, 300, 100, 300, 100, 300, 100, 300}, 0},
		{"one sample", []uint64{500}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var s []workload.Lag
			for i, b := range tt.behind {
				s = append(s, workload.Lag{At: time.Duration(i) * time.Second, Behind: b})
			}
			got := workload.Growth(s)
			if got-tt.want > 30 || tt.want-got > 30 {
				t.Errorf("Growth = %v, want about %v", got, tt.want)
			}
		})
	}
}
