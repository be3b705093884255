package analysis

import (
	"maps"
	"slices"
)

// RankSpread measures how far apart the tensor-parallel ranks finish the same
// step. Every rank runs the same sequence of steps and the collective
// operations make the fastest wait for the slowest, so the spread is time the
// faster ranks lose, and a rank that is often the slowest points at its GPU or
// host.
type RankSpread struct {
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
}

// RankSlowest is how often one rank was the slowest of an aligned step.
type RankSlowest struct {
	Rank  int     `json:"rank"`
	PID   uint32  `json:"pid"`
	Title string  `json:"title"`
	Count int     `json:"count"`
	Share float64 `json:"share"` // Count / AlignedSteps; 0 when nothing aligned
}

// rankSpread aligns the rows of ranked processes by step id. It returns nil
// unless at least two processes with steps have distinct ranks >= 0: with one
// rank there is nothing to compare, and when two processes claim the same rank
// (several data-parallel groups, which the rank alone cannot tell apart) any
// alignment would mix groups and report a meaningless spread.
func rankSpread(rows []Row, procs processes) *RankSpread {
	byPID := make(map[uint32]map[uint64]float64) // pid -> step id -> duration
	for _, r := range rows {
		if r.Rank < 0 {
			continue
		}
		if byPID[r.PID] == nil {
			byPID[r.PID] = make(map[uint64]float64)
		}
		byPID[r.PID][r.Step] = r.DurationMs
	}
	if len(byPID) < 2 {
		return nil
	}
	ranked := make([]Process, 0, len(byPID))
	seen := make(map[int]bool)
	for pid := range byPID {
		p := procs.get(pid)
		if seen[p.Rank] {
			return nil
		}
		seen[p.Rank] = true
		ranked = append(ranked, p)
	}
	sortProcesses(ranked)

	ids := make(map[uint64]bool)
	for _, steps := range byPID {
		for id := range steps {
			ids[id] = true
		}
	}
	slowest := make([]int, len(ranked))
	var spreads []float64
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		lo, hi, slow, all := 0.0, 0.0, 0, true
		for i, p := range ranked {
			d, ok := byPID[p.PID][id]
			if !ok {
				all = false
				break
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
		}
	}

	rs := &RankSpread{AlignedSteps: len(spreads), UnalignedSteps: len(ids) - len(spreads)}
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
