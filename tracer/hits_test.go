package tracer

import (
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// hitsPerStep runs n steps of w and returns how many times each of the
// tracer's CUDA and marker programs ran, per step. Each run is a probe hit
// on the workload's thread: the cost the kernel's trap path charges a
// server (issue 11), so a count, unlike a time, can be asserted exactly.
func hitsPerStep(t *testing.T, tr *Tracer, w *workload, n int) map[string]float64 {
	t.Helper()
	progs := map[string]*ebpf.Program{
		"step_begin": tr.objs.UsdtStepBegin, "step_end": tr.objs.UsdtStepEnd,
		"launch": tr.objs.DrvLaunch, "graph": tr.objs.DrvGraphLaunch,
		"sync_enter": tr.objs.SyncEnter, "sync_exit": tr.objs.SyncExit,
	}
	runs := func() map[string]uint64 {
		out := map[string]uint64{}
		for name, p := range progs {
			st, err := p.Stats()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			out[name] = st.RunCount
		}
		return out
	}
	before := runs()
	fmt.Fprintf(w.stdin, "steps %d\n", n)
	w.expect(t, "done")
	after := runs()
	per := map[string]float64{}
	for name := range progs {
		per[name] = float64(after[name]-before[name]) / float64(n)
	}
	return per
}

// wholeStepHits are the program runs of one workload step with every probe
// live: 9 launches, a graph launch, a synchronization's entry and return,
// step_begin and step_end (hitsPerStep's names).
var wholeStepHits = map[string]float64{"step_begin": 1, "step_end": 1, "launch": wantLaunches, "graph": 1, "sync_enter": 1, "sync_exit": 1}

// enableRunCounts turns the kernel's eBPF run counts on for the test
// (hitsPerStep reads them); they cost each program run a clock read.
func enableRunCounts(t *testing.T) {
	t.Helper()
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enable the kernel's eBPF run counts: %v", err)
	}
	t.Cleanup(func() { stats.Close() })
}

// TestSampledProbesDoNotFireBetweenWindows: between sampling windows the
// launch and synchronization probes are gone, not merely ignored by their
// programs, so a step pays only the marker's and the graph launch's hits:
// 3 of the 14 a workload step makes in a window (9 launches, a graph
// launch, a synchronization's entry and return, step_begin, step_end).
// Should a change leave a sampled class attached all the time, its hits
// come back here.
func TestSampledProbesDoNotFireBetweenWindows(t *testing.T) {
	requireRoot(t)
	enableRunCounts(t)
	bin, marker := buildWorkload(t)
	w := startWorkload(t, bin, marker, 1, false)
	tr := startTracer(t, Options{PID: w.cmd.Process.Pid, Logf: t.Logf, Sample: window, Sampled: ClassLaunch | ClassSync})
	stop := runTracer(t, tr)
	defer stop()
	fmt.Fprintln(w.stdin, "go")
	w.expect(t, "done")

	between := map[string]float64{"step_begin": 1, "step_end": 1, "launch": 0, "graph": 1, "sync_enter": 0, "sync_exit": 0}
	for _, phase := range []struct {
		name string
		want map[string]float64
	}{{"in the first window", wholeStepHits}, {"between windows", between}, {"in the next window", wholeStepHits}} {
		if phase.name != "in the first window" {
			tr.toggleSampled()
		}
		got := hitsPerStep(t, tr, w, 20)
		for name, want := range phase.want {
			if got[name] != want {
				t.Errorf("%s: %s ran %.2f times a step, want %v", phase.name, name, got[name], want)
			}
		}
	}
}
