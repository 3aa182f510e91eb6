//go:build unix

package policy_test

import (
	"syscall"
	"time"
)

// processCPU is the CPU time the process has used, user and system, GC
// included. On a shared machine ns/op counts the time other work holds
// the cores; CPU time per op counts only this process's work.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
