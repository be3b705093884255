package tracer

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/profilemate/profilemate-bpf/analysis"
)

// fixtureMarker builds testdata/marker_fixture.c as a marker library (the
// name the tracer recognizes), old: the version without sched_step and with
// a 5-argument step_begin.
func fixtureMarker(t testing.TB, old bool) string {
	t.Helper()
	lib := filepath.Join(t.TempDir(), "libprofilemate_marker.so")
	args := []string{"-O2", "-fomit-frame-pointer", "-fPIC", "-shared", "-o", lib, "testdata/marker_fixture.c"}
	if old {
		args = append(args, "-DOLD_MARKER")
	}
	if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("build the fixture marker: %v\n%s", err, out)
	}
	return lib
}

// schedNonce is SCHED_NONCE of testdata/workload.c.
const schedNonce = 0x5eed

// schedValues is what workload.c's "sched" steps pass to sched_step for
// step i (run_sched_step).
func schedValues(pid uint32, i uint64) analysis.Sched {
	n := int64(i)
	s := analysis.Sched{
		PID: pid, Key: schedNonce<<32 | i,
		KVUsagePermille: n * 37 % 1001, RunningReqs: n, WaitingReqs: n + 100, PreemptedReqs: n % 3,
		ScheduledTokens: 130, TokenBudget: 2048, ScheduledReqs: 4, MaxNumSeqs: 256,
		SpecProposed: 5, SpecAccepted: 3,
	}
	if i%2 == 1 {
		s.SpecProposed, s.SpecAccepted = -1, -1
	}
	return s
}

// traceSchedSteps runs the workload with marker: plain steps 1..plain (no
// sched_key), then "sched" steps plain+1..plain+sched, and returns what the
// tracer recorded and the marker library it probed.
func traceSchedSteps(t *testing.T, marker string, plain, sched int) (*collected, *Library, uint32) {
	requireRoot(t)
	bin, _ := buildWorkload(t)
	w := startWorkload(t, bin, marker, plain, false)
	tr, err := Start(Options{PID: w.cmd.Process.Pid, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	var lib *Library
	for _, l := range tr.Libraries() {
		if l.Kind == LibMarker {
			lib = l
		}
	}
	if lib == nil {
		t.Fatal("the marker was not probed")
	}
	stop := runCollecting(t, tr)
	fmt.Fprintln(w.stdin, "go")
	w.expect(t, "done")
	fmt.Fprintf(w.stdin, "sched %d\n", sched)
	w.expect(t, "done")
	time.Sleep(100 * time.Millisecond) // the last records reach the ring buffer reader
	got := stop()
	if dropped, invalid, err := tr.Lost(); err != nil || dropped+invalid > 0 {
		t.Errorf("lost records: %d dropped, %d invalid, %v", dropped, invalid, err)
	}
	return got, lib, uint32(w.cmd.Process.Pid)
}

// TestTraceSchedSteps: a marker with the scheduler probe. Each sched_step
// call is one record with its 11 arguments read from every register the
// fixture pins them to; the steps stamped with a key carry it, the others 0.
func TestTraceSchedSteps(t *testing.T) {
	const plain, sched = 3, 6
	got, lib, pid := traceSchedSteps(t, fixtureMarker(t, false), plain, sched)
	if slices.Contains(lib.Missing, ProbeSchedStep) || len(lib.Failed) > 0 {
		t.Errorf("marker probes missing %v, failed %v", lib.Missing, lib.Failed)
	}
	checkSteps(t, got.steps, pid, plain+sched)
	for _, s := range got.steps {
		want := uint64(0)
		if s.StepID > plain {
			want = schedNonce<<32 | s.StepID
		}
		if s.SchedKey != want {
			t.Errorf("step %d: sched_key %#x, want %#x", s.StepID, s.SchedKey, want)
		}
	}
	if len(got.scheds) != sched {
		t.Fatalf("%d sched records, want %d: %+v", len(got.scheds), sched, got.scheds)
	}
	var last uint64
	for k, s := range got.scheds {
		want := schedValues(pid, uint64(plain+1+k))
		want.TimeNs = s.TimeNs
		if s != want {
			t.Errorf("sched record %d:\n got %+v\nwant %+v", k, s, want)
		}
		if s.TimeNs <= last {
			t.Errorf("sched record %d at %d ns, not after the previous one (%d)", k, s.TimeNs, last)
		}
		last = s.TimeNs
	}
	// Each comes after its step's output, as EngineCore fires it.
	for _, s := range got.steps {
		if s.SchedKey == 0 {
			continue
		}
		i := slices.IndexFunc(got.scheds, func(r analysis.Sched) bool { return r.Key == s.SchedKey })
		if i < 0 || got.scheds[i].TimeNs < s.OutputReadyNs {
			t.Errorf("step %d: its sched record is missing or before its output", s.StepID)
		}
	}
}

// TestTraceOldMarker: a marker from before the scheduler probe, whose
// step_begin has 5 arguments. The workload passes a key in the sixth
// argument register anyway; the note says there is none, so the steps carry
// key 0, and the marker lacks sched_step without the trace failing.
func TestTraceOldMarker(t *testing.T) {
	const plain, sched = 2, 4
	got, lib, pid := traceSchedSteps(t, fixtureMarker(t, true), plain, sched)
	if !slices.Contains(lib.Missing, ProbeSchedStep) {
		t.Errorf("missing %v, want %s listed", lib.Missing, ProbeSchedStep)
	}
	checkSteps(t, got.steps, pid, plain+sched)
	for _, s := range got.steps {
		if s.SchedKey != 0 {
			t.Errorf("step %d: sched_key %#x from a 5-argument step_begin", s.StepID, s.SchedKey)
		}
	}
	if len(got.scheds) != 0 {
		t.Errorf("sched records from a marker without sched_step: %+v", got.scheds)
	}
}

// BenchmarkProbedStepCost prints what the marker's probes cost a step when
// traced, against the same calls untraced (NOPs): step_begin (with its
// sched_key) and step_end for the marker, the four probes of a step for one
// without step_end and an older one (5-argument step_begin), and one
// sched_step.
func BenchmarkProbedStepCost(b *testing.B) {
	requireRoot(b)
	bin, current := buildWorkload(b)
	const n = 200000 // launches; a tenth as many steps and sched_steps
	for _, v := range []struct {
		name   string
		marker string
		old    bool
	}{
		{"marker (step_begin, step_end)", current, false},
		{"marker without step_end (4 probes)", fixtureMarker(b, false), false},
		{"older marker (4 probes)", fixtureMarker(b, true), true},
	} {
		marker := v.marker
		measure := func(traced bool) (step, sched float64) {
			w := startWorkload(b, bin, marker, 0, false)
			if traced {
				tr, err := Start(Options{PID: w.cmd.Process.Pid})
				if err != nil {
					b.Fatal(err)
				}
				defer tr.Close()
				// Read the records, as a trace does: the ring buffer
				// must not fill up and fail its reservations.
				defer runCollecting(b, tr)()
			}
			var rt, drv float64
			fmt.Fprintln(w.stdin, n)
			fmt.Sscanf(w.expect(b, "done"), "done runtime_ns=%f driver_ns=%f step_ns=%f sched_ns=%f", &rt, &drv, &step, &sched)
			return step, sched
		}
		for i := 0; i < b.N; i++ {
			s0, c0 := measure(false)
			s1, c1 := measure(true)
			s2, c2 := measure(false)
			b.Logf("%s: step %.0f ns untraced, %.0f ns traced: +%.2f us per step",
				v.name, (s0+s2)/2, s1, (s1-(s0+s2)/2)/1000)
			if !v.old {
				b.Logf("%s: sched_step %.0f ns untraced, %.0f ns traced: +%.2f us per scheduler step",
					v.name, (c0+c2)/2, c1, (c1-(c0+c2)/2)/1000)
			}
		}
	}
}
