package analysis

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"testing"
)

// summaryJSON renders r's summary.json and decodes it generically, as a
// user's script would.
func summaryJSON(t *testing.T, r Report) (map[string]any, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteSummary(&buf, Analyze(r).Summary); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("summary.json does not parse: %v\n%s", err, buf.Bytes())
	}
	return m, buf.Bytes()
}

// topKeys returns the object's keys in the order they are written.
func topKeys(t *testing.T, data []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func checkNumbers(t *testing.T, where string, obj any, want map[string]float64) {
	t.Helper()
	m, ok := obj.(map[string]any)
	if !ok {
		t.Fatalf("%s is %T, want an object", where, obj)
	}
	for k, w := range want {
		got, ok := m[k].(float64)
		if !ok || math.Abs(got-w) > 1e-9 {
			t.Errorf("%s.%s = %v, want %v", where, k, m[k], w)
		}
	}
}

func TestSummaryShape(t *testing.T) {
	m, raw := summaryJSON(t, tpReport())

	wantKeys := []string{"prefill", "decode", "_trace", "_processes", "_ranks", "_activity"}
	if got := topKeys(t, raw); !slices.Equal(got, wantKeys) {
		t.Errorf("top-level keys = %v, want %v (phases first, no mixed: none occurred)", got, wantKeys)
	}

	// The sitecustomize profiler's seven keys, by hand: prefill is 40 and
	// 44 ms; decode is 10,10,10,10,11,12,14 ms.
	checkNumbers(t, "prefill", m["prefill"], map[string]float64{
		"count": 2, "mean_ms": 42, "min_ms": 40, "max_ms": 44, "p50_ms": 42, "p95_ms": 43.8, "p99_ms": 43.96,
	})
	checkNumbers(t, "decode", m["decode"], map[string]float64{
		"count": 7, "mean_ms": 11, "min_ms": 10, "max_ms": 14, "p50_ms": 10, "p95_ms": 13.4, "p99_ms": 13.88,
	})
	checkNumbers(t, "decode", m["decode"], map[string]float64{
		"mean_cpu_ms": 5.5, "mean_forward_ms": 2.75, "mean_interval_ms": 20,
		"mean_launches": 100, "mean_graph_launches": 1, "mean_sync_wait_ms": 2,
		"mean_batch_size": 2, "mean_num_tokens": 2,
		"tokens_per_sec": 181.8, // 14 tokens in 77 ms
	})
	checkNumbers(t, "_trace", m["_trace"], map[string]float64{
		"duration_sec": 2, "steps": 10, "timed_steps": 9, "steps_without_duration": 1, "dropped_records": 3,
		"start_monotonic_ns": traceStart, // the zero of timestamp_sec
	})

	procs := m["_processes"].([]any)
	if len(procs) != 2 {
		t.Fatalf("_processes has %d entries, want the two workers with steps", len(procs))
	}
	checkNumbers(t, "_processes[0]", procs[0], map[string]float64{"pid": 100, "rank": 0, "steps": 5})
	checkNumbers(t, "_processes[1]", procs[1], map[string]float64{"pid": 101, "rank": 1, "steps": 4})
	if title := procs[1].(map[string]any)["title"]; title != "VLLM::Worker_TP1" {
		t.Errorf("_processes[1].title = %v", title)
	}
	tp1Phases := procs[1].(map[string]any)["phases"].(map[string]any)
	checkNumbers(t, "_processes[1].phases.decode", tp1Phases["decode"], map[string]float64{
		"count": 3, "mean_ms": 11.667, // 35/3, to the microsecond "min_ms": 10, "max_ms": 14, "p50_ms": 11,
	})

	acts := m["_activity"].([]any)
	if len(acts) != 3 {
		t.Fatalf("_activity has %d entries, want 3", len(acts))
	}
	// Ranked processes first in rank order, then the others.
	checkNumbers(t, "_activity[0]", acts[0], map[string]float64{
		"pid": 100, "launches": 4000, "launches_per_sec": 2000, "graph_launches": 20,
		"syncs": 30, "sync_wait_ms": 50, "sync_wait_share": 0.025,
	})
	checkNumbers(t, "_activity[1]", acts[1], map[string]float64{"pid": 101, "launches_per_sec": 2500, "sync_wait_share": 0.05})
	checkNumbers(t, "_activity[2]", acts[2], map[string]float64{"pid": 50, "rank": -1, "launches": 0})
}

func TestSummaryMissingValuesAreNull(t *testing.T) {
	// Only forward_end: no cpu_ms, and a single step has no interval.
	r := Report{StartNs: 1, EndNs: 1 + 1000*msNs, Steps: []Step{{PID: 1, StepID: 1, BeginNs: 10 * msNs, ForwardEndNs: 15 * msNs, NumReqs: 3}}}
	m, _ := summaryJSON(t, r)
	decode := m["decode"].(map[string]any)
	for _, k := range []string{"mean_cpu_ms", "mean_interval_ms"} {
		if v, ok := decode[k]; !ok || v != nil {
			t.Errorf("decode.%s = %v (present %v), want null", k, v, ok)
		}
	}
	checkNumbers(t, "decode", decode, map[string]float64{"count": 1, "mean_ms": 5, "p99_ms": 5, "mean_forward_ms": 5})
}

// Without the marker there are no steps: no phase keys, empty arrays where
// lists are expected, and the activity that was seen.
func TestSummaryWithoutSteps(t *testing.T) {
	r := tpReport()
	r.Steps = nil
	m, raw := summaryJSON(t, r)
	if got, want := topKeys(t, raw), []string{"_trace", "_processes", "_activity"}; !slices.Equal(got, want) {
		t.Errorf("keys = %v, want %v", got, want)
	}
	if procs, ok := m["_processes"].([]any); !ok || len(procs) != 0 {
		t.Errorf("_processes = %v, want []", m["_processes"])
	}
	if acts := m["_activity"].([]any); len(acts) != 3 {
		t.Errorf("_activity has %d entries, want 3", len(acts))
	}
}

func TestSummaryMixedPhase(t *testing.T) {
	r := Report{StartNs: 0, EndNs: 100 * msNs, Steps: []Step{
		{PID: 1, StepID: 1, BeginNs: 1 * msNs, OutputReadyNs: 9 * msNs, NumReqs: 4, NumPrefillReqs: 2},
		{PID: 1, StepID: 2, BeginNs: 10 * msNs, OutputReadyNs: 13 * msNs, NumReqs: 4},
	}}
	_, raw := summaryJSON(t, r)
	if got, want := topKeys(t, raw), []string{"decode", "mixed", "_trace", "_processes", "_activity"}; !slices.Equal(got, want) {
		t.Errorf("keys = %v, want %v", got, want)
	}
}

// TestSummarySchedKeys: with sched records, each phase object gains the
// scheduler's keys after its others and the summary a last "_scheduler"
// object with the trace's totals.
func TestSummarySchedKeys(t *testing.T) {
	r := tpReport()
	for i := range r.Steps {
		r.Steps[i].SchedKey = key(7, r.Steps[i].StepID)
	}
	for id := uint64(1); id <= 6; id++ { // 6 came after the trace's last step
		r.Scheds = append(r.Scheds, schedAt(core.PID, key(7, id), 20*id, int64(id)))
	}
	m, raw := summaryJSON(t, r)
	if got, want := topKeys(t, raw), []string{"prefill", "decode", "_trace", "_processes", "_ranks", "_activity", "_scheduler"}; !slices.Equal(got, want) {
		t.Errorf("keys = %v, want %v", got, want)
	}
	// decode: steps 2-4 on both ranks and 5 on TP0 (TP1's has no end):
	// records 2..5, each once.
	checkNumbers(t, "decode", m["decode"], map[string]float64{
		"count": 7, "mean_ms": 11, "sched_joined_steps": 4,
		"kv_cache_usage_mean": 0.1035, "running_reqs_mean": 3.5, "waiting_reqs_mean": 7,
		"preempted_reqs": 2 + 0 + 1 + 2, "token_budget_use_mean": 0.1094, "seq_budget_use_mean": 0.0137,
		"spec_acceptance_rate": 0.75,
	})
	checkNumbers(t, "prefill", m["prefill"], map[string]float64{"sched_joined_steps": 1, "kv_cache_usage_mean": 0.101})
	checkNumbers(t, "_scheduler", m["_scheduler"], map[string]float64{
		"sched_steps": 6, "joined": 5, "without_forward_pass": 1, "duplicates": 0,
		"preemptions": 1 + 2 + 0 + 1 + 2 + 0, "peak_kv_cache_usage": 0.106, "mean_kv_cache_usage": 0.1035,
		"spec_proposed": 4 * 21, "spec_accepted": 3 * 21, "acceptance_rate": 0.75,
	})
}
