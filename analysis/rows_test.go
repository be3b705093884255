package analysis

import (
	"math"
	"testing"
)

const msNs = 1_000_000 // one millisecond in ns, to write test times readably

func TestPhaseOf(t *testing.T) {
	tests := []struct {
		reqs, prefill uint32
		want          Phase
	}{
		{1, 1, PhasePrefill},
		{8, 8, PhasePrefill},
		{8, 0, PhaseDecode},
		{8, 3, PhaseMixed},
		{2, 1, PhaseMixed},
		{0, 0, PhasePrefill}, // the prefill rule is checked first
	}
	for _, tt := range tests {
		if got := PhaseOf(Step{NumReqs: tt.reqs, NumPrefillReqs: tt.prefill}); got != tt.want {
			t.Errorf("PhaseOf(reqs=%d, prefill=%d) = %s, want %s", tt.reqs, tt.prefill, got, tt.want)
		}
	}
}

func TestDurationFallbacks(t *testing.T) {
	const b = 1000 * msNs
	tests := []struct {
		name                 string
		step                 Step
		wantDur              OptMs
		wantCPU, wantForward OptMs
	}{
		{"all points: output_ready",
			Step{BeginNs: b, ForwardEndNs: b + 2*msNs, SampleEndNs: b + 3*msNs, OutputReadyNs: b + 9*msNs},
			OptMs{9, true}, OptMs{3, true}, OptMs{2, true}},
		{"no output_ready: sample_end",
			Step{BeginNs: b, ForwardEndNs: b + 2*msNs, SampleEndNs: b + 3*msNs},
			OptMs{3, true}, OptMs{3, true}, OptMs{2, true}},
		{"only forward_end",
			Step{BeginNs: b, ForwardEndNs: b + 2*msNs},
			OptMs{2, true}, OptMs{}, OptMs{2, true}},
		{"output_ready without forward_end",
			Step{BeginNs: b, OutputReadyNs: b + 5*msNs},
			OptMs{5, true}, OptMs{}, OptMs{}},
		{"no end point", Step{BeginNs: b}, OptMs{}, OptMs{}, OptMs{}},
		{"point before begin is not used",
			Step{BeginNs: b, SampleEndNs: b + 4*msNs, OutputReadyNs: b - msNs},
			OptMs{4, true}, OptMs{4, true}, OptMs{}},
		{"no begin", Step{OutputReadyNs: b}, OptMs{}, OptMs{}, OptMs{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := duration(tt.step); got != tt.wantDur {
				t.Errorf("duration = %+v, want %+v", got, tt.wantDur)
			}
			rows, without := buildRows([]Step{tt.step}, b, nil, notProbed{}, schedJoin{})
			if !tt.wantDur.Valid {
				if len(rows) != 0 || without != 1 {
					t.Fatalf("got %d rows and %d without duration, want 0 and 1", len(rows), without)
				}
				return
			}
			if len(rows) != 1 || without != 0 {
				t.Fatalf("got %d rows and %d without duration, want 1 and 0", len(rows), without)
			}
			r := rows[0]
			if r.DurationMs != tt.wantDur.Ms || r.CPUMs != tt.wantCPU || r.ForwardMs != tt.wantForward {
				t.Errorf("row duration %v cpu %+v forward %+v, want %v %+v %+v",
					r.DurationMs, r.CPUMs, r.ForwardMs, tt.wantDur.Ms, tt.wantCPU, tt.wantForward)
			}
		})
	}
}

// TestRowsIntervalsInterleavedPIDs feeds two processes' steps shuffled and
// checks time order, per-process intervals (including across a step without
// duration) and the labels.
func TestRowsIntervalsInterleavedPIDs(t *testing.T) {
	const start = 5000 * msNs
	step := func(pid uint32, id uint64, beginMs, durMs uint64) Step {
		s := Step{PID: pid, StepID: id, BeginNs: start + beginMs*msNs, NumReqs: 2, NumTokens: 10}
		if durMs > 0 {
			s.OutputReadyNs = s.BeginNs + durMs*msNs
		}
		return s
	}
	steps := []Step{
		step(20, 2, 25, 4),
		step(10, 1, 0, 8),
		step(10, 3, 30, 8),
		step(20, 1, 5, 4),
		step(10, 2, 12, 0), // no end point: not a row, but ends step 1's interval
	}
	procs := newProcesses([]Process{{PID: 10, Title: "VLLM::Worker_TP0", Rank: 0}}, nil)
	rows, without := buildRows(steps, start, procs, notProbed{}, schedJoin{})
	if without != 1 {
		t.Errorf("without duration = %d, want 1", without)
	}
	type want struct {
		pid      uint32
		step     uint64
		ts       float64
		interval OptMs
		rank     int
		process  string
	}
	wants := []want{
		{10, 1, 0.000, OptMs{12, true}, 0, "VLLM::Worker_TP0"},
		{20, 1, 0.005, OptMs{20, true}, -1, ""},
		{20, 2, 0.025, OptMs{}, -1, ""},
		{10, 3, 0.030, OptMs{}, 0, "VLLM::Worker_TP0"},
	}
	if len(rows) != len(wants) {
		t.Fatalf("got %d rows, want %d: %+v", len(rows), len(wants), rows)
	}
	for i, w := range wants {
		r := rows[i]
		if r.PID != w.pid || r.Step != w.step || math.Abs(r.TimestampSec-w.ts) > 1e-12 ||
			r.IntervalMs != w.interval || r.Rank != w.rank || r.Process != w.process {
			t.Errorf("row %d = pid %d step %d ts %v interval %+v rank %d %q, want %+v",
				i, r.PID, r.Step, r.TimestampSec, r.IntervalMs, r.Rank, r.Process, w)
		}
	}
}

func TestRowFields(t *testing.T) {
	s := Step{
		PID: 7, StepID: 42, BeginNs: 3000 * msNs, OutputReadyNs: 3020 * msNs,
		NumReqs: 4, NumTokens: 300, NumPrefillReqs: 1, NumPrefillTokens: 297,
		Launches: 250, GraphLaunches: 1, SyncWaitNs: 1500_000,
	}
	rows, _ := buildRows([]Step{s}, 1000*msNs, nil, notProbed{}, schedJoin{})
	r := rows[0]
	if r.Phase != PhaseMixed || r.BatchSize != 4 || r.NumTokens != 300 ||
		r.NumPrefillReqs != 1 || r.NumPrefillTokens != 297 || r.Launches != 250 || r.GraphLaunches != 1 {
		t.Errorf("counts copied wrong: %+v", r)
	}
	if r.TimestampSec != 2 || r.DurationMs != 20 || r.SyncWaitMs != 1.5 {
		t.Errorf("timestamp %v duration %v sync %v, want 2 20 1.5", r.TimestampSec, r.DurationMs, r.SyncWaitMs)
	}
	if r.ThroughputTokensPerSec != 15000 { // 300 tokens in 20 ms
		t.Errorf("throughput = %v, want 15000", r.ThroughputTokensPerSec)
	}
}

func TestLiveLine(t *testing.T) {
	s := Step{PID: 4242, StepID: 17, BeginNs: 100, OutputReadyNs: 100 + 45_230_000, NumReqs: 1, NumTokens: 128, NumPrefillReqs: 1}
	got, ok := LiveLine(s)
	want := "[Forward Pass] prefill: 45.23ms (batch=1, tokens=128) pid=4242 step=17"
	if !ok || got != want {
		t.Errorf("LiveLine = %q, %v; want %q, true", got, ok, want)
	}
	if _, ok := LiveLine(Step{BeginNs: 100}); ok {
		t.Error("LiveLine of a step without end point: ok = true, want false")
	}
}
