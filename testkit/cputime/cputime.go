// Package cputime reads CPU time for benchmarks: this process's, and a
// Redis server's, so that a benchmark can tell the client's share of the
// work from Redis's.
package cputime

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Process returns the CPU time (user and system) this process has used.
func Process(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Redis returns the CPU time (user and system) the Redis server behind
// rdb has used, from INFO cpu.
func Redis(tb testing.TB, rdb redis.UniversalClient) time.Duration {
	tb.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var total time.Duration
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			d, err := time.ParseDuration(v + "s")
			if err != nil {
				tb.Fatal(err)
			}
			total += d
		}
	}
	return total
}
