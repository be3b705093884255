package analysis

import (
	"bytes"
	"encoding/csv"
	"slices"
	"testing"
)

// csvRecords writes rows as WriteCSV does and reads them back, header first.
func csvRecords(t *testing.T, rows []Row) [][]string {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteCSV(&buf, rows); err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("output does not parse as CSV: %v", err)
	}
	return records
}

func TestCSV(t *testing.T) {
	records := csvRecords(t, Analyze(tpReport()).Rows)
	seed := []string{"timestamp_sec", "phase", "batch_size", "num_tokens", "duration_ms", "throughput_tokens_per_sec"}
	if !slices.Equal(records[0][:6], seed) {
		t.Errorf("first six columns = %v, want the sitecustomize profiler's %v", records[0][:6], seed)
	}
	next := []string{"pid", "step", "cpu_ms", "interval_ms", "launches", "graph_launches", "sync_wait_ms"}
	if !slices.Equal(records[0][6:13], next) {
		t.Errorf("columns 7-13 = %v, want %v", records[0][6:13], next)
	}
	if len(records) != 1+9 {
		t.Fatalf("got %d lines, want header + 9 timed steps", len(records))
	}

	col := func(rec []string, name string) string {
		return rec[slices.Index(records[0], name)]
	}
	// Rows are in time order; both ranks begin step 1 at 0 and the pid
	// breaks the tie.
	first, second := records[1], records[2]
	wantFirst := map[string]string{
		"timestamp_sec": "0.000000", "phase": "prefill", "batch_size": "1", "num_tokens": "128",
		"duration_ms": "40.000", "throughput_tokens_per_sec": "3200.0",
		"pid": "100", "step": "1", "cpu_ms": "20.000", "interval_ms": "20.000",
		"launches": "100", "graph_launches": "1", "sync_wait_ms": "2.000",
		"rank": "0", "process": "VLLM::Worker_TP0", "num_prefill_reqs": "1", "num_prefill_tokens": "128",
		"forward_ms": "10.000",
	}
	for name, want := range wantFirst {
		if got := col(first, name); got != want {
			t.Errorf("first row %s = %q, want %q", name, got, want)
		}
	}
	if col(second, "pid") != "101" || col(second, "duration_ms") != "44.000" {
		t.Errorf("second row = %v, want TP1's step 1 of 44 ms", second)
	}
	// TP0's step 5 is its last: no next begin, so no interval.
	last := records[len(records)-1]
	if col(last, "step") != "5" || col(last, "interval_ms") != "" {
		t.Errorf("last row step %q interval %q, want step 5 with an empty interval", col(last, "step"), col(last, "interval_ms"))
	}
}

func TestCSVEmptyHasHeader(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteCSV(&buf, nil); err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(records) != 1 || !slices.Equal(records[0], csvHeader) {
		t.Errorf("empty CSV = %v, %v; want the header alone", records, err)
	}
}

func TestCSVQuotesTitles(t *testing.T) {
	rows := []Row{{Phase: PhaseDecode, Process: `odd, "title"`, Rank: -1}}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, rows); err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := records[1][slices.Index(csvHeader, "process")]; got != `odd, "title"` {
		t.Errorf("process read back as %q", got)
	}
	if got := records[1][slices.Index(csvHeader, "rank")]; got != "" {
		t.Errorf("rank of an unranked process = %q, want empty", got)
	}
}

// TestCSVSchedColumns: the scheduler's columns come after all the others, in
// the contract's order; a joined row has its record's values, -1 and rows
// without a record are empty cells.
func TestCSVSchedColumns(t *testing.T) {
	full := schedAt(core.PID, key(1, 1), 11, 8) // kv 108‰, 512 of 2048 tokens, 8 of 256 requests
	full.PreemptedReqs = 0
	unknown := schedAt(core.PID, key(1, 2), 21, 3)
	unknown.KVUsagePermille, unknown.SpecProposed, unknown.SpecAccepted, unknown.MaxNumSeqs = -1, -1, -1, 0
	res := Analyze(Report{StartNs: traceStart, EndNs: traceStart + 100*msNs, Steps: []Step{
		keyed(tpStep(core, 1, 0, 10, 2, 0, 2), key(1, 1)),
		keyed(tpStep(core, 2, 10, 10, 2, 0, 2), key(1, 2)),
		tpStep(core, 3, 20, 10, 2, 0, 2),
	}, Scheds: []Sched{full, unknown}})
	records := csvRecords(t, res.Rows)
	names := []string{"kv_cache_usage", "running_reqs", "waiting_reqs", "preempted_reqs",
		"token_budget_use", "seq_budget_use", "spec_proposed", "spec_accepted"}
	if h := records[0]; !slices.Equal(h[len(h)-len(names):], names) || h[len(h)-len(names)-1] != "status" {
		t.Fatalf("header %v: want the scheduler's columns right after status", h)
	}
	want := [][]string{
		{"0.108", "8", "16", "0", "0.250", "0.031", "32", "24"},
		{"", "3", "6", "0", "0.094", "", "", ""}, // seq budget of 0: no share
		{"", "", "", "", "", "", "", ""},
	}
	for i, w := range want {
		rec := records[1+i]
		if got := rec[len(rec)-len(names):]; !slices.Equal(got, w) {
			t.Errorf("row %d scheduler cells %q, want %q", i+1, got, w)
		}
	}
}
