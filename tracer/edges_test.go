package tracer

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/profilemate/profilemate-bpf/analysis"
)

// collected is a Sink that keeps what it is handed.
type collected struct {
	mu     sync.Mutex
	steps  []analysis.Step
	scheds []analysis.Sched
}

func (c *collected) Step(s analysis.Step) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.steps = append(c.steps, s)
}

func (c *collected) Sched(s analysis.Sched) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scheds = append(c.scheds, s)
}

// runTracer runs tr until stop is called and returns the steps it emitted.
func runTracer(t *testing.T, tr *Tracer) (stop func() []analysis.Step) {
	t.Helper()
	stopAll := runCollecting(t, tr)
	return func() []analysis.Step { return stopAll().steps }
}

// startTracer starts a tracer with opts, failing the test where it cannot,
// and closes it when the test ends.
func startTracer(t *testing.T, opts Options) *Tracer {
	t.Helper()
	tr, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// runCollecting runs tr until stop is called and returns every record it
// emitted.
func runCollecting(t testing.TB, tr *Tracer) (stop func() *collected) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	got := &collected{}
	runErr := make(chan error, 1)
	go func() { runErr <- tr.Run(ctx, got) }()
	return func() *collected {
		cancel()
		if err := <-runErr; err != nil {
			t.Fatal(err)
		}
		return got
	}
}

// TestStepsBegunBeforeCUDAProbesAreLeftOut: steps that begin while the
// marker is probed but the CUDA libraries are not yet (the attach order of a
// trace's first moments) would be written with launch counts short; they
// are left out and counted instead, and the steps after every CUDA probe
// went live are written whole.
func TestStepsBegunBeforeCUDAProbesAreLeftOut(t *testing.T) {
	requireRoot(t)
	bin, marker := buildWorkload(t)
	const early, later = 5, 5
	w := startWorkload(t, bin, marker, early, false)
	var markerProbed, ran bool
	probeHook = func(kind LibKind) {
		switch {
		case kind == LibMarker:
			markerProbed = true
		case markerProbed && !ran:
			// The marker's probes are live, no CUDA probe is yet.
			ran = true
			fmt.Fprintln(w.stdin, "go")
			w.expect(t, "done")
		}
	}
	t.Cleanup(func() { probeHook = nil })
	tr := startTracer(t, Options{PID: w.cmd.Process.Pid, Logf: t.Logf})
	probeHook = nil
	if !ran {
		// /proc/PID/maps lists the marker (dlopen'ed last, at the lowest
		// address) before the CUDA libraries the workload links.
		t.Fatal("the CUDA libraries were probed before the marker: the case is not reproduced")
	}
	stop := runTracer(t, tr)
	fmt.Fprintf(w.stdin, "steps %d\n", later)
	w.expect(t, "done")
	got := stop()

	ids := map[uint64]bool{}
	for _, s := range got {
		ids[s.StepID] = true
		if s.StepID <= early {
			t.Errorf("step %d began before the CUDA probes were live, yet was written: %d launches, %d graphs of %d and 1",
				s.StepID, s.Launches, s.GraphLaunches, wantLaunches)
		}
	}
	var whole []analysis.Step
	for _, s := range got {
		if s.StepID > early {
			whole = append(whole, s)
		}
	}
	checkStepRange(t, whole, uint32(w.cmd.Process.Pid), early+1, early+later)
	if n := tr.StepsBeforeProbes(); n != early {
		t.Errorf("%d steps counted as begun before the probes, want %d", n, early)
	}
}

// checkStepRange is checkSteps for step ids first..last.
func checkStepRange(t *testing.T, got []analysis.Step, pid uint32, first, last int) {
	t.Helper()
	seen := map[uint64]int{}
	for _, s := range got {
		seen[s.StepID]++
		if s.PID != pid || s.Launches != wantLaunches || s.GraphLaunches != 1 || s.OutputReadyNs == 0 || s.OpenAtEnd {
			t.Errorf("step %d: %+v, want pid %d, %d launches, 1 graph, finished", s.StepID, s, pid, wantLaunches)
		}
	}
	for i := first; i <= last; i++ {
		if seen[uint64(i)] != 1 {
			t.Errorf("step %d recorded %d times, want once", i, seen[uint64(i)])
		}
	}
}

// TestStepOpenAtEndIsWritten: a step still running when the trace ends (a
// long prefill past forward_end) is handed over with the points that came
// and its counts, marked open at the end, instead of being dropped. With a
// marker that has step_end the points in between come only with the end
// (an older one's forward_end would have come: TestTraceOldMarker's marker).
func TestStepOpenAtEndIsWritten(t *testing.T) {
	requireRoot(t)
	bin, marker := buildWorkload(t)
	w := startWorkload(t, bin, marker, 3, false)
	tr := startTracer(t, Options{PID: w.cmd.Process.Pid, Logf: t.Logf})
	stop := runTracer(t, tr)
	fmt.Fprintln(w.stdin, "go")
	w.expect(t, "done")
	fmt.Fprintln(w.stdin, "hold")
	w.expect(t, "holding")
	time.Sleep(100 * time.Millisecond) // step 4 has run for a while
	got := stop()
	fmt.Fprintln(w.stdin, "release")
	w.expect(t, "released")

	var finished []analysis.Step
	var open *analysis.Step
	for i, s := range got {
		if s.StepID == 4 {
			open = &got[i]
		} else {
			finished = append(finished, s)
		}
	}
	checkStepRange(t, finished, uint32(w.cmd.Process.Pid), 1, 3)
	if open == nil {
		t.Fatalf("the step open when the trace ended was dropped; got steps %v", stepIDs(got))
	}
	if !open.OpenAtEnd || open.BeginNs == 0 || open.ForwardEndNs != 0 || open.SampleEndNs != 0 || open.OutputReadyNs != 0 ||
		open.Launches != wantLaunches || open.GraphLaunches != 1 || open.NumTokens != 130 ||
		open.LaunchesUncounted || open.SyncsUncounted {
		t.Errorf("open step: %+v; want it marked open at the end, begun and no later point, %d launches, 1 graph, 130 tokens, launches and syncs counted up to the end",
			*open, wantLaunches)
	}
	if got[len(got)-1].StepID != 4 {
		t.Errorf("steps %v: the open step should come after the finished ones", stepIDs(got))
	}
}

func stepIDs(steps []analysis.Step) []uint64 {
	out := make([]uint64, len(steps))
	for i, s := range steps {
		out[i] = s.StepID
	}
	return out
}

// TestStepEndTimesOutsideTheStepAreDropped: step_end's times come from the
// traced process; one before the step began, in the future, or a sample_end
// before its forward_end is recorded as not known (0), and the step still
// ends with its own output_ready.
func TestStepEndTimesOutsideTheStepAreDropped(t *testing.T) {
	got, _, _ := traceWorkload(t, 6, "WORKLOAD_BAD_TIMES=1")
	if len(got) != 6 {
		t.Fatalf("%d steps, want 6", len(got))
	}
	for _, s := range got {
		wantForward := s.StepID%2 == 0 // the even steps' forward_end is good
		if (s.ForwardEndNs != 0) != wantForward || s.SampleEndNs != 0 || s.OutputReadyNs <= s.BeginNs {
			t.Errorf("step %d: forward_end %d, sample_end %d, output_ready %d (begin %d); want forward_end only in even steps, no sample_end",
				s.StepID, s.ForwardEndNs, s.SampleEndNs, s.OutputReadyNs, s.BeginNs)
		}
		if wantForward && (s.ForwardEndNs < s.BeginNs || s.ForwardEndNs > s.OutputReadyNs) {
			t.Errorf("step %d: forward_end %d outside [%d, %d]", s.StepID, s.ForwardEndNs, s.BeginNs, s.OutputReadyNs)
		}
	}
}
