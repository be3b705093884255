package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// End-to-end checks of the scheduler's columns (issue 14): the built binary
// against the simulated server, whose scheduler writes down what the
// marker's sched_step reports for every step (simserver/README.md, "The
// scheduler's truth"): in each worker's truth_<pid>.csv, the values of the
// step it ran, and in the EngineCore's sched_<pid>.csv, one row per
// scheduled step with the times around the update_from_output call in which
// sched_step fires.

// schedCSVColumns are the scheduler's columns of forward_pass_timing.csv.
var schedCSVColumns = []string{"kv_cache_usage", "running_reqs", "waiting_reqs", "preempted_reqs",
	"token_budget_use", "seq_budget_use", "spec_proposed", "spec_accepted"}

// schedValues are the scheduler's values of one step in the simulator's
// truth (-1: unknown, the spec counts without speculative decoding).
type schedValues struct {
	tokens, batch, kvPermille, running, waiting, preempted, budget, maxSeqs, proposed, accepted int64
}

func schedValuesOf(t testing.TB, r map[string]string) schedValues {
	t.Helper()
	n := func(k string) int64 {
		v, err := strconv.ParseInt(r[k], 10, 64)
		if err != nil {
			t.Fatalf("truth column %s: %q", k, r[k])
		}
		return v
	}
	return schedValues{n("num_tokens"), n("batch_size"), n("kv_usage_permille"), n("running_reqs"), n("waiting_reqs"),
		n("preempted_reqs"), n("token_budget"), n("max_num_seqs"), n("spec_proposed"), n("spec_accepted")}
}

// cells are the CSV cells the contract (proto14.md) asks for v: shares to 3
// decimals, counts as they are, an empty cell where the value is unknown.
func (v schedValues) cells() []string {
	count := func(x int64) string {
		if x < 0 {
			return ""
		}
		return strconv.FormatInt(x, 10)
	}
	share := func(part, whole int64) string {
		if part < 0 || whole <= 0 {
			return ""
		}
		return strconv.FormatFloat(float64(part)/float64(whole), 'f', 3, 64)
	}
	return []string{share(v.kvPermille, 1000), count(v.running), count(v.waiting), count(v.preempted),
		share(v.tokens, v.budget), share(v.batch, v.maxSeqs), count(v.proposed), count(v.accepted)}
}

// engineStep is a row of sched_<pid>.csv: one scheduled step, and the
// monotonic times just before and after the engine called
// update_from_output, inside which the marker fires sched_step.
type engineStep struct {
	updateBegin, updateEnd int64
	v                      schedValues
}

// engines are the scheduled steps of each EngineCore: pid -> step -> step.
type engines map[int]map[int]engineStep

// readEngineTruth returns the scheduled steps of the server's n EngineCores
// (sched_<pid>.csv).
func readEngineTruth(t testing.TB, dir string, n int) engines {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "sched_*.csv"))
	if len(files) != n {
		t.Fatalf("want %d EngineCores' sched_<pid>.csv, got %v", n, files)
	}
	engs := engines{}
	for _, f := range files {
		for _, r := range readCSV(t, f) {
			pid, _ := strconv.Atoi(r["pid"])
			step, _ := strconv.Atoi(r["step"])
			b, _ := strconv.ParseInt(r["update_begin_ns"], 10, 64)
			e, _ := strconv.ParseInt(r["update_end_ns"], 10, 64)
			if engs[pid] == nil {
				engs[pid] = map[int]engineStep{}
			}
			engs[pid][step] = engineStep{b, e, schedValuesOf(t, r)}
		}
	}
	return engs
}

// schedRun is a trace and the times that bound which scheduler steps it can
// and must hold.
type schedRun struct {
	dir, out string
	// start: before the tracer was started, so no probe of it fired
	// earlier. attached: once it said its probes were attached, so every
	// probe was live and every semaphore raised. end: start + duration
	// (or the exit, if earlier), as runTracer's: the probes were still in
	// then, since the duration counts from after they went in. exit: once
	// it had exited, so no probe of it fired later.
	start, attached, end, exit int64
}

// runTracerTimed is runTracerOutput that also notes when the tracer said
// its probes were attached (the line arrives unbuffered on stderr).
func runTracerTimed(t *testing.T, bin string, pid int, d time.Duration, flags ...string) schedRun {
	t.Helper()
	r := schedRun{dir: t.TempDir()}
	cmd := exec.Command(bin, append([]string{"--pid", strconv.Itoa(pid), "--duration", d.String(), "--out", r.dir}, flags...)...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.start = monotonic()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines strings.Builder
	for sc := bufio.NewScanner(stderr); sc.Scan(); {
		if r.attached == 0 && strings.Contains(sc.Text(), "probes attached in") {
			r.attached = monotonic()
		}
		lines.WriteString(sc.Text() + "\n")
	}
	err = cmd.Wait()
	r.exit = monotonic()
	r.end = min(r.exit, r.start+int64(d))
	r.out = lines.String() + stdout.String()
	t.Logf("profilemate-bpf:\n%s", r.out)
	if err != nil || r.attached == 0 {
		t.Fatalf("profilemate-bpf: %v (attached line seen: %v)", err, r.attached != 0)
	}
	return r
}

// checkSchedRows checks the scheduler's columns of every CSV row against
// the truth of the step it ran (truth_<pid>.csv): a row that carries them
// carries its step's values, exactly as the contract formats them; every
// step wholly inside the window that compare checks carries them, in every
// rank; the ranks' rows of one step carry the same cells. The workers'
// truth must agree with the engine's (one scheduler step, one forward pass
// per rank). It returns the scheduler steps whose record joined a row (per
// engine), the truth of those of each phase, and how many of the steps
// inside the window preempted requests and verified draft tokens.
func checkSchedRows(t *testing.T, truthDir string, rows []map[string]string, start, end int64, engs engines) (
	joined map[int]map[int]bool, phaseSteps map[string][]schedValues, preempting, speculative int) {
	t.Helper()
	type key struct{ pid, step int }
	truth := map[key]map[string]string{}
	files, _ := filepath.Glob(filepath.Join(truthDir, "truth_*.csv"))
	for _, f := range files {
		for _, r := range readCSV(t, f) {
			pid, _ := strconv.Atoi(r["pid"])
			step, _ := strconv.Atoi(r["step"])
			truth[key{pid, step}] = r
		}
	}
	steps := map[key]truthStep{}
	for _, s := range readTruth(t, truthDir) {
		steps[key{s.pid, s.step}] = s
	}
	type schedKey struct{ engine, step int }
	joined = map[int]map[int]bool{}
	byStep := map[schedKey][]string{} // the cells of the step's first row, joined
	phases := map[string]map[schedKey]bool{}
	preempts, specs := map[schedKey]bool{}, map[schedKey]bool{}
	wrong, missing := 0, 0
	for _, r := range rows {
		pid, _ := strconv.Atoi(r["pid"])
		step, _ := strconv.Atoi(r["step"])
		tr, ok := truth[key{pid, step}]
		if !ok {
			continue // compare says so
		}
		v := schedValuesOf(t, tr)
		engine, _ := strconv.Atoi(tr["engine_pid"])
		if e, ok := engs[engine][step]; !ok || e.v != v {
			t.Fatalf("simulator's truth disagrees: pid %d step %d %+v, its engine %d's row %+v", pid, step, v, engine, e.v)
		}
		k := schedKey{engine, step}
		got := make([]string, len(schedCSVColumns))
		carried := false
		for i, c := range schedCSVColumns {
			got[i] = r[c]
			carried = carried || got[i] != ""
		}
		inside := whollyInside(steps[key{pid, step}], start, end)
		if !carried {
			if inside {
				if missing++; missing <= 5 {
					t.Errorf("pid %d step %d, inside the window: no scheduler values, truth %v", pid, step, v.cells())
				}
			}
			continue
		}
		if joined[engine] == nil {
			joined[engine] = map[int]bool{}
		}
		joined[engine][step] = true
		if phases[r["phase"]] == nil {
			phases[r["phase"]] = map[schedKey]bool{}
		}
		phases[r["phase"]][k] = true
		if want := v.cells(); !slices.Equal(got, want) {
			if wrong++; wrong <= 5 {
				t.Errorf("pid %d step %d: scheduler columns %v, truth %v (%s)", pid, step, got, want, strings.Join(schedCSVColumns, ","))
			}
		}
		if first, ok := byStep[k]; ok && !slices.Equal(first, got) {
			t.Errorf("engine %d step %d: the ranks' rows carry %v and %v, want one scheduler step's values", engine, step, first, got)
		}
		byStep[k] = got
		if inside && v.preempted > 0 {
			preempts[k] = true
		}
		if inside && v.proposed > 0 {
			specs[k] = true
		}
	}
	if wrong > 0 || missing > 0 {
		t.Errorf("%d rows with wrong scheduler values, %d inside the window without them", wrong, missing)
	}
	phaseSteps = map[string][]schedValues{}
	for p, ks := range phases {
		for k := range ks {
			phaseSteps[p] = append(phaseSteps[p], engs[k.engine][k.step].v)
		}
	}
	t.Logf("%d scheduler steps joined rows; inside the window %d steps preempted requests, %d verified drafts",
		len(byStep), len(preempts), len(specs))
	return joined, phaseSteps, len(preempts), len(specs)
}

// schedulerJSON is summary.json's "_scheduler".
type schedulerJSON struct {
	SchedSteps         int      `json:"sched_steps"`
	Joined             int      `json:"joined"`
	WithoutForwardPass int      `json:"without_forward_pass"`
	Duplicates         int      `json:"duplicates"`
	Preemptions        int64    `json:"preemptions"`
	PeakKVCacheUsage   *float64 `json:"peak_kv_cache_usage"`
	MeanKVCacheUsage   *float64 `json:"mean_kv_cache_usage"`
	SpecProposed       *int64   `json:"spec_proposed"`
	SpecAccepted       *int64   `json:"spec_accepted"`
	AcceptanceRate     *float64 `json:"acceptance_rate"`
}

func (s schedulerJSON) String() string {
	return fmt.Sprintf("{sched_steps %d joined %d without_forward_pass %d duplicates %d preemptions %d peak_kv %s mean_kv %s spec_proposed %s spec_accepted %s acceptance_rate %s}",
		s.SchedSteps, s.Joined, s.WithoutForwardPass, s.Duplicates, s.Preemptions, fmtPtr(s.PeakKVCacheUsage), fmtPtr(s.MeanKVCacheUsage),
		fmtPtr(s.SpecProposed), fmtPtr(s.SpecAccepted), fmtPtr(s.AcceptanceRate))
}

// schedPhaseJSON are the scheduler's keys of a phase object in summary.json.
type schedPhaseJSON struct {
	KVCacheUsageMean   *float64 `json:"kv_cache_usage_mean"`
	RunningReqsMean    *float64 `json:"running_reqs_mean"`
	WaitingReqsMean    *float64 `json:"waiting_reqs_mean"`
	PreemptedReqs      *int64   `json:"preempted_reqs"`
	TokenBudgetUseMean *float64 `json:"token_budget_use_mean"`
	SeqBudgetUseMean   *float64 `json:"seq_budget_use_mean"`
	SpecAcceptanceRate *float64 `json:"spec_acceptance_rate"`
	SchedJoinedSteps   int      `json:"sched_joined_steps"`
}

// readSchedSummary reads summary.json's "_scheduler", its dropped-record
// count, and the scheduler's keys of each phase.
func readSchedSummary(t *testing.T, dir string) (*schedulerJSON, uint64, map[string]schedPhaseJSON) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Scheduler *schedulerJSON `json:"_scheduler"`
		Trace     struct {
			Dropped uint64 `json:"dropped_records"`
		} `json:"_trace"`
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &s); err != nil || json.Unmarshal(b, &all) != nil || s.Scheduler == nil {
		t.Fatalf("summary.json: want a _scheduler object: %v\n%s", err, b)
	}
	phases := map[string]schedPhaseJSON{}
	for _, p := range []string{"prefill", "decode", "mixed"} {
		if all[p] == nil {
			continue
		}
		var ph schedPhaseJSON
		if err := json.Unmarshal(all[p], &ph); err != nil {
			t.Fatalf("summary.json %s: %v", p, err)
		}
		phases[p] = ph
	}
	return s.Scheduler, s.Trace.Dropped, phases
}

// schedTotals are the truth's totals of a set of scheduled steps, exact
// (means and rates unrounded), with the keys of "_scheduler".
type schedTotals struct {
	steps, preemptions   int64
	peakKV, meanKV       float64
	proposed, accepted   *int64
	acceptance           *float64
	running, waiting     float64 // means
	tokenShare, seqShare float64 // means
	spec                 bool
}

func totalsOf(vs []schedValues) schedTotals {
	var s schedTotals
	var kv, running, waiting, tokens, seqs float64
	var proposed, accepted int64
	for _, v := range vs {
		s.steps++
		s.preemptions += v.preempted
		k := float64(v.kvPermille) / 1000
		s.peakKV = max(s.peakKV, k)
		kv += k
		running += float64(v.running)
		waiting += float64(v.waiting)
		tokens += float64(v.tokens) / float64(v.budget)
		seqs += float64(v.batch) / float64(v.maxSeqs)
		if v.proposed >= 0 {
			s.spec = true
			proposed += v.proposed
			accepted += v.accepted
		}
	}
	n := float64(max(s.steps, 1))
	s.meanKV, s.running, s.waiting, s.tokenShare, s.seqShare = kv/n, running/n, waiting/n, tokens/n, seqs/n
	if s.spec {
		s.proposed, s.accepted = &proposed, &accepted
		if proposed > 0 {
			s.acceptance = ptrTo(float64(accepted) / float64(proposed))
		}
	}
	return s
}

func ptrTo[T any](v T) *T { return &v }

// summary.json rounds the KV means and the acceptance rates to 4 decimals,
// the request means to 3: the truth's exact value may differ from the
// rounded one by half the last digit, and no more.
const (
	round4 = 0.5e-4 + 1e-9
	round3 = 0.5e-3 + 1e-9
)

// diffFloat describes how got differs from want beyond tol, or "".
func diffFloat(name string, got, want *float64, tol float64) string {
	switch {
	case got == nil && want == nil:
		return ""
	case got == nil || want == nil:
		return fmt.Sprintf("%s %s, truth %s", name, fmtPtr(got), fmtPtr(want))
	case math.Abs(*got-*want) > tol:
		return fmt.Sprintf("%s %v, truth %v", name, *got, *want)
	}
	return ""
}

func diffInt(name string, got, want *int64) string {
	if (got == nil) != (want == nil) || got != nil && *got != *want {
		return fmt.Sprintf("%s %s, truth %s", name, fmtPtr(got), fmtPtr(want))
	}
	return ""
}

func fmtPtr[T any](p *T) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}

// diffTotals lists how "_scheduler" differs from the truth's totals.
func diffTotals(got schedulerJSON, want schedTotals) []string {
	var d []string
	for _, s := range []string{
		diffInt("sched_steps", ptrTo(int64(got.SchedSteps)), &want.steps),
		diffInt("preemptions", &got.Preemptions, &want.preemptions),
		diffFloat("peak_kv_cache_usage", got.PeakKVCacheUsage, &want.peakKV, 1e-9),
		diffFloat("mean_kv_cache_usage", got.MeanKVCacheUsage, &want.meanKV, round4),
		diffInt("spec_proposed", got.SpecProposed, want.proposed),
		diffInt("spec_accepted", got.SpecAccepted, want.accepted),
		diffFloat("acceptance_rate", got.AcceptanceRate, want.acceptance, round4),
	} {
		if s != "" {
			d = append(d, s)
		}
	}
	return d
}

// checkSchedTotals checks "_scheduler" against the truth of the scheduled
// steps the trace held.
//
// Which steps those are: once sched_step's probe is in (and its semaphore
// up), every schedule() with work is stamped and every stamped step fires
// in update_from_output, until the probes go out; the tracer reads every
// record sent until then (none dropped: asserted). So the trace holds a
// contiguous range of each engine's steps. The joined ones (the rows'
// steps) must be contiguous too, all but a few at the ranges' edges: steps
// whose records came but whose forward passes are no rows (begun before
// the workers' probes were live, or with no point after step_begin at the
// end) - as many as sched_steps exceeds the joined steps, each before the
// first or after the last joined one of its engine. For each way of
// placing them the ranges are known exactly; the totals must equal the
// truth over one such placement, to the rounding of summary.json, whose
// ranges hold every step the trace certainly holds and none it cannot
// (no count is allowed for: the bounds alone decide):
//
//   - certain: step N's schedule() came after update_from_output of step
//     N-2 returned (EngineCore keeps at most two steps in flight, one with
//     --sync), so after `attached` if that return did; and its sched_step
//     fired before its update_from_output returned, so before `end` if
//     that return did: update_end(N-2) >= attached, update_end(N) <= end.
//   - possible: stamped after the tracer started and fired before it
//     exited, and schedule() precedes update_from_output: start <
//     update_begin(N) <= exit.
func checkSchedTotals(t *testing.T, got *schedulerJSON, dropped uint64, engs engines, joined map[int]map[int]bool, run schedRun) {
	t.Helper()
	if dropped != 0 {
		t.Fatalf("%d records dropped: the trace's steps need not be contiguous", dropped)
	}
	ranges, err := traceRange(*got, engs, joined, run)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	for e, r := range ranges {
		lo, hi := minMaxKey(joined[e])
		t.Logf("engine %d: steps %d..%d in the trace, joined rows %d..%d", e, r[0], r[1], lo, hi)
	}
	t.Logf("_scheduler equals the truth over those steps: %v", *got)
}

// traceRange is the range of steps first..last per engine that
// checkSchedTotals finds the trace held, or an error saying why there is
// none.
func traceRange(got schedulerJSON, engs engines, joined map[int]map[int]bool, run schedRun) (map[int][2]int, error) {
	if got.Duplicates != 0 || got.Joined+got.WithoutForwardPass != got.SchedSteps {
		return nil, fmt.Errorf("_scheduler %v: want no duplicates, joined + without_forward_pass = sched_steps", got)
	}
	// A span is an engine's joined steps lo..hi and how many records
	// before and after them the window's bounds allow.
	type span struct {
		engine, lo, hi int
		before, after  []int
	}
	var spans []span
	total := 0
	for _, e := range slices.Sorted(maps.Keys(engs)) {
		js := joined[e]
		if len(js) == 0 {
			return nil, fmt.Errorf("engine %d: no row carries its scheduler's values", e)
		}
		lo, hi := minMaxKey(js)
		if hi-lo+1 != len(js) {
			var gaps []int
			for s := lo; s <= hi && len(gaps) < 10; s++ {
				if !js[s] {
					gaps = append(gaps, s)
				}
			}
			return nil, fmt.Errorf("engine %d: the joined scheduler steps %d..%d have gaps (%d joined), first missing: %v", e, lo, hi, len(js), gaps)
		}
		spans = append(spans, span{engine: e, lo: lo, hi: hi})
		total += len(js)
	}
	extra := got.SchedSteps - total
	if extra < 0 || got.Joined < total {
		return nil, fmt.Errorf("%d steps joined rows; _scheduler %v", total, got)
	}
	var bounds []string
	for i := range spans {
		sp := &spans[i]
		eng := engs[sp.engine]
		certain := func(n int) bool {
			before, ok1 := eng[n-2]
			s, ok2 := eng[n]
			return ok1 && ok2 && before.updateEnd >= run.attached && s.updateEnd <= run.end
		}
		possible := func(n int) bool {
			s, ok := eng[n]
			return ok && s.updateBegin > run.start && s.updateBegin <= run.exit
		}
		for n := sp.lo; n <= sp.hi; n++ {
			if !possible(n) {
				return nil, fmt.Errorf("engine %d step %d joined a row, but its update_from_output ran outside the trace", sp.engine, n)
			}
		}
		// The certain steps, first..last, must all be in the range.
		first, last := math.MaxInt, math.MinInt
		for n := range eng {
			if certain(n) {
				first, last = min(first, n), max(last, n)
			}
		}
		// k records before lo: steps lo-k..lo-1, all possible, and no
		// certain step before lo-k; likewise after hi.
		for k := 0; k <= extra && (k == 0 || possible(sp.lo-k)); k++ {
			if sp.lo-k <= first {
				sp.before = append(sp.before, k)
			}
		}
		for k := 0; k <= extra && (k == 0 || possible(sp.hi+k)); k++ {
			if sp.hi+k >= last {
				sp.after = append(sp.after, k)
			}
		}
		bounds = append(bounds, fmt.Sprintf("engine %d: joined %d..%d, records allowed before %v, after %v", sp.engine, sp.lo, sp.hi, sp.before, sp.after))
	}
	// Every way of placing the extra records within those bounds.
	place := make([]int, 2*len(spans))
	var report []string
	check := func() map[int][2]int {
		ranges := map[int][2]int{}
		var vs []schedValues
		var where []string
		for i, sp := range spans {
			a, b := sp.lo-place[2*i], sp.hi+place[2*i+1]
			ranges[sp.engine] = [2]int{a, b}
			where = append(where, fmt.Sprintf("engine %d steps %d..%d", sp.engine, a, b))
			for n := a; n <= b; n++ {
				vs = append(vs, engs[sp.engine][n].v)
			}
		}
		d := diffTotals(got, totalsOf(vs))
		if len(d) == 0 {
			return ranges
		}
		if len(report) < 10 {
			report = append(report, fmt.Sprintf("  %s: %s", strings.Join(where, ", "), strings.Join(d, "; ")))
		}
		return nil
	}
	var try func(i, left int) map[int][2]int
	try = func(i, left int) map[int][2]int {
		if i == len(place) {
			if left != 0 {
				return nil
			}
			return check()
		}
		allowed := spans[i/2].before
		if i%2 == 1 {
			allowed = spans[i/2].after
		}
		for _, k := range allowed {
			if k > left {
				break
			}
			place[i] = k
			if r := try(i+1, left-k); r != nil {
				return r
			}
		}
		return nil
	}
	if r := try(0, extra); r != nil {
		return r, nil
	}
	if len(report) == 0 {
		report = append(report, "  no placement within the bounds")
	}
	return nil, fmt.Errorf("_scheduler %v equals the truth over no ranges of %d steps in all that hold the %d joined ones and lie within the window's bounds:\n  %s\n%s",
		got, got.SchedSteps, total, strings.Join(bounds, "\n  "), strings.Join(report, "\n"))
}

func minMaxKey(m map[int]bool) (lo, hi int) {
	lo = math.MaxInt
	for k := range m {
		lo, hi = min(lo, k), max(hi, k)
	}
	return lo, hi
}

// checkSchedPhases checks the scheduler's keys of each phase in summary.json
// against the truth over the scheduler steps that joined the phase's rows,
// each once (both ranks' rows of a step join one record): checkSchedRows's
// phaseSteps.
func checkSchedPhases(t *testing.T, phases map[string]schedPhaseJSON, phaseSteps map[string][]schedValues) {
	t.Helper()
	for _, p := range []string{"prefill", "decode", "mixed"} {
		got, ok := phases[p]
		if !ok {
			t.Errorf("summary.json has no %s phase", p)
			continue
		}
		vs := phaseSteps[p]
		w := totalsOf(vs)
		var d []string
		if got.SchedJoinedSteps != len(vs) {
			d = append(d, fmt.Sprintf("sched_joined_steps %d, truth %d", got.SchedJoinedSteps, len(vs)))
		}
		for _, s := range []string{
			diffFloat("kv_cache_usage_mean", got.KVCacheUsageMean, &w.meanKV, round4),
			diffFloat("running_reqs_mean", got.RunningReqsMean, &w.running, round3),
			diffFloat("waiting_reqs_mean", got.WaitingReqsMean, &w.waiting, round3),
			diffInt("preempted_reqs", got.PreemptedReqs, &w.preemptions),
			diffFloat("token_budget_use_mean", got.TokenBudgetUseMean, &w.tokenShare, round4),
			diffFloat("seq_budget_use_mean", got.SeqBudgetUseMean, &w.seqShare, round4),
			diffFloat("spec_acceptance_rate", got.SpecAcceptanceRate, w.acceptance, round4),
		} {
			if s != "" {
				d = append(d, s)
			}
		}
		if len(d) > 0 {
			t.Errorf("summary.json %s over its %d scheduler steps: %s", p, len(vs), strings.Join(d, "; "))
		}
	}
}

// checkNoSchedNote: with the current marker the tracer says nothing about
// missing scheduler columns (sched.go's notes), and the console shows the
// scheduler's table.
func checkNoSchedNote(t *testing.T, out string) {
	t.Helper()
	if strings.Contains(out, schedColumns) || strings.Contains(out, "scheduler's columns are empty") {
		t.Errorf("the tracer says the scheduler's columns are empty, with a marker that has the probe")
	}
	if !strings.Contains(out, "Scheduler steps") {
		t.Errorf("the console shows no scheduler table")
	}
}

// acceptanceBand is the expected acceptance rate of k draft tokens per
// request-step that each agree with probability p, where the first
// disagreeing one and those after it are rejected, (p + p² + ... + p^k)/k,
// and five standard deviations of the rate over proposed/k such groups.
func acceptanceBand(p float64, k int, proposed int64) (want, tol float64) {
	var m, m2 float64
	for j := 1; j <= k; j++ {
		pj := math.Pow(p, float64(j)) // P(accepted >= j)
		m += pj
		m2 += float64(2*j-1) * pj // E[X²] = Σ (2j-1) P(X >= j)
	}
	groups := float64(proposed) / float64(k)
	return m / float64(k), 5 * math.Sqrt((m2-m*m)/groups) / float64(k)
}

// schedTrace is a traced window of the simulated server checked against
// its truth by traceAndCheckSched.
type schedTrace struct {
	run                     schedRun
	rows                    []map[string]string
	got                     *schedulerJSON
	phases                  map[string]schedPhaseJSON
	preempting, speculative int // steps inside the window that preempted, that verified drafts
}

// traceAndCheckSched traces srv's API server for 4 s and checks what every
// scheduler test checks: the base columns (compare, with workers rows per
// step), every scheduler cell of every row, "_scheduler" and the phases'
// keys against the truth of its `engines` EngineCores.
func traceAndCheckSched(t *testing.T, bin string, srv *server, workers, engines int) schedTrace {
	t.Helper()
	run := runTracerTimed(t, bin, srv.cmd.Process.Pid, 4*time.Second, "--format", "csv")
	time.Sleep(300 * time.Millisecond) // the truth files are written per step
	rows := readCSV(t, filepath.Join(run.dir, "forward_pass_timing.csv"))
	compare(t, readTruth(t, srv.truth), rows, run.start, run.end, workers)
	engs := readEngineTruth(t, srv.truth, engines)
	joined, phaseSteps, preempting, speculative := checkSchedRows(t, srv.truth, rows, run.start, run.end, engs)
	got, dropped, phases := readSchedSummary(t, run.dir)
	checkSchedTotals(t, got, dropped, engs, joined, run)
	checkSchedPhases(t, phases, phaseSteps)
	return schedTrace{run: run, rows: rows, got: got, phases: phases, preempting: preempting, speculative: speculative}
}

// TestEndToEndSchedulerKVPressureAndSpecDecode: tensor parallelism 2, a KV
// cache small enough to preempt requests every few steps, speculative
// decoding on every decode step with 3 draft tokens of acceptance 0.7.
// Every new CSV column equals the simulator's truth on every row that
// carries it, and on every step inside the window; the trace does contain
// preemptions and speculative steps; "_scheduler" and the phases' keys equal
// the truth over the scheduled steps the trace held; the acceptance rate is
// the configured expectation within sampling noise.
func TestEndToEndSchedulerKVPressureAndSpecDecode(t *testing.T) {
	requireRoot(t)
	bin := buildAll(t)
	const p, k = 0.7, 3
	srv := startServer(t, "--workers", "2", "--duration", "30", "--kv-blocks", "90",
		"--spec", "always", "--spec-tokens", strconv.Itoa(k), "--spec-acceptance", strconv.FormatFloat(p, 'f', -1, 64))
	srv.waitReady(t)
	tr := traceAndCheckSched(t, bin, srv, 2, 1)
	if tr.preempting == 0 || tr.speculative == 0 {
		t.Errorf("inside the window %d steps preempted requests and %d verified drafts, want some of each", tr.preempting, tr.speculative)
	}
	got := tr.got
	if got.Preemptions == 0 || got.SpecProposed == nil || *got.SpecProposed == 0 || got.AcceptanceRate == nil {
		t.Fatalf("_scheduler %v: want preemptions and verified drafts", *got)
	}
	want, tol := acceptanceBand(p, k, *got.SpecProposed)
	t.Logf("acceptance rate %.4f over %d drafts; expected %.4f ± %.4f", *got.AcceptanceRate, *got.SpecProposed, want, tol)
	if math.Abs(*got.AcceptanceRate-want) > tol {
		t.Errorf("acceptance rate %.4f over %d drafts, want %.4f ± %.4f (5 standard deviations)", *got.AcceptanceRate, *got.SpecProposed, want, tol)
	}
	checkNoSchedNote(t, tr.run.out)
}

// TestEndToEndSchedulerWithoutSpecDecode: no speculative decoding configured
// (the marker passes -1), the model inside EngineCore (one worker: the
// process that fires sched_step also runs the step) and synchronous
// scheduling. The spec columns are empty on every row and "_scheduler"'s
// spec keys and every phase's acceptance rate are null; the other columns,
// the totals and the phases' keys still equal the truth.
func TestEndToEndSchedulerWithoutSpecDecode(t *testing.T) {
	requireRoot(t)
	bin := buildAll(t)
	srv := startServer(t, "--workers", "1", "--duration", "30", "--spec", "off", "--sync")
	srv.waitReady(t)
	tr := traceAndCheckSched(t, bin, srv, 1, 1)
	for _, r := range tr.rows {
		if r["spec_proposed"] != "" || r["spec_accepted"] != "" {
			t.Fatalf("pid %s step %s: spec_proposed %q, spec_accepted %q; want empty cells without speculative decoding",
				r["pid"], r["step"], r["spec_proposed"], r["spec_accepted"])
		}
	}
	if tr.speculative != 0 {
		t.Errorf("%d steps verified drafts without speculative decoding", tr.speculative)
	}
	got := tr.got
	if got.SpecProposed != nil || got.SpecAccepted != nil || got.AcceptanceRate != nil {
		t.Errorf("_scheduler %v: want null spec_proposed, spec_accepted and acceptance_rate", *got)
	}
	for p, ph := range tr.phases {
		if ph.SpecAcceptanceRate != nil {
			t.Errorf("%s: spec_acceptance_rate %v, want null", p, *ph.SpecAcceptanceRate)
		}
	}
	checkNoSchedNote(t, tr.run.out)
}

// TestTraceRange: the ranges checkSchedTotals finds for records beyond the
// joined steps, at either edge of either engine, and the totals or bounds
// it refuses.
func TestTraceRange(t *testing.T) {
	// Step n's update_from_output runs at [100n, 100n+50] in engine 1,
	// 30 ns later in engine 2 (whose values differ); the tracer started at
	// 250 and exited at 1800 (possible: steps 3..18), its probes were in
	// from 450 to 1500 (certain: steps 6..14).
	engs := engines{1: {}, 2: {}}
	for n := 1; n <= 20; n++ {
		for e, eng := range engs {
			eng[n] = engineStep{int64(100*n + 30*(e-1)), int64(100*n + 50 + 30*(e-1)), schedValues{tokens: 10, batch: 1,
				kvPermille: int64(10*n + e), running: 1, waiting: 2, preempted: int64((n + e) % 3), budget: 512, maxSeqs: 16,
				proposed: int64(n * e), accepted: int64(n / 2)}}
		}
	}
	run := schedRun{start: 250, attached: 450, end: 1500, exit: 1800}
	steps := func(a, b int) map[int]bool {
		m := map[int]bool{}
		for n := a; n <= b; n++ {
			m[n] = true
		}
		return m
	}
	// summary is "_scheduler" over engine 1's steps a..b and engine 2's
	// c..d, of which joined had a forward pass.
	summary := func(a, b, c, d, joined int) schedulerJSON {
		var vs []schedValues
		for n := a; n <= b; n++ {
			vs = append(vs, engs[1][n].v)
		}
		for n := c; n <= d; n++ {
			vs = append(vs, engs[2][n].v)
		}
		w := totalsOf(vs)
		return schedulerJSON{SchedSteps: int(w.steps), Joined: joined, WithoutForwardPass: int(w.steps) - joined,
			Preemptions: w.preemptions, PeakKVCacheUsage: &w.peakKV, MeanKVCacheUsage: ptrTo(math.Round(w.meanKV*1e4) / 1e4),
			SpecProposed: w.proposed, SpecAccepted: w.accepted, AcceptanceRate: ptrTo(math.Round(*w.acceptance*1e4) / 1e4)}
	}
	more := func(s schedulerJSON) schedulerJSON { s.Preemptions++; return s }
	both := func(a, b, c, d int) map[int]map[int]bool { return map[int]map[int]bool{1: steps(a, b), 2: steps(c, d)} }
	gap := both(6, 14, 6, 14)
	delete(gap[1], 8)
	for _, c := range []struct {
		name   string
		got    schedulerJSON
		joined map[int]map[int]bool
		want   map[int][2]int // nil: an error
	}{
		{"all joined", summary(6, 14, 6, 14, 18), both(6, 14, 6, 14), map[int][2]int{1: {6, 14}, 2: {6, 14}}},
		{"one record before engine 2's joined steps", summary(6, 14, 5, 14, 18), both(6, 14, 6, 14), map[int][2]int{1: {6, 14}, 2: {5, 14}}},
		{"two after engine 1's, one before engine 2's", summary(6, 16, 5, 14, 18), both(6, 14, 6, 14), map[int][2]int{1: {6, 16}, 2: {5, 14}}},
		{"one preemption too many", more(summary(6, 14, 6, 14, 18)), both(6, 14, 6, 14), nil},
		{"a step that must be in the trace is not", summary(7, 14, 6, 14, 17), both(7, 14, 6, 14), nil},
		{"a step before the tracer started", summary(2, 14, 6, 14, 21), both(3, 14, 6, 14), nil},
		{"a gap in the joined steps", summary(6, 14, 6, 14, 17), gap, nil},
		{"the joined steps after the certain ones", summary(16, 18, 6, 14, 12), both(16, 18, 6, 14), nil},
		{"a joined step after the tracer exited", summary(6, 19, 6, 14, 23), both(6, 19, 6, 14), nil},
		{"an engine without joined steps", summary(6, 14, 6, 5, 9), map[int]map[int]bool{1: steps(6, 14)}, nil},
	} {
		got, err := traceRange(c.got, engs, c.joined, run)
		if c.want == nil && err == nil || c.want != nil && (err != nil || !maps.Equal(got, c.want)) {
			t.Errorf("%s: %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

// TestEndToEndSchedulerDataParallel: two data-parallel engines of two
// tensor-parallel ranks each schedule different requests under the same
// step numbers, speculative decoding in periods (the default). Every
// worker's rows join their own engine's records (keys carry a nonce per
// scheduler: a collision would give a row the other engine's values or a
// duplicate), and "_scheduler" equals the truth over both engines' steps.
func TestEndToEndSchedulerDataParallel(t *testing.T) {
	requireRoot(t)
	bin := buildAll(t)
	srv := startServer(t, "--workers", "2", "--data-parallel", "2", "--duration", "30", "--kv-blocks", "120")
	srv.waitReady(t, "server_dp0.json", "server_dp1.json")
	tr := traceAndCheckSched(t, bin, srv, 4, 2)
	if tr.preempting == 0 || tr.speculative == 0 {
		t.Errorf("inside the window %d steps preempted requests and %d verified drafts, want some of each", tr.preempting, tr.speculative)
	}
	checkNoSchedNote(t, tr.run.out)
}
