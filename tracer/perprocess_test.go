package tracer

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/profilemate/profilemate-bpf/analysis"
)

// int3 is the breakpoint the kernel plants where a uprobe is.
const int3 = 0xcc

// TestUntracedNeighbourPaysNoProbes: two processes map the same CUDA
// libraries and the same marker, as two vLLM servers on one host do, and
// the tracer is given the first. The second has no breakpoint planted and
// its step_begin semaphore stays 0, so its marker does no traced work and
// none of the tracer's programs runs for its steps, while the first's steps
// are traced as always. After the trace both semaphores are 0 again and the
// traced process keeps running.
func TestUntracedNeighbourPaysNoProbes(t *testing.T) {
	requireRoot(t)
	enableRunCounts(t)
	bin, marker := buildWorkload(t)
	traced := startWorkload(t, bin, marker, 1, false)
	neighbour := startWorkload(t, bin, marker, 1, false)
	tr := startTracer(t, Options{PID: traced.cmd.Process.Pid, Logf: t.Logf})
	stop := runTracer(t, tr)
	for _, w := range []*workload{traced, neighbour} {
		fmt.Fprintln(w.stdin, "go")
		w.expect(t, "done")
	}

	drv, off := driverProbe(t, tr, "cuLaunchKernelEx")
	if b := textByte(t, traced.cmd.Process.Pid, drv, off); b != int3 {
		t.Fatalf("traced process: %#x at its cuLaunchKernelEx probe, want the breakpoint %#x: the case is not reproduced", b, int3)
	}
	if b := textByte(t, neighbour.cmd.Process.Pid, drv, off); b == int3 {
		t.Errorf("neighbour: the breakpoint is planted at its cuLaunchKernelEx too")
	}
	if sem := semaphore(t, neighbour); sem != "semaphore=0" {
		t.Errorf("neighbour while tracing: %q, want its semaphore at 0", sem)
	}
	if sem := semaphore(t, traced); sem != "semaphore=1" {
		t.Errorf("traced process while tracing: %q, want its semaphore raised", sem)
	}
	for name, n := range hitsPerStep(t, tr, neighbour, 20) {
		if n != 0 {
			t.Errorf("neighbour: %s ran %.2f times a step, want 0", name, n)
		}
	}
	for name, n := range hitsPerStep(t, tr, traced, 20) {
		if n != wholeStepHits[name] {
			t.Errorf("traced process: %s ran %.2f times a step, want %v", name, n, wholeStepHits[name])
		}
	}
	got := stop()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	checkStepRange(t, got, uint32(traced.cmd.Process.Pid), 1, 21) // none of the neighbour's

	for _, w := range []*workload{traced, neighbour} {
		if sem := semaphore(t, w); sem != "semaphore=0" {
			t.Errorf("pid %d after the trace: %q, want its semaphore back at 0", w.cmd.Process.Pid, sem)
		}
	}
	fmt.Fprintln(traced.stdin, "steps 3")
	traced.expect(t, "done")
}

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
	tr := startTracer(t, Options{PID: w.cmd.Process.Pid, Logf: t.Logf})
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

// driverProbe returns the traced driver's file and the offset of the probe
// on its function sym.
func driverProbe(t *testing.T, tr *Tracer, sym string) (path string, off uint64) {
	t.Helper()
	for _, lib := range tr.Libraries() {
		if lib.Kind != LibDriver {
			continue
		}
		offsets, err := symbolOffsets(lib.Path)
		if err != nil {
			t.Fatal(err)
		}
		return lib.Path, offsets[sym]
	}
	t.Fatal("no driver probed")
	return "", 0
}

// textByte reads the byte at file offset off of the executable mapping of
// path in process pid.
func textByte(t *testing.T, pid int, path string, off uint64) byte {
	t.Helper()
	maps, err := Proc{Root: "/proc"}.Maps(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range maps {
		if m.Path != path || !strings.Contains(m.Perms, "x") || off < m.Offset || off >= m.Offset+(m.End-m.Start) {
			continue
		}
		mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
		if err != nil {
			t.Fatal(err)
		}
		defer mem.Close()
		b := make([]byte, 1)
		if _, err := mem.ReadAt(b, int64(m.Start+off-m.Offset)); err != nil {
			t.Fatal(err)
		}
		return b[0]
	}
	t.Fatalf("pid %d maps no code of %s at offset %#x", pid, path, off)
	return 0
}

// semaphore asks the workload for its step_begin semaphore.
func semaphore(t *testing.T, w *workload) string {
	t.Helper()
	fmt.Fprintln(w.stdin, "semaphore?")
	return w.expect(t, "semaphore=")
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
