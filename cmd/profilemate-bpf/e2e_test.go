package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/profilemate/profilemate-bpf/report/reporttest"
	"github.com/profilemate/profilemate-bpf/tracer"
)

// End-to-end: the built binary against the simulated vLLM server (simserver/),
// compared with the server's own record of every step it ran.

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("tracing needs root (CI runs these as root)")
	}
}

func repoRoot(t testing.TB) string {
	t.Helper()
	r, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// buildAll builds the binary and the simulated server (libraries, venv with
// the marker installed through its entry point).
// buildBinary builds the CLI into dir and returns its path.
func buildBinary(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "profilemate-bpf")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func buildAll(t testing.TB) (bin string) {
	t.Helper()
	repo := repoRoot(t)
	bin = buildBinary(t, t.TempDir())
	if out, err := exec.Command("make", "-s", "-C", filepath.Join(repo, "simserver")).CombinedOutput(); err != nil {
		t.Fatalf("make -C simserver: %v\n%s", err, out)
	}
	return bin
}

type server struct {
	cmd   *exec.Cmd
	truth string
}

func startServer(t testing.TB, args ...string) *server {
	t.Helper()
	truth := t.TempDir()
	cmd := exec.Command(filepath.Join(repoRoot(t), "simserver", "serve"), append(args, "--truth-dir", truth)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	return &server{cmd: cmd, truth: truth}
}

// waitReady waits until the server's workers have warmed up: its engine
// wrote server.json, or each data-parallel engine its server_dp<d>.json
// when files are named.
func (s *server) waitReady(t testing.TB, files ...string) {
	t.Helper()
	if len(files) == 0 {
		files = []string{"server.json"}
	}
	for _, f := range files {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(s.truth, f)); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("simulated server did not become ready (no %s)", f)
			}
		}
	}
}

type truthStep struct {
	pid, step               int
	begin, ready            int64
	outerBegin, outerReady  int64 // around the marker's probes: see simvllm/truth.py
	phase                   string
	batch, tokens           int
	launches, graphLaunches int
}

func readTruth(t testing.TB, dir string) []truthStep {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "truth_*.csv"))
	var out []truthStep
	for _, f := range files {
		for _, r := range readCSV(t, f) {
			n := func(k string) int64 { v, _ := strconv.ParseInt(r[k], 10, 64); return v }
			out = append(out, truthStep{pid: int(n("pid")), step: int(n("step")), begin: n("begin_ns"), ready: n("output_ready_ns"),
				outerBegin: n("outer_begin_ns"), outerReady: n("outer_ready_ns"),
				phase: r["phase"], batch: int(n("batch_size")), tokens: int(n("num_tokens")),
				launches: int(n("launches")), graphLaunches: int(n("graph_launches"))})
		}
	}
	return out
}

func readCSV(t testing.TB, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			m[h] = r[i]
		}
		out = append(out, m)
	}
	return out
}

// runTracer runs the binary, with flags added to --pid, --duration and --out,
// and returns its output directory and the trace window on the steps' clock.
func runTracer(t *testing.T, bin string, pid int, d time.Duration, flags ...string) (dir string, start, end int64) {
	dir, start, end, _ = runTracerOutput(t, bin, pid, d, flags...)
	return dir, start, end
}

// runTracerOutput is runTracer that also returns what the tracer printed.
func runTracerOutput(t *testing.T, bin string, pid int, d time.Duration, flags ...string) (dir string, start, end int64, output string) {
	t.Helper()
	dir = t.TempDir()
	start = monotonic()
	args := append([]string{"--pid", strconv.Itoa(pid), "--duration", d.String(), "--out", dir}, flags...)
	out, err := exec.Command(bin, args...).CombinedOutput()
	// The trace ran for d after the probes were in, then the tracer wrote
	// its files: start+d is inside the trace, the exit may be well after it.
	end = min(monotonic(), start+int64(d))
	t.Logf("profilemate-bpf:\n%s", out)
	if err != nil {
		t.Fatalf("profilemate-bpf: %v", err)
	}
	return dir, start, end, string(out)
}

func monotonic() int64 { return int64(monotonicNs()) }

// whollyInside says whether truth step s lies inside the part of the trace
// window [start, end] that compare checks: a second of margin after the
// start (the tracer picks up libraries of processes it has just found
// within that time) and half a second before the end.
func whollyInside(s truthStep, start, end int64) bool {
	return s.begin >= start+int64(time.Second) && s.ready <= end-int64(500*time.Millisecond)
}

// coverage is how many truth steps compare checked (inside) and how many
// of their rows carry a launch count and a sync wait (an empty cell is a
// step whose launches, or synchronizations, were not counted), and in how
// many rows one is there without the other.
type coverage struct{ inside, launches, syncs, apart int }

// compare checks every truth step wholly inside [start, end] against the CSV
// and returns what it found of the counts' coverage.
func compare(t *testing.T, truth []truthStep, rows []map[string]string, start, end int64, workers int) (c coverage) {
	t.Helper()
	type key struct{ pid, step int }
	got := map[key][]map[string]string{}
	for _, r := range rows {
		pid, _ := strconv.Atoi(r["pid"])
		step, _ := strconv.Atoi(r["step"])
		got[key{pid, step}] = append(got[key{pid, step}], r)
	}
	known := map[key]bool{}
	accurate, outside, pids := 0, 0, map[int]bool{}
	phases := map[string]int{}
	for _, s := range truth {
		k := key{s.pid, s.step}
		known[k] = true
		if !whollyInside(s, start, end) {
			continue
		}
		c.inside++
		pids[s.pid] = true
		phases[s.phase]++
		rs := got[k]
		if len(rs) != 1 {
			t.Errorf("pid %d step %d: %d rows, want 1", s.pid, s.step, len(rs))
			continue
		}
		r := rs[0]
		if r["sync_wait_ms"] != "" {
			c.syncs++
		}
		if (r["sync_wait_ms"] != "") != (r["launches"] != "") {
			c.apart++
		}
		if r["launches"] != "" {
			c.launches++
		} else {
			r["launches"] = strconv.Itoa(s.launches) // not counted, so not wrong
		}
		if r["phase"] != s.phase || r["batch_size"] != strconv.Itoa(s.batch) || r["num_tokens"] != strconv.Itoa(s.tokens) ||
			r["launches"] != strconv.Itoa(s.launches) || r["graph_launches"] != strconv.Itoa(s.graphLaunches) {
			t.Errorf("pid %d step %d: got %s/%s/%s/%s/%s, truth %+v", s.pid, s.step,
				r["phase"], r["batch_size"], r["num_tokens"], r["launches"], r["graph_launches"], s)
		}
		// The marker's step_begin fired between the worker's outer stamp
		// and the runner's begin, its output_ready between the output's
		// arrival and the worker's outer stamp: the duration lies between
		// the inner and the outer span, to the CSV's microsecond, however
		// long the threads waited for a core in between (a busy machine).
		d, _ := strconv.ParseFloat(r["duration_ms"], 64)
		want := float64(s.ready-s.begin) / 1e6
		if math.Abs(d-want) <= math.Max(0.05*want, 0.3) {
			accurate++
		}
		inner, outer := float64(s.ready-s.begin)/1e6, float64(s.outerReady-s.outerBegin)/1e6
		if d < inner-0.001 || d > outer+0.001 || s.outerBegin == 0 || s.outerReady == 0 {
			outside++
			if outside <= 5 {
				t.Errorf("pid %d step %d: duration %.3f ms, outside the %.3f-%.3f ms the server saw around the marker's probes",
					s.pid, s.step, d, inner, outer)
			}
		}
	}
	for k := range got {
		if !known[k] {
			t.Errorf("pid %d step %d traced but not in the truth (a warm-up or dummy run?)", k.pid, k.step)
		}
	}
	t.Logf("%d steps inside the window from %d processes, phases %v; %d (%.1f%%) within 5%% or 0.3 ms of the inner span; %d outside the spans; %d with launch counts, %d with sync waits",
		c.inside, len(pids), phases, accurate, 100*float64(accurate)/float64(max(c.inside, 1)), outside, c.launches, c.syncs)
	if c.inside < 100 || len(pids) != workers {
		t.Fatalf("only %d steps from %d workers inside the window", c.inside, len(pids))
	}
	for _, p := range []string{"prefill", "decode", "mixed"} {
		if phases[p] == 0 {
			t.Errorf("no %s steps in the window", p)
		}
	}
	if outside > 0 {
		t.Errorf("%d of %d steps have a duration outside the spans the server saw around the marker's probes, want none", outside, c.inside)
	}
	return c
}

// compareAllCounted is compare for a trace with --launches=all and
// --syncs=all: every row carries its launch count and its sync wait.
func compareAllCounted(t *testing.T, truth []truthStep, rows []map[string]string, start, end int64, workers int) {
	t.Helper()
	c := compare(t, truth, rows, start, end, workers)
	if c.launches != c.inside || c.syncs != c.inside {
		t.Errorf("of %d steps %d carry a launch count and %d a sync wait, want all under --launches=all --syncs=all", c.inside, c.launches, c.syncs)
	}
}

// allCounted are the flags under which compareAllCounted holds.
var allCounted = []string{"--launches=all", "--syncs=all"}

func TestEndToEndWorkersRunning(t *testing.T) {
	requireRoot(t)
	bin := buildAll(t)
	srv := startServer(t, "--workers", "2", "--runner", "mixed", "--duration", "30")
	srv.waitReady(t)
	dir, start, end, out := runTracerOutput(t, bin, srv.cmd.Process.Pid, 4*time.Second, allCounted...)
	time.Sleep(300 * time.Millisecond) // the truth file is written per step
	checkLaunchLine(t, out, "  kernel launches counted and GPU waits timed in every step (--launches=all, --syncs=all)")
	rows := readCSV(t, filepath.Join(dir, "forward_pass_timing.csv"))
	truth := readTruth(t, srv.truth)
	compareAllCounted(t, truth, rows, start, end, 2)
	var summary map[string]json.RawMessage
	b, _ := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err := json.Unmarshal(b, &summary); err != nil || summary["decode"] == nil || summary["_ranks"] == nil {
		t.Errorf("summary.json: %v %s", err, b)
	}
	checkTimestamps(t, summary["_trace"], truth, rows, start)
	checkPictures(t, dir, out, rows)
}

// checkLaunchLine: the line after the attach summary says how launches are
// counted and GPU waits timed; gpu/vllm_validate.py waits for the summary,
// then reads the sampling from this line to place its windows.
func checkLaunchLine(t *testing.T, out, want string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.Contains(l, " probes attached in ") {
			if i+1 >= len(lines) || lines[i+1] != want {
				t.Errorf("after %q: want %q, got %q", l, want, lines[min(i+1, len(lines)-1)])
			}
			return
		}
	}
	t.Errorf("no line with \" probes attached in \" in the tracer's output")
}

// checkTimestamps: _trace.start_monotonic_ns puts each row's timestamp_sec
// on the machine's monotonic clock, where it lies between the server's
// outer stamp of the step and the runner's begin, to the CSV's microsecond.
func checkTimestamps(t *testing.T, trace json.RawMessage, truth []truthStep, rows []map[string]string, start int64) {
	t.Helper()
	var tr struct {
		StartNs int64 `json:"start_monotonic_ns"`
	}
	if err := json.Unmarshal(trace, &tr); err != nil || tr.StartNs < start || tr.StartNs > start+int64(2*time.Second) {
		t.Fatalf("_trace.start_monotonic_ns %d: want the tracer's start, after %d (%v)", tr.StartNs, start, err)
	}
	type key struct{ pid, step int }
	byKey := map[key]truthStep{}
	for _, s := range truth {
		byKey[key{s.pid, s.step}] = s
	}
	checked := 0
	for _, r := range rows {
		pid, _ := strconv.Atoi(r["pid"])
		step, _ := strconv.Atoi(r["step"])
		s, ok := byKey[key{pid, step}]
		if !ok || s.outerBegin == 0 {
			continue
		}
		sec, _ := strconv.ParseFloat(r["timestamp_sec"], 64)
		at := tr.StartNs + int64(math.Round(sec*1e9))
		if at < s.outerBegin-int64(time.Microsecond) || at > s.begin+int64(time.Microsecond) {
			t.Errorf("pid %d step %d: timestamp_sec %s puts step_begin at %d, outside the server's %d-%d",
				pid, step, r["timestamp_sec"], at, s.outerBegin, s.begin)
		}
		checked++
	}
	if checked == 0 {
		t.Error("no row matched a step of the truth file")
	}
}

// checkPictures: by default a trace also writes the timeline, the plots and
// report.html, and the console names each; the timeline of the real trace
// keeps the format (async steps overlap here) and has every CSV row of each
// worker on the worker's track.
func checkPictures(t *testing.T, dir, out string, rows []map[string]string) {
	t.Helper()
	for _, f := range []string{"timeline.json", "report.html", "plot_step_duration.png", "plot_step_duration.svg",
		"plot_duration_distribution.png", "plot_duration_distribution.svg", "plot_rank_spread.png", "plot_rank_spread.svg"} {
		path := filepath.Join(dir, f)
		if st, err := os.Stat(path); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
		if !strings.Contains(out, path) {
			t.Errorf("the console does not name %s", path)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "timeline.json"))
	if err != nil {
		t.Fatal(err)
	}
	tl, err := reporttest.CheckTimeline(data)
	if err != nil {
		t.Fatalf("timeline.json: %v", err)
	}
	perPID := map[int64]int{}
	titles := map[int64]string{}
	for _, r := range rows {
		pid, _ := strconv.ParseInt(r["pid"], 10, 64)
		perPID[pid]++
		titles[pid] = r["process"]
	}
	for pid, n := range perPID {
		p := tl.Processes[pid]
		if p == nil || p.Name != titles[pid] || len(p.Steps) != n {
			t.Errorf("pid %d (%s, %d rows): track %+v", pid, titles[pid], n, p)
			continue
		}
		t.Logf("%s: %d steps on %d rows", p.Name, len(p.Steps), len(p.Rows))
	}
}

// TestEndToEndWithoutLaunchCounts: --launches=false on an eager server leaves
// every launches cell empty and says so in the summary, and times the steps
// as accurately as ever; GPU waits are still timed in the sampled seconds,
// the first of which starts with the trace.
func TestEndToEndWithoutLaunchCounts(t *testing.T) {
	requireRoot(t)
	bin := buildAll(t)
	srv := startServer(t, "--workers", "2", "--eager", "--duration", "30")
	srv.waitReady(t)
	// --format csv too: a user who wants only the numbers gets only them.
	dir, start, end, out := runTracerOutput(t, bin, srv.cmd.Process.Pid, 4*time.Second, "--launches=false", "--format", "csv")
	checkLaunchLine(t, out, "  kernel launches not counted (--launches=off); GPU waits timed 1s in every 10s (--syncs=all: every step)")
	if names, _ := filepath.Glob(filepath.Join(dir, "*")); len(names) != 2 {
		t.Errorf("--format csv wrote %v, want the CSV and summary.json alone", names)
	}
	time.Sleep(300 * time.Millisecond)
	truth := readTruth(t, srv.truth)
	rows := readCSV(t, filepath.Join(dir, "forward_pass_timing.csv"))
	synced := 0
	for _, r := range rows {
		if r["launches"] != "" {
			t.Fatalf("pid %s step %s: launches %q, want an empty cell", r["pid"], r["step"], r["launches"])
		}
		if r["sync_wait_ms"] != "" {
			synced++
		}
	}
	if synced == 0 || synced == len(rows) {
		t.Errorf("%d of %d rows carry a sync wait, want those of the trace's first second", synced, len(rows))
	}
	compare(t, truth, rows, start, end, 2)
	var summary struct {
		Trace struct {
			LaunchesProbed *bool `json:"launches_probed"`
			SyncsSampled   bool  `json:"syncs_sampled"`
		} `json:"_trace"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err := json.Unmarshal(b, &summary); err != nil || summary.Trace.LaunchesProbed == nil || *summary.Trace.LaunchesProbed || !summary.Trace.SyncsSampled {
		t.Errorf("summary.json _trace.launches_probed, syncs_sampled: want false, true: %v %s", err, b)
	}
}

func TestEndToEndWorkersSpawnedAfterAttach(t *testing.T) {
	requireRoot(t)
	bin := buildAll(t)
	srv := startServer(t, "--workers", "2", "--runner", "mixed", "--duration", "30", "--start-delay", "2", "--start-method", "spawn")
	time.Sleep(200 * time.Millisecond) // the API server is up; EngineCore not yet
	dir, start, end := runTracer(t, bin, srv.cmd.Process.Pid, 9*time.Second, allCounted...)
	time.Sleep(300 * time.Millisecond)
	truth := readTruth(t, srv.truth)
	// The workers load the marker as they start, and run their first step
	// right after a short warm-up: the tracer probed the marker where the
	// server's Python imports from, so every step is traced, the first
	// ones included. They must fall inside the compared window.
	first := map[int]int64{}
	for _, s := range truth {
		if f, ok := first[s.pid]; !ok || s.begin < f {
			first[s.pid] = s.begin
		}
	}
	for pid, begin := range first {
		if begin < start+int64(time.Second) {
			t.Fatalf("worker %d ran its first step %d ms after the tracer started, inside the margin: the test does not check first steps",
				pid, (begin-start)/1e6)
		}
	}
	compareAllCounted(t, truth, readCSV(t, filepath.Join(dir, "forward_pass_timing.csv")), start, end, 2)
}

// TestEndToEndSampledLaunchesAndSyncs: by default launches and GPU waits
// are sampled in the same windows: the steps of the sampled windows carry
// exact launch counts (compare checks them against the truth) and their
// sync waits, the others empty cells in both columns; the summary says so
// and how long the launch and synchronization probes were live, and each
// process's launch rate is over those seconds, not over the whole trace.
func TestEndToEndSampledLaunchesAndSyncs(t *testing.T) {
	requireRoot(t)
	bin := buildAll(t)
	srv := startServer(t, "--workers", "2", "--eager", "--duration", "30")
	srv.waitReady(t)
	dir, start, end, out := runTracerOutput(t, bin, srv.cmd.Process.Pid, 6*time.Second, "--launch-sample", "500ms/1500ms")
	checkLaunchLine(t, out, "  kernel launches counted 500ms in every 1.5s and GPU waits timed in the same seconds (--launches=all, --syncs=all: every step)")
	time.Sleep(300 * time.Millisecond)
	c := compare(t, readTruth(t, srv.truth), readCSV(t, filepath.Join(dir, "forward_pass_timing.csv")), start, end, 2)
	// A third of the time sampled; steps straddling a window's edge are
	// not counted, so somewhat fewer than a third.
	for _, n := range []struct {
		what    string
		counted int
	}{{"a launch count", c.launches}, {"a sync wait", c.syncs}} {
		if share := float64(n.counted) / float64(c.inside); share < 0.1 || share > 0.45 {
			t.Errorf("%d of %d steps carry %s (%.0f%%), want about a third", n.counted, c.inside, n.what, 100*share)
		}
	}
	// The two epochs move microseconds apart: only a step begun or ended
	// between them has one without the other.
	if c.apart > 4 {
		t.Errorf("%d steps carry a launch count without a sync wait or the reverse, want the windows to be the same", c.apart)
	}
	var summary struct {
		Trace struct {
			Sampled       bool    `json:"launches_sampled"`
			SyncsSampled  bool    `json:"syncs_sampled"`
			SyncLiveSec   float64 `json:"sync_live_sec"`
			LaunchLiveSec float64 `json:"launch_live_sec"`
		} `json:"_trace"`
		Activity []struct {
			PID            int     `json:"pid"`
			Launches       uint64  `json:"launches"`
			LaunchesPerSec float64 `json:"launches_per_sec"`
		} `json:"_activity"`
		Decode struct {
			Counted     int `json:"launch_counted_steps"`
			SyncCounted int `json:"sync_counted_steps"`
			Count       int `json:"count"`
		} `json:"decode"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err := json.Unmarshal(b, &summary); err != nil || !summary.Trace.Sampled || !summary.Trace.SyncsSampled ||
		summary.Decode.Counted == 0 || summary.Decode.Counted >= summary.Decode.Count ||
		summary.Decode.SyncCounted == 0 || summary.Decode.SyncCounted >= summary.Decode.Count {
		t.Errorf("summary.json: want launches and syncs sampled and some, not all, decode steps counted: %v %s", err, b)
	}
	// Four windows of 0.5 s in the 6 s trace.
	if live := summary.Trace.SyncLiveSec; live < 1.8 || live > 2.2 {
		t.Errorf("_trace.sync_live_sec %v, want the 2 s of the four windows", live)
	}
	if live := summary.Trace.LaunchLiveSec; live < 1.8 || live > 2.2 {
		t.Errorf("_trace.launch_live_sec %v, want the 2 s of the four windows", live)
	} else {
		// The launches were counted in those seconds alone: their rate is
		// over them (to the rounding of both figures), not over the 6 s
		// trace.
		launched := 0
		for _, a := range summary.Activity {
			if a.Launches == 0 {
				continue
			}
			launched++
			if want := float64(a.Launches) / live; math.Abs(a.LaunchesPerSec-want) > 0.05+want*1e-3 {
				t.Errorf("_activity pid %d: launches_per_sec %v, want its %d launches over the %v s, %.1f",
					a.PID, a.LaunchesPerSec, a.Launches, live, want)
			}
		}
		if launched == 0 {
			t.Errorf("_activity: no process launched a kernel: %s", b)
		}
	}
	if !strings.Contains(out, "Sync ms/step: means over the steps of the sampled seconds only") {
		t.Errorf("the console does not say the sync waits were sampled")
	}
}

// TestEndToEndDataParallel: two data-parallel engines of two tensor-parallel
// ranks each run different batches under the same step ids. Every step of
// the four workers is traced once with its rank, and the cross-rank spread
// is computed per data-parallel group, never across groups.
func TestEndToEndDataParallel(t *testing.T) {
	requireRoot(t)
	bin := buildAll(t)
	srv := startServer(t, "--workers", "2", "--data-parallel", "2", "--duration", "30")
	srv.waitReady(t, "server_dp0.json", "server_dp1.json")
	dir, start, end := runTracer(t, bin, srv.cmd.Process.Pid, 4*time.Second, allCounted...)
	time.Sleep(300 * time.Millisecond)
	rows := readCSV(t, filepath.Join(dir, "forward_pass_timing.csv"))
	compareAllCounted(t, readTruth(t, srv.truth), rows, start, end, 4)

	want := map[string]map[int]string{} // group -> TP rank -> pid
	for dp := range 2 {
		var s struct {
			Workers []struct {
				PID   int    `json:"pid"`
				Title string `json:"title"`
				Rank  int    `json:"rank"`
			} `json:"workers"`
		}
		b, err := os.ReadFile(filepath.Join(srv.truth, fmt.Sprintf("server_dp%d.json", dp)))
		if err != nil || json.Unmarshal(b, &s) != nil || len(s.Workers) != 2 {
			t.Fatalf("server_dp%d.json: %v %s", dp, err, b)
		}
		group := fmt.Sprintf("VLLM::Worker_DP%d", dp)
		want[group] = map[int]string{}
		for _, w := range s.Workers {
			want[group][w.Rank] = strconv.Itoa(w.PID)
			if w.Title != fmt.Sprintf("%s_TP%d", group, w.Rank) {
				t.Errorf("worker title %q", w.Title)
			}
		}
	}
	for _, r := range rows {
		group, _, _ := strings.Cut(r["process"], "_TP")
		if rank, _ := strconv.Atoi(r["rank"]); want[group][rank] != r["pid"] {
			t.Fatalf("row of pid %s titled %q has rank %s", r["pid"], r["process"], r["rank"])
		}
	}

	var summary struct {
		Ranks  json.RawMessage `json:"_ranks"`
		Groups []struct {
			Group   string `json:"group"`
			Aligned int    `json:"count"`
			Slowest []struct {
				Rank int `json:"rank"`
				PID  int `json:"pid"`
			} `json:"slowest"`
		} `json:"_rank_groups"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err := json.Unmarshal(b, &summary); err != nil || summary.Ranks != nil || len(summary.Groups) != 2 {
		t.Fatalf("summary.json: want two _rank_groups and no _ranks: %v\n%s", err, b)
	}
	for _, g := range summary.Groups {
		if want[g.Group] == nil || g.Aligned < 100 || len(g.Slowest) != 2 {
			t.Errorf("group %+v", g)
			continue
		}
		for _, s := range g.Slowest {
			if want[g.Group][s.Rank] != strconv.Itoa(s.PID) {
				t.Errorf("group %s: rank %d is pid %d, want %s", g.Group, s.Rank, s.PID, want[g.Group][s.Rank])
			}
		}
	}
}

// TestKilledTracerLeavesServerRunning: SIGKILL mid-trace; the server keeps
// serving and the marker's semaphores drop back to 0, so the patch stops
// computing probe arguments.
func TestKilledTracerLeavesServerRunning(t *testing.T) {
	requireRoot(t)
	bin := buildAll(t)
	srv := startServer(t, "--workers", "1", "--duration", "30")
	srv.waitReady(t)
	tracer := exec.Command(bin, "--pid", strconv.Itoa(srv.cmd.Process.Pid), "--duration", "60s", "--out", t.TempDir())
	stderr, _ := tracer.StderrPipe()
	if err := tracer.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), "probes attached in") {
	}
	engine := readServerJSON(t, srv.truth)
	if v := semaphores(t, engine); v == 0 {
		t.Fatalf("semaphores not raised while tracing")
	}
	tracer.Process.Kill()
	tracer.Wait()
	var v uint64
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if v = semaphores(t, engine); v == 0 {
			break
		}
	}
	if v != 0 {
		t.Errorf("semaphores %#x after the tracer was killed, want 0", v)
	}
	before := len(readTruth(t, srv.truth))
	time.Sleep(500 * time.Millisecond)
	if after := len(readTruth(t, srv.truth)); after <= before || srv.cmd.ProcessState != nil {
		t.Errorf("server stopped serving after the tracer was killed (%d -> %d steps)", before, after)
	}
}

// readServerJSON returns the pid of the process that runs the model.
func readServerJSON(t *testing.T, dir string) int {
	t.Helper()
	var s struct {
		Runners []struct {
			PID int `json:"pid"`
		} `json:"runners"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "server.json"))
	if err != nil || json.Unmarshal(b, &s) != nil || len(s.Runners) == 0 {
		t.Fatalf("server.json: %v %s", err, b)
	}
	return s.Runners[0].PID
}

// semaphores returns the sum of the marker's semaphores in a process's
// memory, found through the probe notes of the library it maps.
func semaphores(t *testing.T, pid int) uint64 {
	t.Helper()
	maps, err := tracer.Proc{Root: "/proc"}.Maps(pid)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	var sum uint64
	found := false
	for _, m := range maps {
		if tracer.Classify(m.Path) != tracer.LibMarker || !strings.Contains(m.Perms, "w") {
			continue
		}
		lib, err := os.Open(m.Path)
		if err != nil {
			t.Fatal(err)
		}
		probes, err := tracer.ReadUSDTProbes(lib)
		lib.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range probes {
			if p.RefCtrOffset < m.Offset || p.RefCtrOffset >= m.Offset+(m.End-m.Start) {
				continue
			}
			b := make([]byte, 2)
			if _, err := mem.ReadAt(b, int64(m.Start+p.RefCtrOffset-m.Offset)); err != nil {
				t.Fatal(err)
			}
			sum += uint64(b[0]) | uint64(b[1])<<8
			found = true
		}
	}
	if !found {
		t.Fatalf("pid %d maps no marker semaphores", pid)
	}
	return sum
}

// TestEndToEndCUDAProcessesStartAfterTheTracer: the tracer is started with
// the server, whose front end maps no CUDA library (it does not import
// torch) and whose EngineCore and workers start later. The tracer waits for
// them instead of giving up, says so, and times their steps; every row it
// writes has the step's full counts, and every step from a second after the
// first row on is there.
func TestEndToEndCUDAProcessesStartAfterTheTracer(t *testing.T) {
	requireRoot(t)
	bin := buildAll(t)
	srv := startServer(t, "--workers", "2", "--duration", "30", "--frontend-without-cuda",
		"--start-delay", "1.5", "--start-method", "spawn")
	dir := t.TempDir()
	start := monotonic()
	code, out := exitCode(t, exec.Command(bin, "--pid", strconv.Itoa(srv.cmd.Process.Pid), "--duration", "10s", "--out", dir, "--launches=all"))
	// The trace ends 10 s after it began, then the tracer writes its files:
	// steps after start+10s are not in it, or open at its end.
	end := start + int64(10*time.Second)
	t.Logf("profilemate-bpf:\n%s", out)
	if code != 0 || !strings.Contains(out, "waiting for CUDA processes") {
		t.Fatalf("exit %d; want 0, after saying it waits for CUDA processes", code)
	}
	time.Sleep(300 * time.Millisecond)
	truth := readTruth(t, srv.truth)
	rows := readCSV(t, filepath.Join(dir, "forward_pass_timing.csv"))
	if len(rows) == 0 {
		t.Fatal("no rows")
	}
	byKey := map[[2]string]truthStep{}
	for _, s := range truth {
		byKey[[2]string{strconv.Itoa(s.pid), strconv.Itoa(s.step)}] = s
	}
	firstRow := int64(math.MaxInt64)
	for _, r := range rows {
		s, ok := byKey[[2]string{r["pid"], r["step"]}]
		if !ok {
			t.Errorf("pid %s step %s traced but not in the truth", r["pid"], r["step"])
			continue
		}
		if r["status"] == "" && (r["launches"] != strconv.Itoa(s.launches) || r["graph_launches"] != strconv.Itoa(s.graphLaunches)) {
			t.Errorf("pid %s step %s: %s launches, %s graphs; truth %d and %d", r["pid"], r["step"],
				r["launches"], r["graph_launches"], s.launches, s.graphLaunches)
		}
		firstRow = min(firstRow, s.begin)
	}
	compare(t, truth, rows, max(start, firstRow), end, 2)
}

// TestNoCUDAWaitsForTheDuration: a process tree in which no CUDA library
// appears is followed for the whole duration, with a line saying so, and
// only then is it exit 6.
func TestNoCUDAWaitsForTheDuration(t *testing.T) {
	requireRoot(t)
	bin := buildBinary(t, t.TempDir())
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleeper.Process.Kill()
	t0 := time.Now()
	code, out := exitCode(t, exec.Command(bin, "--pid", strconv.Itoa(sleeper.Process.Pid), "--duration", "2s", "--out", t.TempDir()))
	took := time.Since(t0)
	if code != exitNoCUDA || took < 2*time.Second || !strings.Contains(out, "waiting for CUDA processes") ||
		!strings.Contains(out, "during the trace") || !strings.Contains(out, "is it a vLLM server on a GPU?") {
		t.Errorf("exit %d after %v; want %d after the 2 s duration, saying it waited:\n%s", code, took, exitNoCUDA, out)
	}
}
