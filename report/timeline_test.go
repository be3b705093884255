package report_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/profilemate/profilemate-bpf/analysis"
	"github.com/profilemate/profilemate-bpf/report"
	"github.com/profilemate/profilemate-bpf/report/reporttest"
)

func timeline(t *testing.T, res analysis.Result) *reporttest.Timeline {
	t.Helper()
	var buf bytes.Buffer
	if err := report.WriteTimeline(&buf, res, facts); err != nil {
		t.Fatal(err)
	}
	tl, err := reporttest.CheckTimeline(buf.Bytes())
	if err != nil {
		t.Fatalf("timeline.json breaks the format: %v", err)
	}
	return tl
}

// TestTimeline: every row of the CSV is a step slice on its process's
// track, at its begin in microseconds since the trace start and as long as
// its duration, with its parts inside; overlapping steps of async
// scheduling get a second row.
func TestTimeline(t *testing.T) {
	res := analysis.Analyze(asyncTrace(400))
	tl := timeline(t, res)
	if tl.DisplayTimeUnit != "ms" {
		t.Errorf("displayTimeUnit %q", tl.DisplayTimeUnit)
	}
	if len(tl.Processes) != 2 {
		t.Fatalf("%d process tracks, want the 2 workers (the others ran no steps)", len(tl.Processes))
	}
	rows := map[uint32][]analysis.Row{}
	for _, r := range res.Rows {
		rows[r.PID] = append(rows[r.PID], r)
	}
	for _, want := range []analysis.Process{tp0, tp1} {
		p := tl.Processes[int64(want.PID)]
		if p == nil || p.Name != want.Title {
			t.Fatalf("pid %d: track %+v, want one named %q", want.PID, p, want.Title)
		}
		if p.SortIndex != want.Rank {
			t.Errorf("%s sorts at %d, want %d (rank order)", want.Title, p.SortIndex, want.Rank)
		}
		if len(p.Rows) != 2 {
			t.Errorf("%s: %d rows (%v), want 2: async scheduling overlaps consecutive steps", want.Title, len(p.Rows), p.Rows)
		}
		got := p.Steps
		if len(got) != len(rows[want.PID]) {
			t.Fatalf("%s: %d step slices, %d rows", want.Title, len(got), len(rows[want.PID]))
		}
		for i, r := range rows[want.PID] {
			s := got[i]
			wantTs := int64(r.BeginNs - res.StartNs)
			if s.TsNs != wantTs || s.DurNs != int64(r.DurationMs*1e6+0.5) {
				t.Fatalf("%s step %d: ts %d ns dur %d ns, want %d and %.0f", want.Title, r.Step, s.TsNs, s.DurNs, wantTs, r.DurationMs*1e6)
			}
			if fmt.Sprint(s.Args["step"]) != fmt.Sprint(r.Step) || s.Name != string(r.Phase) ||
				fmt.Sprint(s.Args["batch_size"]) != fmt.Sprint(r.BatchSize) || fmt.Sprint(s.Args["tokens"]) != fmt.Sprint(r.NumTokens) ||
				fmt.Sprint(s.Args["prefill_tokens"]) != fmt.Sprint(r.NumPrefillTokens) || fmt.Sprint(s.Args["launches"]) != fmt.Sprint(r.Launches) ||
				fmt.Sprint(s.Args["graph_launches"]) != fmt.Sprint(r.GraphLaunches) {
				t.Fatalf("%s step %d: args %v, row %+v", want.Title, r.Step, s.Args, r)
			}
			var parts []string
			for _, c := range s.Children {
				parts = append(parts, c.Name)
			}
			wantParts := "forward,sampling,wait for output"
			if !r.OutputReadyMs.Valid {
				wantParts = "forward,sampling" // the trace ended before the output
			}
			if strings.Join(parts, ",") != wantParts {
				t.Errorf("%s step %d: parts %v, want %s", want.Title, r.Step, parts, wantParts)
			}
			if c := s.Children; len(c) > 0 && c[0].DurNs != int64(r.ForwardMs.Ms*1e6+0.5) {
				t.Errorf("%s step %d: forward %d ns, want %v ms", want.Title, r.Step, c[0].DurNs, r.ForwardMs.Ms)
			}
		}
	}
	// Counters where the value changes: every prefill wave changes both.
	if tl.Counters["batch"] < 20 || tl.Counters["tokens"] < 20 {
		t.Errorf("counters %v", tl.Counters)
	}
}

// TestTimelineWithoutLaunches: launches that were not counted are null,
// not a zero that reads as measured: all of them with --launches=off, the
// steps outside the sample with --launches=sample.
func TestTimelineWithoutLaunches(t *testing.T) {
	r := asyncTrace(10)
	r.NoLaunchProbes = true
	tl := timeline(t, analysis.Analyze(r))
	for _, p := range tl.Processes {
		for _, s := range p.Steps {
			if s.Args["launches"] != nil {
				t.Fatalf("launches = %v with --launches=off", s.Args["launches"])
			}
		}
	}

	r = asyncTrace(10)
	r.LaunchesSampled = true
	for i := range r.Steps {
		r.Steps[i].LaunchesUncounted = r.Steps[i].StepID%2 == 0
	}
	tl = timeline(t, analysis.Analyze(r))
	for _, p := range tl.Processes {
		for _, s := range p.Steps {
			even := mustInt(t, s.Args["step"])%2 == 0
			if (s.Args["launches"] == nil) != even {
				t.Fatalf("step %v: launches = %v", s.Args["step"], s.Args["launches"])
			}
		}
	}
}

// TestTimelineWithoutSyncWaits: sync waits that were not timed for the
// whole step are null, like launches: all of them with --syncs=off, the
// steps outside the sample with --syncs=sample; otherData says whether
// synchronizations were probed.
func TestTimelineWithoutSyncWaits(t *testing.T) {
	r := asyncTrace(10)
	r.NoSyncProbes = true
	var buf bytes.Buffer
	if err := report.WriteTimeline(&buf, analysis.Analyze(r), facts); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"syncs_probed":false`) {
		t.Errorf("otherData does not say syncs_probed false: %.300s", buf.String())
	}
	tl := timeline(t, analysis.Analyze(r))
	for _, p := range tl.Processes {
		for _, s := range p.Steps {
			if v, ok := s.Args["sync_wait_ms"]; !ok || v != nil {
				t.Fatalf("sync_wait_ms = %v (present %v) with --syncs=off, want null", v, ok)
			}
		}
	}

	r = asyncTrace(10)
	r.SyncsSampled = true
	for i := range r.Steps {
		r.Steps[i].SyncsUncounted = r.Steps[i].StepID%2 == 0
	}
	res := analysis.Analyze(r)
	want := map[[2]int64]string{} // pid, step -> the row's sync_wait_ms
	for _, row := range res.Rows {
		want[[2]int64{int64(row.PID), int64(row.Step)}] = fmt.Sprintf("%.3f", row.SyncWaitMs)
	}
	tl = timeline(t, res)
	for pid, p := range tl.Processes {
		for _, s := range p.Steps {
			step := mustInt(t, s.Args["step"])
			v := s.Args["sync_wait_ms"]
			switch {
			case step%2 == 0 && v != nil:
				t.Errorf("pid %d step %d: sync_wait_ms %v, want null: not counted", pid, step, v)
			case step%2 == 1 && (v == nil || fmt.Sprintf("%.3f", mustFloat(t, v)) != want[[2]int64{pid, step}]):
				t.Errorf("pid %d step %d: sync_wait_ms %v, want %s", pid, step, v, want[[2]int64{pid, step}])
			}
		}
	}
}

func mustFloat(t *testing.T, v any) float64 {
	t.Helper()
	f, err := v.(json.Number).Float64()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mustInt(t *testing.T, v any) int64 {
	t.Helper()
	n, err := v.(json.Number).Int64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTimelineEmpty: a trace without steps (no marker) still opens.
func TestTimelineEmpty(t *testing.T) {
	tl := timeline(t, analysis.Analyze(analysis.Report{StartNs: 1, EndNs: 2}))
	if len(tl.Processes) != 0 {
		t.Errorf("tracks %v", tl.Processes)
	}
}

// TestCheckTimelineCatches: the checker itself rejects what the viewers
// would show wrong, so that a passing TestTimeline means something.
func TestCheckTimelineCatches(t *testing.T) {
	head := `{"displayTimeUnit":"ms","traceEvents":[` +
		`{"name":"process_name","ph":"M","pid":1,"tid":1,"args":{"name":"VLLM::Worker_TP0"}},` +
		`{"name":"thread_name","ph":"M","pid":1,"tid":1,"args":{"name":"steps"}},`
	step := func(ts, dur string) string {
		return `{"name":"decode","cat":"step","ph":"X","pid":1,"tid":1,"ts":` + ts + `,"dur":` + dur +
			`,"args":{"step":1,"phase":"decode","batch_size":1,"tokens":1,"prefill_reqs":0,"prefill_tokens":0,"launches":1,"graph_launches":0,"sync_wait_ms":0,"duration_ms":1}}`
	}
	part := func(name, ts, dur string) string {
		return `{"name":"` + name + `","cat":"step part","ph":"X","pid":1,"tid":1,"ts":` + ts + `,"dur":` + dur + `}`
	}
	for _, tt := range []struct{ name, events string }{
		{"straddling slices", step("0", "1000") + "," + part("forward", "500", "600")},
		{"overlapping steps on one row", step("0", "1000") + "," + strings.Replace(step("500", "1000"), `"step":1`, `"step":2`, 1)},
		{"a step twice", step("0", "1000") + "," + step("2000", "1000")},
		{"parts out of order", step("0", "1000") + "," + part("sampling", "0", "100") + "," + part("forward", "100", "100")},
		{"a gap between parts", step("0", "1000") + "," + part("forward", "0", "100") + "," + part("sampling", "200", "100")},
		{"finer than nanoseconds", step("0.0001", "1000")},
		{"a part outside a step", part("forward", "0", "100")},
		{"no thread name", strings.Replace(step("0", "1000"), `"tid":1`, `"tid":2`, 1)},
	} {
		if _, err := reporttest.CheckTimeline([]byte(head + tt.events + "]}")); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	if _, err := reporttest.CheckTimeline([]byte(head + step("0", "1000") + "," + part("forward", "0", "300") + "," + part("sampling", "300", "700") + "]}")); err != nil {
		t.Errorf("a good step rejected: %v", err)
	}
}

// TestTimelineSchedCounters: each scheduler step's KV usage, running and
// waiting requests are counters at the begin of the first forward pass it
// ran, where they change, on the scheduler's process: its own track when it
// ran no steps (tensor parallelism), its steps' track when it did.
func TestTimelineSchedCounters(t *testing.T) {
	for _, tt := range []struct {
		name  string
		sched analysis.Process
		track string // the name of the track the counters are on
	}{
		{"EngineCore without steps", core, "scheduler (pid 4100)"},
		{"the scheduler's process runs the model", tp0, tp0.Title},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const n = 60
			res := analysis.Analyze(withScheds(asyncTrace(n), tt.sched.PID))
			tl := timeline(t, res)
			if p := tl.Processes[int64(tt.sched.PID)]; p == nil || p.Name != tt.track {
				t.Fatalf("scheduler track %+v, want one named %q", p, tt.track)
			}
			// Where each scheduler step's first forward pass began.
			first := map[int64]*analysis.Sched{}
			for i := len(res.Rows) - 1; i >= 0; i-- { // rows are in begin order
				r := res.Rows[i]
				first[int64(r.BeginNs-res.StartNs)] = r.Sched
			}
			got := map[string]int{}
			for _, c := range tl.CounterEvents {
				s := first[c.TsNs]
				var arg string
				var want float64
				switch c.Name {
				case "KV cache":
					arg, want = "usage %", float64(s.KVUsagePermille)/10
				case "running":
					arg, want = "requests", float64(s.RunningReqs)
				case "waiting":
					arg, want = "requests", float64(s.WaitingReqs)
				default:
					continue
				}
				got[c.Name]++
				if c.PID != int64(tt.sched.PID) || c.Args[arg] != want {
					t.Errorf("%s counter %+v, want %v on pid %d", c.Name, c, want, tt.sched.PID)
				}
			}
			// KV usage differs every step, running requests every other
			// one, waiting requests every tenth (n/10 from step 1 to n).
			if want := map[string]int{"KV cache": n, "running": n/2 + 1, "waiting": n/10 + 1}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("counters %v, want %v", got, want)
			}
		})
	}
}
