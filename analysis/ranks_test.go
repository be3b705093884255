package analysis

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestRankSpread(t *testing.T) {
	// Aligned steps 1-4; spreads 4 (TP1 slowest), 1 (TP1), 2 (TP0), 4 (TP1).
	// Sorted 1,2,4,4: p50 at rank 1.5 = 3, p95 at rank 2.85 = 4.
	got := Analyze(tpReport()).Summary.Ranks
	want := []*RankSpread{{
		Group:        "VLLM::Worker",
		AlignedSteps: 4, UnalignedSteps: 1,
		MeanMs: 2.75, P50Ms: 3, P95Ms: 4, P99Ms: 4, MaxMs: 4,
		Slowest: []RankSlowest{
			{Rank: 0, PID: 100, Title: "VLLM::Worker_TP0", Count: 1, Share: 0.25},
			{Rank: 1, PID: 101, Title: "VLLM::Worker_TP1", Count: 3, Share: 0.75},
		},
		Steps: []RankStep{
			{Step: 1, TimestampSec: 0, SpreadMs: 4, SlowestRank: 1},
			{Step: 2, TimestampSec: 0.02, SpreadMs: 1, SlowestRank: 1},
			{Step: 3, TimestampSec: 0.04, SpreadMs: 2, SlowestRank: 0},
			{Step: 4, TimestampSec: 0.06, SpreadMs: 4, SlowestRank: 1},
		},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rank spread =\n%+v\nwant\n%+v", got, want)
	}
}

func TestRankSpreadNeedsDistinctRanks(t *testing.T) {
	unranked := Process{PID: 300, Title: "VLLM::EngineCore", Rank: -1}
	dupe := Process{PID: 102, Title: "VLLM::Worker_TP0", Rank: 0} // a title that hides its DP group
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
				t.Errorf("Ranks = %+v, want none", got)
			}
		})
	}
}

func TestRankSpreadTiesAndNoAlignment(t *testing.T) {
	// Equal durations: the spread is 0 and the lower rank counts as slowest,
	// whatever order the records came in.
	r := Report{StartNs: traceStart, EndNs: traceStart + 100*msNs, Processes: []Process{tp0, tp1},
		Steps: []Step{tpStep(tp1, 1, 0, 10, 1, 0, 1), tpStep(tp0, 1, 0, 10, 1, 0, 1)}}
	rs := only(t, Analyze(r).Summary.Ranks)
	if rs.AlignedSteps != 1 || rs.MaxMs != 0 || rs.Slowest[0].Count != 1 || rs.Slowest[1].Count != 0 {
		t.Errorf("tie: %+v, want one aligned step of spread 0 with TP0 slowest", rs)
	}

	// Step ids that never match (the trace caught the ranks at different
	// steps): nothing aligned, everything counted as unaligned.
	r.Steps = []Step{tpStep(tp0, 1, 0, 10, 1, 0, 1), tpStep(tp1, 2, 0, 10, 1, 0, 1)}
	rs = only(t, Analyze(r).Summary.Ranks)
	if rs.AlignedSteps != 0 || rs.UnalignedSteps != 2 || rs.Slowest[0].Share != 0 {
		t.Errorf("no alignment: %+v, want 0 aligned, 2 unaligned, zero shares", rs)
	}
}

func only(t *testing.T, groups []*RankSpread) *RankSpread {
	t.Helper()
	if len(groups) != 1 {
		t.Fatalf("%d rank groups, want 1: %+v", len(groups), groups)
	}
	return groups[0]
}

// TestRankSpreadPerDataParallelGroup: two data-parallel engines of two
// tensor-parallel ranks each run different steps under the same step ids;
// each pair is aligned with itself only, and an unranked process and a
// lone rank of a third group add nothing.
func TestRankSpreadPerDataParallelGroup(t *testing.T) {
	dp0tp0 := Process{PID: 200, Title: "VLLM::Worker_DP0_TP0_EP0", Rank: 0}
	dp0tp1 := Process{PID: 201, Title: "VLLM::Worker_DP0_TP1_EP1", Rank: 1}
	dp1tp0 := Process{PID: 210, Title: "VLLM::Worker_DP1_TP0_EP2", Rank: 0}
	dp1tp1 := Process{PID: 211, Title: "VLLM::Worker_DP1_TP1_EP3", Rank: 1}
	lone := Process{PID: 220, Title: "VLLM::Worker_DP2_TP0", Rank: 0}
	engine := Process{PID: 300, Title: "VLLM::EngineCore_DP0", Rank: -1}
	procs := []Process{dp1tp1, dp0tp0, engine, dp1tp0, lone, dp0tp1}
	steps := []Step{
		// DP0: spreads 2 (TP1 slowest) and 1 (TP0).
		tpStep(dp0tp0, 1, 0, 10, 1, 0, 1), tpStep(dp0tp1, 1, 0, 12, 1, 0, 1),
		tpStep(dp0tp0, 2, 20, 11, 1, 0, 1), tpStep(dp0tp1, 2, 20, 10, 1, 0, 1),
		// DP1, same step ids, other batches: spreads 5 and 7, TP0 slowest.
		tpStep(dp1tp0, 1, 0, 30, 4, 0, 4), tpStep(dp1tp1, 1, 0, 25, 4, 0, 4),
		tpStep(dp1tp0, 2, 40, 40, 4, 0, 4), tpStep(dp1tp1, 2, 40, 33, 4, 0, 4),
		tpStep(lone, 1, 0, 99, 1, 0, 1), tpStep(engine, 1, 0, 50, 1, 0, 1),
	}
	sum := Analyze(Report{StartNs: traceStart, EndNs: traceStart + 100*msNs, Steps: steps, Processes: procs}).Summary
	if len(sum.Ranks) != 2 {
		t.Fatalf("%d groups, want DP0 and DP1: %+v", len(sum.Ranks), sum.Ranks)
	}
	dp0, dp1 := sum.Ranks[0], sum.Ranks[1]
	if dp0.Group != "VLLM::Worker_DP0" || dp0.AlignedSteps != 2 || dp0.MaxMs != 2 || dp0.MeanMs != 1.5 ||
		dp0.Slowest[0].Count != 1 || dp0.Slowest[1].Count != 1 || dp0.Slowest[0].PID != 200 {
		t.Errorf("DP0: %+v", dp0)
	}
	if dp1.Group != "VLLM::Worker_DP1" || dp1.AlignedSteps != 2 || dp1.MaxMs != 7 || dp1.MeanMs != 6 ||
		dp1.Slowest[0].Count != 2 || dp1.Slowest[0].PID != 210 {
		t.Errorf("DP1: %+v", dp1)
	}

	var order []uint32
	for _, p := range sum.Processes {
		order = append(order, p.PID)
	}
	if want := []uint32{200, 201, 210, 211, 220, 300}; !reflect.DeepEqual(order, want) {
		t.Errorf("processes in order %v, want %v (by group, then rank; unranked last)", order, want)
	}

	var js bytes.Buffer
	if err := WriteSummary(&js, sum); err != nil {
		t.Fatal(err)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(js.Bytes(), &keys); err != nil {
		t.Fatal(err)
	}
	if keys["_ranks"] != nil || keys["_rank_groups"] == nil {
		t.Errorf("several groups go under _rank_groups, not _ranks:\n%s", js.String())
	}
	var table bytes.Buffer
	if err := RenderTable(&table, sum); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Group", "VLLM::Worker_DP0", "VLLM::Worker_DP1", "TP0 100%"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestRankGroup(t *testing.T) {
	for title, want := range map[string]string{
		"VLLM::Worker_TP1":             "VLLM::Worker",
		"VLLM::Worker_TP1_EP1":         "VLLM::Worker",
		"VLLM::Worker_DP1_TP0":         "VLLM::Worker_DP1",
		"VLLM::Worker_DP0_PP1_TP3_EP3": "VLLM::Worker_DP0_PP1",
		"VLLM::EngineCore":             "VLLM::EngineCore",
	} {
		if got := rankGroup(title); got != want {
			t.Errorf("rankGroup(%q) = %q, want %q", title, got, want)
		}
	}
}

func TestRankOf(t *testing.T) {
	for title, want := range map[string]int{
		"VLLM::Worker_TP0": 0, "VLLM::Worker_TP1_EP1": 1, "VLLM::Worker_TP12": 12,
		"VLLM::EngineCore": -1, "python3 -m vllm": -1,
	} {
		if got := RankOf(title); got != want {
			t.Errorf("RankOf(%q) = %d, want %d", title, got, want)
		}
	}
}
