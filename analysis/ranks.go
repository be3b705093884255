package analysis

import (
	"maps"
	"regexp"
	"slices"
	"strconv"
)

// RankSpread measures how far apart the tensor-parallel ranks finish the same
// step. Every rank runs the same sequence of steps and the collective
// operations make the fastest wait for the slowest, so the spread is time the
// faster ranks lose, and a rank that is often the slowest points at its GPU or
// host.
type RankSpread struct {
	// Group names the tensor-parallel group: the workers' title up to its
	// _TP<n> part ("VLLM::Worker", "VLLM::Worker_DP1"). vLLM titles each
	// worker by its data- and pipeline-parallel ranks first, so ranks of
	// different groups, which run different steps, are never mixed.
	Group string `json:"group"`
	// AlignedSteps is the number of step ids that every rank timed; the
	// statistics below are over those steps and are zero when there are none.
	AlignedSteps int `json:"count"`
	// UnalignedSteps is the number of step ids that only some ranks timed,
	// normally the few at the edges of the trace.
	UnalignedSteps int `json:"unaligned_steps"`

	// Spread of one aligned step: slowest minus fastest duration_ms.
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P95Ms  float64 `json:"p95_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`

	// Slowest has one entry per rank, in rank order.
	Slowest []RankSlowest `json:"slowest"`

	// Steps is the spread of every aligned step in step order, for plots
	// over time; summary.json keeps only the statistics above.
	Steps []RankStep `json:"-"`
}

// RankStep is one aligned step of a tensor-parallel group.
type RankStep struct {
	Step         uint64
	TimestampSec float64 // the earliest rank's step_begin, seconds since the trace start
	SpreadMs     float64 // slowest minus fastest duration_ms
	SlowestRank  int
}

// RankSlowest is how often one rank was the slowest of an aligned step.
type RankSlowest struct {
	Rank  int     `json:"rank"`
	PID   uint32  `json:"pid"`
	Title string  `json:"title"`
	Count int     `json:"count"`
	Share float64 `json:"share"` // Count / AlignedSteps; 0 when nothing aligned
}

// tpPart is the _TP<n> part of a vLLM worker's title, which names its
// tensor-parallel rank.
var tpPart = regexp.MustCompile(`_TP(\d+)`)

// RankOf returns the tensor-parallel rank in a vLLM process title such as
// "VLLM::Worker_TP1" or "VLLM::Worker_DP0_TP1_EP1", or -1.
func RankOf(title string) int {
	m := tpPart.FindStringSubmatch(title)
	if m == nil {
		return -1
	}
	r, err := strconv.Atoi(m[1])
	if err != nil {
		return -1
	}
	return r
}

// rankGroup returns the tensor-parallel group of a worker's title: the title
// before its _TP<n> part ("VLLM::Worker_DP1_TP0_EP0" -> "VLLM::Worker_DP1").
func rankGroup(title string) string {
	if loc := tpPart.FindStringIndex(title); loc != nil {
		return title[:loc[0]]
	}
	return title
}

// rankSpreads returns the cross-rank spread of each tensor-parallel group
// with at least two ranked processes that timed steps, by group name. A
// group where two processes claim the same rank (titles that do not tell
// their data-parallel groups apart) is left out: any alignment would mix
// groups and report a meaningless spread.
func rankSpreads(rows []Row, procs processes) []*RankSpread {
	byPID := make(map[uint32]map[uint64]rankCell) // pid -> step id -> its row's values
	for _, r := range rows {
		if r.Rank < 0 {
			continue
		}
		if byPID[r.PID] == nil {
			byPID[r.PID] = make(map[uint64]rankCell)
		}
		byPID[r.PID][r.Step] = rankCell{r.DurationMs, r.TimestampSec}
	}
	groups := make(map[string][]Process)
	for pid := range byPID {
		p := procs.get(pid)
		g := rankGroup(p.Title)
		groups[g] = append(groups[g], p)
	}
	var out []*RankSpread
	for _, name := range slices.Sorted(maps.Keys(groups)) {
		if rs := rankSpread(name, groups[name], byPID); rs != nil {
			out = append(out, rs)
		}
	}
	return out
}

// rankCell is what the alignment needs of one rank's step.
type rankCell struct {
	durationMs, timestampSec float64
}

// rankSpread aligns the steps of one group's processes by step id, or
// returns nil when fewer than two distinct ranks are there.
func rankSpread(group string, ranked []Process, byPID map[uint32]map[uint64]rankCell) *RankSpread {
	if len(ranked) < 2 {
		return nil
	}
	seen := make(map[int]bool)
	for _, p := range ranked {
		if seen[p.Rank] {
			return nil
		}
		seen[p.Rank] = true
	}
	sortProcesses(ranked)

	ids := make(map[uint64]bool)
	for _, p := range ranked {
		for id := range byPID[p.PID] {
			ids[id] = true
		}
	}
	slowest := make([]int, len(ranked))
	var spreads []float64
	var steps []RankStep
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		lo, hi, ts, slow, all := 0.0, 0.0, 0.0, 0, true
		for i, p := range ranked {
			c, ok := byPID[p.PID][id]
			if !ok {
				all = false
				break
			}
			d := c.durationMs
			if i == 0 || c.timestampSec < ts {
				ts = c.timestampSec
			}
			// Strict comparisons: on a tie the lower rank keeps the title
			// of slowest, so the count does not depend on map order.
			if i == 0 || d > hi {
				hi, slow = d, i
			}
			if i == 0 || d < lo {
				lo = d
			}
		}
		if all {
			spreads = append(spreads, hi-lo)
			slowest[slow]++
			steps = append(steps, RankStep{Step: id, TimestampSec: ts, SpreadMs: hi - lo, SlowestRank: ranked[slow].Rank})
		}
	}

	rs := &RankSpread{Group: group, AlignedSteps: len(spreads), UnalignedSteps: len(ids) - len(spreads), Steps: steps}
	if len(spreads) > 0 {
		d := distribution(spreads)
		rs.MeanMs, rs.P50Ms, rs.P95Ms, rs.P99Ms, rs.MaxMs = d.mean, d.p50, d.p95, d.p99, d.max
	}
	for i, p := range ranked {
		s := RankSlowest{Rank: p.Rank, PID: p.PID, Title: p.Title, Count: slowest[i]}
		if len(spreads) > 0 {
			s.Share = round(float64(slowest[i])/float64(len(spreads)), 4)
		}
		rs.Slowest = append(rs.Slowest, s)
	}
	return rs
}
