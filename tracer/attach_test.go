package tracer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/profilemate/profilemate-bpf/analysis"
)

const (
	wantLaunches = 3 + 2 + 4 // runtime, runtime ExC, driver straight (workload.c)
	graphNs      = 2_000_000
)

// buildWorkload builds the simulated CUDA libraries, the marker library and
// testdata/workload.c linked against them.
func buildWorkload(t testing.TB) (bin, marker string) {
	t.Helper()
	marker = markerLib(t)
	repo, _ := filepath.Abs("..")
	build := buildSimLibs(t)
	sp := filepath.Join(build, "sim", "site-packages")
	rt, drv := filepath.Join(sp, "nvidia", "cu13", "lib"), filepath.Join(build, "sim", "driver")
	bin = filepath.Join(t.TempDir(), "workload")
	cmd := exec.Command("gcc", "-O1", "-o", bin, "testdata/workload.c",
		"-I"+filepath.Join(repo, "simserver", "csrc"),
		"-L"+rt, "-l:libcudart.so.13", "-L"+drv, "-l:libcuda.so.1", "-ldl", "-pthread",
		"-Wl,-rpath,"+rt+":"+drv)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build workload: %v\n%s", err, out)
	}
	return bin, marker
}

// buildSimLibs builds the simulated server's fake CUDA libraries into a
// fresh build folder, which it returns (the libraries under sim/).
func buildSimLibs(t testing.TB) string {
	t.Helper()
	repo, _ := filepath.Abs("..")
	build := filepath.Join(t.TempDir(), "build")
	if out, err := exec.Command("make", "-s", "-C", filepath.Join(repo, "simserver"), "libs", "BUILD="+build).CombinedOutput(); err != nil {
		t.Fatalf("make simserver libs: %v\n%s", err, out)
	}
	return build
}

type workload struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func startWorkload(t testing.TB, bin, marker string, steps int, fork bool, env ...string) *workload {
	t.Helper()
	f := "0"
	if fork {
		f = "1"
	}
	cmd := exec.Command(bin, marker, fmt.Sprint(steps), f)
	cmd.Env = append(os.Environ(), env...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	w := &workload{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	w.expect(t, "ready")
	return w
}

func (w *workload) expect(t testing.TB, prefix string) string {
	t.Helper()
	if !w.out.Scan() {
		t.Fatalf("workload ended before %q", prefix)
	}
	if l := w.out.Text(); strings.HasPrefix(l, prefix) {
		return l
	}
	t.Fatalf("workload said %q, want %q", w.out.Text(), prefix)
	return ""
}

// traceWorkload attaches to a running workload, lets it run its steps and
// returns what the tracer recorded, the workload's report line and its
// semaphore once the tracer closed. (That they also go back to 0 when the
// tracer process is killed is checked end to end in cmd/profilemate-bpf.)
func traceWorkload(t *testing.T, steps int, env ...string) (got []analysis.Step, done, after string) {
	return traceWorkloadWith(t, Options{}, steps, env...)
}

// traceWorkloadWith is traceWorkload with opts (PID and Logf are filled in).
func traceWorkloadWith(t *testing.T, opts Options, steps int, env ...string) (got []analysis.Step, done, after string) {
	requireRoot(t)
	bin, marker := buildWorkload(t)
	if len(env) > 0 && env[0] == lateMarker {
		// The in-tree marker, where PYTHONPATH=<repo>/marker finds it.
		env = append(env, "PYTHONPATH="+filepath.Dir(filepath.Dir(marker)))
	}
	w := startWorkload(t, bin, marker, steps, false, env...)
	opts.PID = w.cmd.Process.Pid
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	tr, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	stop := runTracer(t, tr)
	fmt.Fprintln(w.stdin, "go")
	done = w.expect(t, "done")
	got = stop()
	procs := tr.Processes()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("traced processes: %+v", procs)
	fmt.Fprintln(w.stdin, "semaphore?")
	return got, done, w.expect(t, "semaphore=")
}

func checkSteps(t *testing.T, got []analysis.Step, pid uint32, steps int) {
	t.Helper()
	seen := map[uint64]int{}
	var short []string
	for _, s := range got {
		if s.PID != pid {
			continue
		}
		seen[s.StepID]++
		dur := s.OutputReadyNs - s.BeginNs
		if s.Launches != wantLaunches || s.GraphLaunches != 1 || s.NumReqs != 4 || s.NumTokens != 130 ||
			s.NumPrefillReqs != 1 || s.NumPrefillTokens != 128 || s.OutputReadyNs == 0 ||
			s.SampleEndNs < s.ForwardEndNs || s.ForwardEndNs < s.BeginNs {
			t.Errorf("pid %d step %d: %+v", pid, s.StepID, s)
		}
		// The synchronization waits for the graph's 2 ms of queued work,
		// less the host time between the graph launch and the sync: a
		// step's first probe hits or a preemption there shorten one wait.
		if s.SyncWaitNs > dur || dur < graphNs {
			t.Errorf("pid %d step %d: sync wait %d ns of a %d ns step", pid, s.StepID, s.SyncWaitNs, dur)
		}
		if s.SyncWaitNs < graphNs*9/10 {
			short = append(short, fmt.Sprintf("step %d: %d ns", s.StepID, s.SyncWaitNs))
		}
	}
	if len(short) > 1 {
		t.Errorf("pid %d: sync waits under 90%% of the graph's %d ns in %d steps, want 1 at most: %v", pid, graphNs, len(short), short)
	}
	for i := 1; i <= steps; i++ {
		if seen[uint64(i)] != 1 {
			t.Errorf("pid %d step %d recorded %d times, want once", pid, i, seen[uint64(i)])
		}
	}
}

// TestTraceCountsEachLaunchOnce: launches through the runtime reach the
// driver's exported function too (the fake runtime calls it, as the real one
// does) and must count once; straight driver launches count once; the
// semaphore is raised while attached and lowered by Close.
func TestTraceCountsEachLaunchOnce(t *testing.T) {
	got, done, after := traceWorkload(t, 20)
	var child, maxSem int
	fmt.Sscanf(done, "done child=%d max_semaphore=%d", &child, &maxSem)
	if maxSem < 1 {
		t.Errorf("semaphore never raised while attached: %q", done)
	}
	if after != "semaphore=0" {
		t.Errorf("after Close: %q, want the semaphore back at 0", after)
	}
	if len(got) == 0 {
		t.Fatal("no steps recorded")
	}
	checkSteps(t, got, got[0].PID, 20)
}

// TestStepEndReplacesThreeProbes: on a marker with step_end the tracer
// probes step_begin, step_end and sched_step only, and every step still has
// its four points in order, the middle two from step_end's arguments.
func TestStepEndReplacesThreeProbes(t *testing.T) {
	got, logs := traceWorkloadLogged(t, 5)
	// 3 probes: step_begin, step_end, sched_step.
	checkLines(t, "marker", logs, "marker ", "", ": 3 probes attached")
	if len(got) != 5 {
		t.Fatalf("%d steps, want 5", len(got))
	}
	for _, s := range got {
		if !(s.BeginNs < s.ForwardEndNs && s.ForwardEndNs <= s.SampleEndNs && s.SampleEndNs < s.OutputReadyNs) {
			t.Errorf("step %d: points %d %d %d %d, want all four, in order", s.StepID,
				s.BeginNs, s.ForwardEndNs, s.SampleEndNs, s.OutputReadyNs)
		}
	}
}

const lateMarker = "WORKLOAD_LATE_MARKER=1"

// TestTraceMarkerLoadedAfterAttach: a process that loads the marker after
// the tracer attached, and fires its first step at once, is traced from that
// step: the tracer probed the marker where the process's Python would import
// it from (its PYTHONPATH) before the process mapped it, rather than when the
// next rescan of its maps finds it. The kernel raises the semaphore as the
// process maps the library.
func TestTraceMarkerLoadedAfterAttach(t *testing.T) {
	got, done, after := traceWorkload(t, 10, lateMarker)
	var child, maxSem int
	fmt.Sscanf(done, "done child=%d max_semaphore=%d", &child, &maxSem)
	if maxSem < 1 || after != "semaphore=0" {
		t.Errorf("semaphore: %q while attached, %q after Close; want raised, then 0", done, after)
	}
	if len(got) == 0 {
		t.Fatal("no steps recorded")
	}
	checkSteps(t, got, got[0].PID, 10)
}

// BenchmarkProbedLaunchCost prints what a probe adds to one launch call, as
// the difference between the same loop of launches untraced and traced, run
// in one invocation: through the runtime (runtime and driver probes both
// fire) and straight through the driver (one probe).
func BenchmarkProbedLaunchCost(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	bin, marker := buildWorkload(b)
	const n = 200000
	measure := func(traced bool) (rt, drv float64) {
		w := startWorkload(b, bin, marker, 0, false)
		var tr *Tracer
		if traced {
			var err error
			if tr, err = Start(Options{PID: w.cmd.Process.Pid}); err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
		}
		fmt.Fprintln(w.stdin, n)
		fmt.Sscanf(w.expect(b, "done"), "done runtime_ns=%f driver_ns=%f", &rt, &drv)
		return rt, drv
	}
	for i := 0; i < b.N; i++ {
		rt0, drv0 := measure(false)
		rt1, drv1 := measure(true)
		rt2, drv2 := measure(false)
		base := func(a, c float64) float64 { return (a + c) / 2 }
		b.Logf("runtime launch: %.0f ns untraced, %.0f ns traced: +%.2f us per launch (x%.1f)",
			base(rt0, rt2), rt1, (rt1-base(rt0, rt2))/1000, rt1/base(rt0, rt2))
		b.Logf("driver launch:  %.0f ns untraced, %.0f ns traced: +%.2f us per launch (x%.1f)",
			base(drv0, drv2), drv1, (drv1-base(drv0, drv2))/1000, drv1/base(drv0, drv2))
	}
}

// TestRuntimeLaunchesWhereDriverCannotBeProbed: when no launch function of
// the driver can be probed, launches are counted at the runtime instead.
// Straight driver launches are then invisible, which the count shows.
func TestRuntimeLaunchesWhereDriverCannotBeProbed(t *testing.T) {
	saved := driverProbes
	t.Cleanup(func() { driverProbes = saved })
	driverProbes = append([]probeSet(nil), saved...)
	for i, set := range driverProbes {
		if set.prog == "drv_launch" {
			driverProbes[i].symbols = []string{"cuLaunchKernel_not_exported"}
		}
	}
	got, _, _ := traceWorkload(t, 5)
	if len(got) != 5 {
		t.Fatalf("%d steps, want 5", len(got))
	}
	for _, s := range got {
		if s.Launches != 3+2 || s.GraphLaunches != 1 {
			t.Errorf("step %d: %d launches, %d graphs; want the 5 runtime launches and 1 graph", s.StepID, s.Launches, s.GraphLaunches)
		}
	}
}

// TestRuntimeCountsWhatTheDriverCannot: with every function probed where
// it can be, the runtime carries no probe (the driver counts all its calls);
// a driver whose graph-launch and synchronization functions cannot be
// probed has them counted at the runtime instead, and the steps still get
// their graph and their 2 ms of waiting.
func TestRuntimeCountsWhatTheDriverCannot(t *testing.T) {
	saved := driverProbes
	t.Cleanup(func() { driverProbes = saved })
	for _, refuse := range []bool{false, true} {
		driverProbes = append([]probeSet(nil), saved...)
		if refuse {
			for i, set := range driverProbes {
				if set.prog == "drv_graph_launch" || set.prog == "sync_enter" {
					driverProbes[i].symbols = []string{"cuGraphLaunch_not_exported"}
				}
			}
		}
		got, logs := traceWorkloadLogged(t, 5)
		if len(got) != 5 {
			t.Fatalf("refused %v: %d steps, want 5", refuse, len(got))
		}
		for _, s := range got {
			if s.Launches != wantLaunches || s.GraphLaunches != 1 || s.SyncWaitNs < graphNs/2 {
				t.Errorf("refused %v: step %d: %d launches, %d graphs, sync wait %d ns; want %d, 1 and the graph's wait",
					refuse, s.StepID, s.Launches, s.GraphLaunches, s.SyncWaitNs, wantLaunches)
			}
		}
		// The runtime is probed only for what the driver cannot count.
		wantRuntime := "not probed, the driver counts its calls"
		if refuse {
			wantRuntime = "10 probes attached" // 2 graph launches, 4 syncs with their returns
		}
		checkLines(t, fmt.Sprintf("refused %v", refuse), logs, "CUDA runtime", "libcudart.so.13", wantRuntime)
	}
}

// traceWorkloadLogged is traceWorkload with the tracer's log lines, which
// it also passes to t.Logf.
func traceWorkloadLogged(t *testing.T, steps int) (got []analysis.Step, logs []string) {
	got, _, _ = traceWorkloadWith(t, Options{Logf: func(f string, a ...any) {
		logs = append(logs, fmt.Sprintf(f, a...))
		t.Logf(f, a...)
	}}, steps)
	return got, logs
}

// checkLines checks that some line of logs starts with prefix and holds
// about, and that every such line holds want; what names the case.
func checkLines(t *testing.T, what string, logs []string, prefix, about, want string) {
	t.Helper()
	found := false
	for _, l := range logs {
		if strings.HasPrefix(l, prefix) && strings.Contains(l, about) {
			found = true
			if !strings.Contains(l, want) {
				t.Errorf("%s: %q, want %q", what, l, want)
			}
		}
	}
	if !found {
		t.Errorf("%s: no line %q... in %q", what, prefix, logs)
	}
}

// TestTraceWithoutLaunchProbes: with ClassLaunch left out no kernel launch is
// counted, through the runtime or the driver, while steps, graph launches and
// synchronization are traced as usual.
func TestTraceWithoutLaunchProbes(t *testing.T) {
	got, _, after := traceWorkloadWith(t, Options{LeaveOut: ClassLaunch}, 5)
	if after != "semaphore=0" {
		t.Errorf("after Close: %q, want the semaphore back at 0", after)
	}
	if len(got) != 5 {
		t.Fatalf("%d steps, want 5", len(got))
	}
	for _, s := range got {
		if s.Launches != 0 || s.GraphLaunches != 1 || s.OutputReadyNs == 0 || s.SyncWaitNs < graphNs/2 {
			t.Errorf("step %d: %d launches, %d graphs, sync wait %d ns; want 0, 1 and the graph's wait: %+v",
				s.StepID, s.Launches, s.GraphLaunches, s.SyncWaitNs, s)
		}
	}
}

func TestProbeOffset(t *testing.T) {
	for _, c := range []struct {
		name  string
		code  []byte
		shift uint64
	}{
		{"endbr64; push %rbp", []byte{0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48}, 4},
		{"endbr64; push %r15", []byte{0xf3, 0x0f, 0x1e, 0xfa, 0x41, 0x57}, 4},
		{"endbr64; lock addq (single-stepped either way)", []byte{0xf3, 0x0f, 0x1e, 0xfa, 0xf0, 0x48}, 0},
		{"endbr64; mov", []byte{0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x89}, 0},
		{"push %rbp, no endbr64", []byte{0x55, 0x48, 0x89, 0xe5, 0x41, 0x57}, 0},
		{"endbr64 at the end of the file", []byte{0xf3, 0x0f, 0x1e, 0xfa}, 0},
	} {
		// The function at file offset 3, after some other bytes.
		code := append([]byte{0xcc, 0xcc, 0xcc}, c.code...)
		if got := probeOffset(bytes.NewReader(code), 3); got != 3+c.shift {
			t.Errorf("%s: probe at %d, want %d", c.name, got, 3+c.shift)
		}
	}
}

// TestSimCUDAStartsLikeTheRealOne: every function the tracer probes in the
// real libcuda.so.580 and libcudart.so.13 starts with push %rbp; mov
// %rsp,%rbp (read on the H200: gpu/results/README.md), which the kernel
// emulates under a probe. The simulated driver and both copies of the
// simulated runtime must start with that push too, or the tests and the
// simulator's cost figures would time a single-stepped probe instead.
func TestSimCUDAStartsLikeTheRealOne(t *testing.T) {
	build := buildSimLibs(t)
	sp := filepath.Join(build, "sim", "site-packages")
	for _, lib := range []struct {
		path string
		sets []probeSet
	}{
		{filepath.Join(build, "sim", "driver", "libcuda.so.1"), driverProbes},
		{filepath.Join(sp, "nvidia", "cu13", "lib", "libcudart.so.13"), runtimeProbes},
		{filepath.Join(sp, "torchvision.libs", "libcudart.faf08d9a.so.13"), runtimeProbes},
	} {
		offsets, err := symbolOffsets(lib.path)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(lib.path)
		if err != nil {
			t.Fatal(err)
		}
		for _, set := range lib.sets {
			for _, sym := range set.symbols {
				off, ok := offsets[sym]
				if !ok {
					t.Errorf("%s: %s not exported", lib.path, sym)
					continue
				}
				if got := raw[off]; got != 0x55 {
					t.Errorf("%s: %s starts with %#x, want push %%rbp (0x55)", lib.path, sym, got)
				}
			}
		}
	}
}

// TestTraceLeavingOutProbeClasses: each class left out is really not
// attached, and the others still count (the cost breakdown of the real-vLLM
// validation rests on this).
func TestTraceLeavingOutProbeClasses(t *testing.T) {
	got, _, _ := traceWorkloadWith(t, Options{LeaveOut: ClassSync | ClassGraph | ClassFork | ClassRescan}, 5)
	if len(got) != 5 {
		t.Fatalf("%d steps, want 5", len(got))
	}
	for _, s := range got {
		if s.Launches != wantLaunches || s.GraphLaunches != 0 || s.SyncWaitNs != 0 {
			t.Errorf("step %d: %d launches, %d graphs, sync wait %d ns; want %d, 0 and 0: %+v",
				s.StepID, s.Launches, s.GraphLaunches, s.SyncWaitNs, wantLaunches, s)
		}
	}
	got, _, after := traceWorkloadWith(t, Options{LeaveOut: ClassMarker}, 5)
	if len(got) != 0 || after != "semaphore=0" {
		t.Errorf("marker left out: %d steps, %q; want none, and the semaphore never raised", len(got), after)
	}
}

// TestTraceSampledLaunches: steps run while the launch probes are live carry
// exact counts; steps run between sampling windows are marked uncounted and
// cost no launch probe at all (their count stays 0); the probes come back.
// The synchronizations, not sampled here, are timed in every step.
func TestTraceSampledLaunches(t *testing.T) {
	requireRoot(t)
	bin, marker := buildWorkload(t)
	w := startWorkload(t, bin, marker, 3, false)
	tr, err := Start(Options{PID: w.cmd.Process.Pid, Logf: t.Logf, Sample: Sampling{On: time.Hour, Every: 2 * time.Hour}, Sampled: ClassLaunch})
	if err != nil {
		t.Fatal(err)
	}
	stop := runTracer(t, tr)
	fmt.Fprintln(w.stdin, "go") // steps 1-3, probes live
	w.expect(t, "done")
	tr.toggleSampled()               // window ends
	fmt.Fprintln(w.stdin, "steps 3") // steps 4-6
	w.expect(t, "done")
	tr.toggleSampled()               // the next window
	fmt.Fprintln(w.stdin, "steps 3") // steps 7-9
	w.expect(t, "done")
	time.Sleep(200 * time.Millisecond)
	got := stop()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 9 {
		t.Fatalf("%d steps, want 9", len(got))
	}
	for _, s := range got {
		sampled := s.StepID <= 3 || s.StepID >= 7
		if sampled && (s.LaunchesUncounted || s.Launches != wantLaunches) ||
			!sampled && (!s.LaunchesUncounted || s.Launches != 0) || s.GraphLaunches != 1 {
			t.Errorf("step %d: launches %d, uncounted %v, graphs %d; sampled %v", s.StepID, s.Launches, s.LaunchesUncounted, s.GraphLaunches, sampled)
		}
		if s.SyncsUncounted || s.SyncWaitNs < graphNs/2 {
			t.Errorf("step %d: sync wait %d ns, uncounted %v; want the graph's wait, counted (syncs are not sampled)", s.StepID, s.SyncWaitNs, s.SyncsUncounted)
		}
	}
}
