package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/profilemate/profilemate-bpf/tracer"
)

// treeCPUNs is the CPU time, in ns, that the threads of root and its
// descendants have used so far (the first field of each thread's
// /proc/PID/task/TID/schedstat: nanoseconds, where /proc/PID/stat counts
// 10 ms ticks, too coarse for a few microseconds per step).
func treeCPUNs(tb testing.TB, root int) int64 {
	tb.Helper()
	pids, err := tracer.Proc{Root: "/proc"}.Descendants(root)
	if err != nil {
		tb.Fatal(err)
	}
	var total int64
	for _, pid := range pids {
		tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "schedstat"))
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil {
				continue // exited meanwhile
			}
			if f := strings.Fields(string(b)); len(f) > 0 {
				ns, _ := strconv.ParseInt(f[0], 10, 64)
				total += ns
			}
		}
	}
	return total
}

func TestTreeCPUCountsDescendants(t *testing.T) {
	// This test process burns CPU in itself; a child shell burns more.
	self := os.Getpid()
	before := treeCPUNs(t, self)
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i
	}
	after := treeCPUNs(t, self)
	if after-before < 1_000_000 || x == 0 {
		t.Fatalf("a 50M-iteration loop used %d ns of CPU by schedstat", after-before)
	}
	if treeCPUNs(t, 1<<30) != 0 {
		t.Fatal("a pid that does not exist has CPU time")
	}
}
