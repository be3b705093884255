package analysis

import (
	"cmp"
	"slices"
)

// OptMs is a duration in milliseconds that may be absent, e.g. cpu_ms of a
// step whose sample_end never came. Absent values are empty CSV cells and are
// left out of means.
type OptMs struct {
	Ms    float64
	Valid bool
}

// Row is one timed step as it appears in forward_pass_timing.csv.
type Row struct {
	TimestampSec           float64 // step_begin, seconds since the trace start
	Phase                  Phase
	BatchSize              uint32 // requests in the step
	NumTokens              uint32
	DurationMs             float64 // step_begin -> output_ready (or the fallback)
	ThroughputTokensPerSec float64 // NumTokens / duration; 0 for a zero duration

	PID           uint32
	Step          uint64 // the marker's step_id
	CPUMs         OptMs  // step_begin -> sample_end
	IntervalMs    OptMs  // step_begin -> the same process's next step_begin
	Launches      uint32
	GraphLaunches uint32
	SyncWaitMs    float64
	// LaunchesOff: launches were not probed for the whole step (off, or
	// sampled at other times); the launches cell is empty.
	LaunchesOff bool
	// SyncsOff: synchronizations were not timed for the whole step (off,
	// or sampled at other times); the sync_wait_ms cell is empty.
	SyncsOff bool

	Rank             int    // -1 when the process has none
	Process          string // vLLM process title
	NumPrefillReqs   uint32
	NumPrefillTokens uint32
	ForwardMs        OptMs // step_begin -> forward_end
	// Status is empty for a finished step; for one that never finished,
	// why: its duration is then the fallback of the points that came.
	Status Status

	// Sched is the scheduler step this forward pass ran (joined by
	// sched_key), nil when it has none: the scheduler's CSV columns are
	// then empty. Rows of tensor-parallel ranks share it.
	Sched *Sched

	// Not CSV columns: what the timeline needs to draw the step.
	BeginNs       uint64 // step_begin on the steps' clock (CLOCK_MONOTONIC)
	OutputReadyMs OptMs  // step_begin -> output_ready; DurationMs falls back where it is absent
}

// Status says why a row's step never finished.
type Status string

const (
	StatusFinished  Status = ""
	StatusOpenAtEnd Status = "open_at_end" // still running when the trace ended
	StatusEvicted   Status = "evicted"     // flushed when a newer step needed its slot
)

func statusOf(s Step) Status {
	switch {
	case s.OpenAtEnd:
		return StatusOpenAtEnd
	case s.Evicted:
		return StatusEvicted
	}
	return StatusFinished
}

const nsPerMs = 1e6

// since returns the time from begin to a later point in ms. A point that is
// zero never came; a point before begin cannot belong to the step, so it is
// treated the same way instead of wrapping around to a huge duration.
func since(begin, point uint64) OptMs {
	if begin == 0 || point == 0 || point < begin {
		return OptMs{}
	}
	return OptMs{Ms: float64(point-begin) / nsPerMs, Valid: true}
}

// duration is step_begin -> output_ready, falling back to sample_end and then
// forward_end when the later point never came (the trace ended mid-step, or a
// runner path without a separate output or sampling point).
func duration(s Step) OptMs {
	for _, end := range [...]uint64{s.OutputReadyNs, s.SampleEndNs, s.ForwardEndNs} {
		if d := since(s.BeginNs, end); d.Valid {
			return d
		}
	}
	return OptMs{}
}

// notProbed says which classes of CUDA calls no probe counted in the whole
// trace (--launches=off, --syncs=off): every row's cell is then empty.
type notProbed struct{ launches, syncs bool }

// buildRows turns steps, in any order and from any number of processes, into
// one row per step with a duration, ordered by step_begin. Steps without a
// duration are not rows, but their step_begin still ends the previous step's
// interval; their number is returned so outputs can say they existed.
// startNs is the trace start on the same clock as the steps; scheds gives
// each row its scheduler step.
func buildRows(steps []Step, startNs uint64, procs processes, off notProbed, scheds schedJoin) (rows []Row, withoutDuration int) {
	order := make([]int, len(steps))
	for i := range order {
		order[i] = i
	}
	// Ties are broken by pid and step id so the output never depends on the
	// order records arrived in.
	slices.SortFunc(order, func(a, b int) int {
		sa, sb := &steps[a], &steps[b]
		return cmp.Or(cmp.Compare(sa.BeginNs, sb.BeginNs), cmp.Compare(sa.PID, sb.PID), cmp.Compare(sa.StepID, sb.StepID))
	})

	interval := make([]OptMs, len(steps))
	prev := make(map[uint32]int) // pid -> index of its latest step so far
	for _, i := range order {
		s := &steps[i]
		if s.BeginNs == 0 {
			continue
		}
		if p, ok := prev[s.PID]; ok {
			interval[p] = since(steps[p].BeginNs, s.BeginNs)
		}
		prev[s.PID] = i
	}

	rows = make([]Row, 0, len(steps))
	for _, i := range order {
		s := steps[i]
		d := duration(s)
		if !d.Valid {
			withoutDuration++
			continue
		}
		p := procs.get(s.PID)
		r := Row{
			// Signed, so a step that began just before the caller's start
			// shows as a small negative time rather than a wrapped one.
			TimestampSec:     float64(int64(s.BeginNs-startNs)) / 1e9,
			Phase:            PhaseOf(s),
			BatchSize:        s.NumReqs,
			NumTokens:        s.NumTokens,
			DurationMs:       d.Ms,
			PID:              s.PID,
			Step:             s.StepID,
			CPUMs:            since(s.BeginNs, s.SampleEndNs),
			IntervalMs:       interval[i],
			Launches:         s.Launches,
			GraphLaunches:    s.GraphLaunches,
			SyncWaitMs:       float64(s.SyncWaitNs) / nsPerMs,
			LaunchesOff:      off.launches || s.LaunchesUncounted,
			SyncsOff:         off.syncs || s.SyncsUncounted,
			Rank:             p.Rank,
			Process:          p.Title,
			NumPrefillReqs:   s.NumPrefillReqs,
			NumPrefillTokens: s.NumPrefillTokens,
			ForwardMs:        since(s.BeginNs, s.ForwardEndNs),
			BeginNs:          s.BeginNs,
			OutputReadyMs:    since(s.BeginNs, s.OutputReadyNs),
			Status:           statusOf(s),
			Sched:            scheds.of(s),
		}
		if d.Ms > 0 {
			r.ThroughputTokensPerSec = float64(s.NumTokens) / (d.Ms / 1e3)
		}
		rows = append(rows, r)
	}
	return rows, withoutDuration
}
