package tracer

import (
	"fmt"
	"testing"
)

// TestTraceFollowsExec: a traced process that executes a new image, which
// maps the CUDA libraries and the marker again, has the steps of its new
// image traced whole, as the steps before, and as a process's that did not
// exec. From the main thread the process keeps its task (the kernel's link
// filter follows it); from another thread the kernel makes that thread the
// leader, with the PID, and the old leader task exits: links made with the
// PID before then compare the new image's mm with that task's, NULL, and
// plant nothing in it (uprobe_multi_link_filter in kernel/trace/bpf_trace.c),
// so the tracer must make new ones.
func TestTraceFollowsExec(t *testing.T) {
	requireRoot(t)
	bin, marker := buildWorkload(t)
	for _, tc := range []struct {
		name, cmd string
		leader    bool // the thread that execs is the leader
	}{
		{"leader", "exec", true},
		{"thread", "threadexec", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const steps = 3
			w := startWorkload(t, bin, marker, steps, false)
			pid := w.cmd.Process.Pid
			tr := startTracer(t, Options{PID: pid, Logf: t.Logf})
			stop := runTracer(t, tr)
			fmt.Fprintln(w.stdin, "go")
			w.expect(t, "done")
			probes, _ := tr.Attached()

			fmt.Fprintln(w.stdin, tc.cmd)
			var tid int
			fmt.Sscanf(w.expect(t, "execing"), "execing tid=%d", &tid)
			if (tid == pid) != tc.leader {
				t.Fatalf("thread %d of process %d execs: the case is not reproduced", tid, pid)
			}
			w.expect(t, "ready") // the new image, its libraries mapped
			if !waitArmed(tr, pid) {
				t.Fatalf("the tracer did not arm process %d after its exec", pid)
			}
			// The old image's links are gone, the new image's in.
			if n, procs := tr.Attached(); n != probes || procs != 1 {
				t.Errorf("after the exec: %d probes for %d processes, want the %d of before for 1", n, procs, probes)
			}
			fmt.Fprintln(w.stdin, "go")
			done := w.expect(t, "done")
			var child, maxSem int
			fmt.Sscanf(done, "done child=%d max_semaphore=%d", &child, &maxSem)
			if maxSem < 1 {
				t.Errorf("new image: step_begin's semaphore not raised (%q)", done)
			}
			got := stop()
			// Steps 1..3 before the exec, 4..6 after it.
			checkSteps(t, got, uint32(pid), 2*steps)
			if len(got) != 2*steps {
				t.Errorf("%d steps, want %d: %v", len(got), 2*steps, stepIDs(got))
			}
			// Old links closed in the new image lowered no semaphore they
			// had not raised: the tracer's end leaves it at 0.
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			if sem := semaphore(t, w); sem != "semaphore=0" {
				t.Errorf("after the trace: %q, want the semaphore back at 0", sem)
			}
		})
	}
}
