package suite_test

import (
	"time"

	"testing"

	"github.com/jitid/jitid/bench/internal/suite"
)

func TestParseVmRSS(t *testing.T) {
	t.Parallel()
	status := []byte("Name:\tissuer\nVmPeak:\t  900000 kB\nVmRSS:\t   51200 kB\nThreads:\t9\n")
	got, err := suite.ParseVmRSS(status)
	if err != nil || got != 51200*1024 {
		t.Errorf("ParseVmRSS = %d, %v; want %d", got, err, 51200*1024)
	}
	if _, err := suite.ParseVmRSS([]byte("Name:\tx\n")); err == nil {
		t.Error("ParseVmRSS without a VmRSS line: want an error")
	}
}

func TestParseMetric(t *testing.T) {
	t.Parallel()
	text := []byte(`# HELP jitid_audit_consumer_pending Messages not yet delivered.
# TYPE jitid_audit_consumer_pending gauge
jitid_audit_consumer_pending 1234
jitid_audit_consumer_pending_other 99
jitid_audit_events_stored_total{shard="a"} 10
jitid_audit_events_stored_total{shard="b"} 5.5
`)
	tests := []struct {
		name string
		want float64
	}{
		{"jitid_audit_consumer_pending", 1234},
		{"jitid_audit_events_stored_total", 15.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := suite.ParseMetric(text, tt.name)
			if err != nil || got != tt.want {
				t.Errorf("ParseMetric(%s) = %v, %v; want %v", tt.name, got, err, tt.want)
			}
		})
	}
	if _, err := suite.ParseMetric(text, "jitid_absent"); err == nil {
		t.Error("absent metric: want an error")
	}
}

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
	line := []byte("4242 (jitid (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0")
	got, err := suite.ParseStatCPU(line)
	if err != nil || got != 3*time.Second {
		t.Errorf("ParseStatCPU = %v, %v; want 3s (300 ticks)", got, err)
	}
	if _, err := suite.ParseStatCPU([]byte("garbage")); err == nil {
		t.Error("malformed line: want an error")
	}
}
