package tracer

import (
	"fmt"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/profilemate/profilemate-bpf/analysis"
)

// window is an hour-long sampling window, so that only the tests' own
// toggleSampled calls open and close windows.
var window = Sampling{On: time.Hour, Every: 2 * time.Hour}

// timed runs f and returns when it was called and when it returned.
func timed(f func()) (called, returned time.Time) {
	called = time.Now()
	f()
	return called, time.Now()
}

// toggle is toggleSampled for timed.
func toggle(tr *Tracer) func() { return func() { tr.toggleSampled() } }

// TestSampledSyncsTimedInWindowsOnly: with synchronizations sampled in the
// launches' windows, the steps run while the probes are live carry their
// wait and are counted; the steps between windows carry none and are not;
// a step that straddles a window's end, or its start, is not counted, even
// where its synchronization came while the probes were live. The process's
// totals hold the synchronizations of the windows alone, and SyncLiveNs and
// LaunchLiveNs the time the windows were open.
func TestSampledSyncsTimedInWindowsOnly(t *testing.T) {
	requireRoot(t)
	bin, marker := buildWorkload(t)
	w := startWorkload(t, bin, marker, 3, false)
	pid := w.cmd.Process.Pid
	beforeStart := time.Now()
	tr, err := Start(Options{PID: pid, Logf: t.Logf, Sample: window, Sampled: ClassLaunch | ClassSync})
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	defer tr.Close()
	stop := runTracer(t, tr)
	fmt.Fprintln(w.stdin, "go") // steps 1-3: window 1
	w.expect(t, "done")
	close1, closed1 := timed(toggle(tr))
	fmt.Fprintln(w.stdin, "steps 3") // steps 4-6: between windows
	w.expect(t, "done")
	open2, opened2 := timed(toggle(tr))
	fmt.Fprintln(w.stdin, "steps 3") // steps 7-9: window 2
	w.expect(t, "done")
	fmt.Fprintln(w.stdin, "hold") // step 10 begins in window 2...
	w.expect(t, "holding")
	close2, closed2 := timed(toggle(tr))
	fmt.Fprintln(w.stdin, "release") // ...and synchronizes after it
	w.expect(t, "released")
	fmt.Fprintln(w.stdin, "hold") // step 11 begins between windows...
	w.expect(t, "holding")
	open3, opened3 := timed(toggle(tr))
	fmt.Fprintln(w.stdin, "release") // ...and synchronizes in window 3
	w.expect(t, "released")
	time.Sleep(200 * time.Millisecond) // the records are polled
	var got []analysis.Step
	end, ended := timed(func() { got = stop() })
	act := activityOf(t, tr, pid)

	if len(got) != 11 {
		t.Fatalf("%d steps, want 11: %v", len(got), stepIDs(got))
	}
	for _, s := range got {
		dur := s.OutputReadyNs - s.BeginNs
		switch counted := s.StepID <= 3 || s.StepID >= 7 && s.StepID <= 9; {
		case counted && (s.SyncsUncounted || s.LaunchesUncounted || s.SyncWaitNs < graphNs/2 || s.SyncWaitNs > dur):
			t.Errorf("step %d (in a window): sync wait %d ns of %d, syncs uncounted %v, launches uncounted %v; want the graph's wait, both counted",
				s.StepID, s.SyncWaitNs, dur, s.SyncsUncounted, s.LaunchesUncounted)
		case !counted && (!s.SyncsUncounted || !s.LaunchesUncounted):
			t.Errorf("step %d (not wholly in a window): syncs uncounted %v, launches uncounted %v; want both uncounted",
				s.StepID, s.SyncsUncounted, s.LaunchesUncounted)
		case s.StepID == 11 && s.SyncWaitNs == 0:
			t.Errorf("step 11: no sync wait; its synchronization came in window 3, so it was timed, and still the step is uncounted")
		case !counted && s.StepID != 11 && s.SyncWaitNs != 0:
			t.Errorf("step %d: sync wait %d ns, want none: no synchronization probe was live", s.StepID, s.SyncWaitNs)
		}
	}
	// Steps 1-3, 7-9 and 11 synchronized in a window; 4-6 and 10 did not.
	if act.Syncs != 7 || act.SyncWaitNs < 6*graphNs/2 {
		t.Errorf("process totals: %d syncs, %d ns waited; want the 7 of the windows, at least 6 of them the graph's wait", act.Syncs, act.SyncWaitNs)
	}
	// Each window, measured from outside its toggles and from inside them.
	most := closed1.Sub(beforeStart) + closed2.Sub(open2) + ended.Sub(open3)
	least := close1.Sub(started) + close2.Sub(opened2) + end.Sub(opened3)
	if live := time.Duration(tr.SyncLiveNs()); live < least || live > most {
		t.Errorf("sync probes live %v, want between %v and %v (the three windows)", live, least, most)
	}
	if live := time.Duration(tr.LaunchLiveNs()); live < least || live > most {
		t.Errorf("launch probes live %v, want between %v and %v (the three windows)", live, least, most)
	}
}

// TestSyncCutByAWindowLeavesLaterSyncsTimed: a synchronization still
// blocking when its window closes has had its entry seen, and its return
// probe goes before it returns. The depth its entry left would otherwise
// keep every later synchronization of the thread from being timed, and a
// return that comes in a later window must not be timed from that old
// entry. Both cases are made on purpose (a 2 s synchronization, the window
// closed, or closed and opened again, while it blocks); the steps after
// them carry their waits, and the totals hold neither long call.
//
// The kernel hands a return to the return probes on the function when it
// comes, not to those there at the entry, as long as the function keeps
// any probe: another tool's probe on it keeps the return of the second
// case coming to the tracer's new return probe, which must ignore it.
func TestSyncCutByAWindowLeavesLaterSyncsTimed(t *testing.T) {
	requireRoot(t)
	bin, marker := buildWorkload(t)
	w := startWorkload(t, bin, marker, 1, false)
	pid := w.cmd.Process.Pid
	tr := startTracer(t, Options{PID: pid, Logf: t.Logf, Sample: window, Sampled: ClassSync})
	probeAlongside(t, tr, "cuStreamSynchronize")
	stop := runTracer(t, tr)
	fmt.Fprintln(w.stdin, "go") // step 1
	w.expect(t, "done")

	// The return comes between windows.
	fmt.Fprintln(w.stdin, "longsync 2000")
	w.expect(t, "syncing")
	entered := waitSyncEntered(t, tr, pid)
	tr.toggleSampled()
	w.expect(t, "synced")
	if ts := threadOf(t, tr, pid); ts.SyncDepth != 1 || ts.SyncEpoch != entered {
		t.Fatalf("after the long synchronization: depth %d, epoch %d; want 1 and %d, its return unseen: the case is not reproduced",
			ts.SyncDepth, ts.SyncEpoch, entered)
	}
	tr.toggleSampled()
	fmt.Fprintln(w.stdin, "steps 3") // steps 2-4
	w.expect(t, "done")

	// The return comes in the next window.
	fmt.Fprintln(w.stdin, "longsync 2000")
	w.expect(t, "syncing")
	entered = waitSyncEntered(t, tr, pid)
	tr.toggleSampled()
	tr.toggleSampled()
	w.expect(t, "synced")
	if ts := threadOf(t, tr, pid); ts.SyncEpoch != entered {
		t.Errorf("after the second long synchronization: thread epoch %d, want %d (its entry's): its return was taken in a later window", ts.SyncEpoch, entered)
	}
	fmt.Fprintln(w.stdin, "steps 3") // steps 5-7
	w.expect(t, "done")
	time.Sleep(200 * time.Millisecond)
	got := stop()
	act := activityOf(t, tr, pid)

	if len(got) != 7 {
		t.Fatalf("%d steps, want 7: %v", len(got), stepIDs(got))
	}
	for _, s := range got {
		if dur := s.OutputReadyNs - s.BeginNs; s.SyncsUncounted || s.SyncWaitNs < graphNs/2 || s.SyncWaitNs > dur {
			t.Errorf("step %d: sync wait %d ns of a %d ns step, uncounted %v; want the graph's wait, counted", s.StepID, s.SyncWaitNs, dur, s.SyncsUncounted)
		}
	}
	if act.Syncs != 7 || act.SyncWaitNs > uint64(time.Second) {
		t.Errorf("process totals: %d syncs, %v waited; want the steps' 7 and their few ms, without the long calls",
			act.Syncs, time.Duration(act.SyncWaitNs))
	}
}

// probeAlongside puts a probe that does nothing on the traced driver's
// function sym for the rest of the test, as another tool would.
func probeAlongside(t *testing.T, tr *Tracer, sym string) {
	t.Helper()
	for _, lib := range tr.Libraries() {
		if lib.Kind != LibDriver {
			continue
		}
		// Without a PID: on every process mapping the file.
		ex, err := link.OpenExecutable(lib.Path)
		if err != nil {
			t.Fatal(err)
		}
		offsets := lib.offsets
		l, err := ex.UprobeMulti(nil, emptyProgram(t), &link.UprobeMultiOptions{Addresses: []uint64{offsets[sym]}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return
	}
	t.Fatal("no driver probed")
}

// waitSyncEntered waits until process pid's main thread is inside a timed
// synchronization (its entry seen in the current epoch) and returns that
// epoch.
func waitSyncEntered(t *testing.T, tr *Tracer, pid int) uint32 {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		tr.mu.Lock()
		epoch := tr.syncs.n
		tr.mu.Unlock()
		if ts := threadOf(t, tr, pid); ts.SyncDepth == 1 && ts.SyncEpoch == epoch {
			return epoch
		}
	}
	t.Fatal("the long synchronization's entry was not seen")
	return 0
}

// threadOf is the programs' state of thread tid (a process's main thread:
// its pid).
func threadOf(t *testing.T, tr *Tracer, tid int) profilemateThreadState {
	t.Helper()
	var ts profilemateThreadState
	if err := tr.objs.Threads.Lookup(uint32(tid), &ts); err != nil {
		t.Fatalf("thread %d: %v", tid, err)
	}
	return ts
}

// activityOf is the CUDA activity of process pid.
func activityOf(t *testing.T, tr *Tracer, pid int) analysis.ProcessActivity {
	t.Helper()
	for _, a := range tr.Activity() {
		if a.PID == uint32(pid) {
			return a
		}
	}
	t.Fatalf("no activity of pid %d", pid)
	return analysis.ProcessActivity{}
}
