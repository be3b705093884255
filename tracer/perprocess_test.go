package tracer

import (
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/profilemate/profilemate-bpf/analysis"
)

// TestTraceFollowsForkAfterAttach: a process forked after the tracer
// attached inherits its parent's breakpoints, which run nothing for it: it
// gets probes of its own at the tracer's next scan, its marker's first.
// Steps it runs with its marker probed and its CUDA libraries not yet are
// left out (counted as begun before the probes), not written with launches
// missing; once it has them all, every step is traced whole, as the
// parent's are, on the same library files.
func TestTraceFollowsForkAfterAttach(t *testing.T) {
	requireRoot(t)
	bin, marker := buildWorkload(t)
	const steps = 5
	w := startWorkload(t, bin, marker, steps, true)
	tr, err := Start(Options{PID: w.cmd.Process.Pid, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	children := make(chan int, 1)
	var markerProbed bool
	var ran atomic.Bool
	probeHook = func(kind LibKind) {
		switch {
		case kind == LibMarker:
			markerProbed = true
		case markerProbed && !ran.Load():
			// The child's marker probes are live, its CUDA ones not:
			// it runs its first steps now, up to its next stop.
			ran.Store(true)
			var child int
			select {
			case child = <-children:
			case <-time.After(10 * time.Second):
				t.Errorf("no child forked")
				return
			}
			if !waitState(child, "T") || syscall.Kill(child, syscall.SIGCONT) != nil ||
				!waitStepsBeforeProbes(tr, child, steps) || !waitState(child, "T") {
				t.Errorf("child %d did not run its first steps", child)
			}
		}
	}
	t.Cleanup(func() { probeHook = nil })
	stop := runTracer(t, tr)
	fmt.Fprintln(w.stdin, "go")
	var child int
	fmt.Sscanf(w.expect(t, "forked"), "forked child=%d", &child)
	children <- child
	if !waitArmed(tr, child) {
		t.Fatalf("the tracer did not arm child %d", child)
	}
	if !ran.Load() {
		t.Fatal("child armed before its libraries were probed after its marker: the case is not reproduced")
	}
	// Its other steps, with its probes all live.
	if !waitState(child, "T") || syscall.Kill(child, syscall.SIGCONT) != nil {
		t.Fatalf("child %d did not stop after its first steps", child)
	}
	w.expect(t, "done")
	got := stop()
	probeHook = nil
	checkSteps(t, got, uint32(w.cmd.Process.Pid), steps)
	childSteps := ofPID(got, child)
	if len(childSteps) != steps {
		t.Errorf("child's steps %v, want %d to %d: those begun with part of its probes left out, the others all there", stepIDs(childSteps), steps+1, 2*steps)
	}
	checkStepRange(t, childSteps, uint32(child), steps+1, 2*steps)
	if n := tr.StepsBeforeProbes(); n != steps {
		t.Errorf("%d steps counted as begun before the probes, want the child's first %d", n, steps)
	}
}

// ofPID returns the steps of process pid.
func ofPID(steps []analysis.Step, pid int) []analysis.Step {
	var out []analysis.Step
	for _, s := range steps {
		if s.PID == uint32(pid) {
			out = append(out, s)
		}
	}
	return out
}

// waitState waits for process pid to be in state (as /proc/PID/stat says).
func waitState(pid int, state string) bool {
	return waitFor(func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		f, err := statFields(b)
		return err == nil && f[0] == state
	})
}

// waitArmed waits for the tracer to have armed process pid.
func waitArmed(tr *Tracer, pid int) bool {
	return waitFor(func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		var st profilemateProcState
		p := tr.procs[pid]
		return p != nil && tr.objs.Procs.Lookup(uint32(pid), &st) == nil && p.armed(&st)
	})
}

// waitStepsBeforeProbes waits for process pid to have begun n steps before
// it was armed.
func waitStepsBeforeProbes(tr *Tracer, pid int, n uint64) bool {
	return waitFor(func() bool {
		var st profilemateProcState
		return tr.objs.Procs.Lookup(uint32(pid), &st) == nil && st.StepsUnarmed == n
	})
}

// waitFor polls cond for up to 10 s.
func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}
