package analysis

import (
	"encoding/json"
	"slices"
	"testing"
)

// TestStepsAtTheEdges: a step still open at the end is a row with the
// points that came (here forward_end) and status open_at_end, or, with no
// point after step_begin, is counted without a duration; an evicted step's
// row says so; a finished step's status is empty. _trace counts the open
// ones and the steps the tracer left out because they began before the
// probes were live.
func TestStepsAtTheEdges(t *testing.T) {
	b := uint64(traceStart)
	steps := []Step{
		{PID: 7, StepID: 1, BeginNs: b, ForwardEndNs: b + 5*msNs, SampleEndNs: b + 6*msNs, OutputReadyNs: b + 8*msNs, NumReqs: 1, NumTokens: 1},
		{PID: 7, StepID: 2, BeginNs: b + 10*msNs, ForwardEndNs: b + 15*msNs, NumReqs: 1, NumTokens: 1, Evicted: true},
		// A long prefill: forward ended, sampling not yet.
		{PID: 7, StepID: 3, BeginNs: b + 20*msNs, ForwardEndNs: b + 320*msNs, NumReqs: 1, NumTokens: 4096, NumPrefillReqs: 1, NumPrefillTokens: 4096, Launches: 500, OpenAtEnd: true},
		// Begun just before the end: no point came.
		{PID: 8, StepID: 9, BeginNs: b + 330*msNs, NumReqs: 1, NumTokens: 1, OpenAtEnd: true},
	}
	res := Analyze(Report{StartNs: b, EndNs: b + 340*msNs, Steps: steps, StepsBeforeProbes: 3})
	records := csvRecords(t, res.Rows)
	col := slices.Index(records[0], "status")
	if col < 13 {
		t.Fatalf("status column at %d in %v, want after the first 13", col, records[0])
	}
	var got [][2]string
	for _, r := range records[1:] {
		got = append(got, [2]string{r[slices.Index(records[0], "step")], r[col]})
	}
	want := [][2]string{{"1", ""}, {"2", "evicted"}, {"3", "open_at_end"}}
	if !slices.Equal(got, want) {
		t.Errorf("step, status = %v, want %v", got, want)
	}
	open := res.Rows[2]
	if open.DurationMs != 300 || open.Phase != PhasePrefill || open.Launches != 500 || open.CPUMs.Valid {
		t.Errorf("open step's row %+v: want the forward_end fallback of 300 ms, prefill, 500 launches, no cpu_ms", open)
	}
	tr := res.Summary.Trace
	if tr.Steps != 4 || tr.TimedSteps != 3 || tr.StepsWithoutDuration != 1 || tr.StepsOpenAtEnd != 2 || tr.StepsBeforeProbes != 3 {
		t.Errorf("_trace = %+v: want 4 steps, 3 timed, 1 without duration, 2 open at the end, 3 before the probes", tr)
	}
	js, err := json.Marshal(res.Summary)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Trace map[string]any `json:"_trace"`
	}
	if err := json.Unmarshal(js, &m); err != nil || m.Trace["steps_open_at_end"] != 2.0 || m.Trace["steps_before_probes"] != 3.0 {
		t.Errorf("summary.json _trace = %v (%v)", m.Trace, err)
	}
}
