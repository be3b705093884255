package analysis

import (
	"reflect"
	"testing"
)

func TestRankSpread(t *testing.T) {
	// Aligned steps 1-4; spreads 4 (TP1 slowest), 1 (TP1), 2 (TP0), 4 (TP1).
	// Sorted 1,2,4,4: p50 at rank 1.5 = 3, p95 at rank 2.85 = 4.
	got := Analyze(tpReport()).Summary.Ranks
	want := &RankSpread{
		AlignedSteps: 4, UnalignedSteps: 1,
		MeanMs: 2.75, P50Ms: 3, P95Ms: 4, P99Ms: 4, MaxMs: 4,
		Slowest: []RankSlowest{
			{Rank: 0, PID: 100, Title: "VLLM::Worker_TP0", Count: 1, Share: 0.25},
			{Rank: 1, PID: 101, Title: "VLLM::Worker_TP1", Count: 3, Share: 0.75},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rank spread =\n%+v\nwant\n%+v", got, want)
	}
}

func TestRankSpreadNeedsDistinctRanks(t *testing.T) {
	unranked := Process{PID: 300, Title: "VLLM::EngineCore", Rank: -1}
	dupe := Process{PID: 102, Title: "VLLM::Worker_DP1_TP0", Rank: 0}
	steps := func(ps ...Process) []Step {
		var s []Step
		for _, p := range ps {
			s = append(s, tpStep(p, 1, 0, 10, 1, 0, 1), tpStep(p, 2, 20, 10, 1, 0, 1))
		}
		return s
	}
	tests := []struct {
		name  string
		procs []Process
	}{
		{"one rank", []Process{tp0}},
		{"one rank and an unranked process", []Process{tp0, unranked}},
		{"two processes claim rank 0", []Process{tp0, tp1, dupe}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Report{StartNs: traceStart, EndNs: traceStart + 100*msNs, Steps: steps(tt.procs...), Processes: tt.procs}
			if got := Analyze(r).Summary.Ranks; got != nil {
				t.Errorf("Ranks = %+v, want nil", got)
			}
		})
	}
}

func TestRankSpreadTiesAndNoAlignment(t *testing.T) {
	// Equal durations: the spread is 0 and the lower rank counts as slowest,
	// whatever order the records came in.
	r := Report{StartNs: traceStart, EndNs: traceStart + 100*msNs, Processes: []Process{tp0, tp1},
		Steps: []Step{tpStep(tp1, 1, 0, 10, 1, 0, 1), tpStep(tp0, 1, 0, 10, 1, 0, 1)}}
	rs := Analyze(r).Summary.Ranks
	if rs == nil || rs.AlignedSteps != 1 || rs.MaxMs != 0 || rs.Slowest[0].Count != 1 || rs.Slowest[1].Count != 0 {
		t.Errorf("tie: %+v, want one aligned step of spread 0 with TP0 slowest", rs)
	}

	// Step ids that never match (the trace caught the ranks at different
	// steps): nothing aligned, everything counted as unaligned.
	r.Steps = []Step{tpStep(tp0, 1, 0, 10, 1, 0, 1), tpStep(tp1, 2, 0, 10, 1, 0, 1)}
	rs = Analyze(r).Summary.Ranks
	if rs == nil || rs.AlignedSteps != 0 || rs.UnalignedSteps != 2 || rs.Slowest[0].Share != 0 {
		t.Errorf("no alignment: %+v, want 0 aligned, 2 unaligned, zero shares", rs)
	}
}
