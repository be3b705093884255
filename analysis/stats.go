package analysis

import (
	"encoding/json"
	"math"
	"slices"
)

// PhaseStats summarizes the rows of one phase. The first seven fields are the
// sitecustomize profiler's summary.json shape; the rest are extra keys that
// leave it intact. Millisecond values are rounded to the microsecond.
type PhaseStats struct {
	Phase Phase `json:"-"` // the key this object is written under

	Count  int     `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	MinMs  float64 `json:"min_ms"`
	MaxMs  float64 `json:"max_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P95Ms  float64 `json:"p95_ms"`
	P99Ms  float64 `json:"p99_ms"`

	// Means over the steps that have the value; null in JSON when none has.
	MeanCPUMs      OptMs `json:"mean_cpu_ms"`
	MeanForwardMs  OptMs `json:"mean_forward_ms"`
	MeanIntervalMs OptMs `json:"mean_interval_ms"`

	MeanBatchSize float64 `json:"mean_batch_size"`
	MeanNumTokens float64 `json:"mean_num_tokens"`
	// MeanLaunches is over the steps whose launches were counted
	// (LaunchCountedSteps of them: all, or those in the sampled seconds);
	// nil when none was, as when no step of a short phase fell in a
	// sampled second: a zero there would read as steps that launch nothing.
	MeanLaunches       *float64 `json:"mean_launches"`
	LaunchCountedSteps int      `json:"launch_counted_steps"`
	MeanGraphLaunches  float64  `json:"mean_graph_launches"`
	// MeanSyncWaitMs is over the steps whose synchronizations were timed
	// (SyncCountedSteps of them: all, or those in the sampled seconds);
	// absent when none was.
	MeanSyncWaitMs   OptMs `json:"mean_sync_wait_ms"`
	SyncCountedSteps int   `json:"sync_counted_steps"`
	// TokensPerSec is all tokens over all durations: the mean of the CSV's
	// throughput column weighted by duration, so one tiny step cannot
	// dominate it as it would a plain mean of per-step rates.
	TokensPerSec float64 `json:"tokens_per_sec"`

	// The scheduler's figures, after every key above.
	SchedStats
}

// MarshalJSON writes an absent value as null, so a reader can tell "never
// measured" from zero.
func (o OptMs) MarshalJSON() ([]byte, error) {
	if !o.Valid {
		return []byte("null"), nil
	}
	return json.Marshal(o.Ms)
}

// PhaseSet is the per-phase statistics in output order (prefill, decode,
// mixed), holding only the phases that occurred. In JSON it is an object keyed
// by phase.
type PhaseSet []PhaseStats

// MarshalJSON writes the phases as one object in output order.
func (s PhaseSet) MarshalJSON() ([]byte, error) {
	return marshalObject(s.members())
}

func (s PhaseSet) members() []member {
	m := make([]member, len(s))
	for i := range s {
		m[i] = member{string(s[i].Phase), s[i]}
	}
	return m
}

// Get returns the statistics of phase p, if it occurred.
func (s PhaseSet) Get(p Phase) (PhaseStats, bool) {
	for _, st := range s {
		if st.Phase == p {
			return st, true
		}
	}
	return PhaseStats{}, false
}

// phaseSet groups rows by phase and summarizes each group.
func phaseSet(rows []Row) PhaseSet {
	var set PhaseSet
	for _, p := range phases {
		var group []Row
		for _, r := range rows {
			if r.Phase == p {
				group = append(group, r)
			}
		}
		if len(group) > 0 {
			set = append(set, phaseStats(p, group))
		}
	}
	return set
}

// phaseStats summarizes a non-empty group of rows.
func phaseStats(p Phase, rows []Row) PhaseStats {
	durs := make([]float64, len(rows))
	var sumDur, sumBatch, sumTokens, sumGraphs float64
	var cpu, fwd, ivl, launches, syncs mean
	for i, r := range rows {
		durs[i] = r.DurationMs
		sumDur += r.DurationMs
		sumBatch += float64(r.BatchSize)
		sumTokens += float64(r.NumTokens)
		if !r.LaunchesOff {
			launches.add(OptMs{Ms: float64(r.Launches), Valid: true})
		}
		sumGraphs += float64(r.GraphLaunches)
		if !r.SyncsOff {
			syncs.addValue(r.SyncWaitMs)
		}
		cpu.add(r.CPUMs)
		fwd.add(r.ForwardMs)
		ivl.add(r.IntervalMs)
	}
	d := distribution(durs)
	n := float64(len(rows))
	st := PhaseStats{
		Phase:              p,
		Count:              len(rows),
		MeanMs:             d.mean,
		MinMs:              d.min,
		MaxMs:              d.max,
		P50Ms:              d.p50,
		P95Ms:              d.p95,
		P99Ms:              d.p99,
		MeanCPUMs:          cpu.result(),
		MeanForwardMs:      fwd.result(),
		MeanIntervalMs:     ivl.result(),
		MeanBatchSize:      round(sumBatch/n, 3),
		MeanNumTokens:      round(sumTokens/n, 3),
		MeanLaunches:       launches.opt(3),
		LaunchCountedSteps: launches.n,
		MeanGraphLaunches:  round(sumGraphs/n, 3),
		MeanSyncWaitMs:     syncs.result(),
		SyncCountedSteps:   syncs.n,
	}
	if sumDur > 0 {
		st.TokensPerSec = round(sumTokens/(sumDur/1e3), 1)
	}
	st.SchedStats = schedStats(rows)
	return st
}

// mean accumulates the valid values of an optional column.
type mean struct {
	sum float64
	n   int
}

func (m *mean) add(o OptMs) {
	if o.Valid {
		m.sum += o.Ms
		m.n++
	}
}

// addValue adds a value that is known.
func (m *mean) addValue(v float64) { m.add(OptMs{Ms: v, Valid: true}) }

// addKnown adds a count where it is not Unknown (or below).
func (m *mean) addKnown(v int64) {
	if v >= 0 {
		m.addValue(float64(v))
	}
}

// opt is the mean rounded to decimals, nil without values.
func (m mean) opt(decimals int) *float64 {
	if m.n == 0 {
		return nil
	}
	return ptr(round(m.sum/float64(m.n), decimals))
}

func (m mean) result() OptMs {
	if m.n == 0 {
		return OptMs{}
	}
	return OptMs{Ms: roundMs(m.sum / float64(m.n)), Valid: true}
}

// dist is the distribution of a non-empty sample of milliseconds, rounded
// like every other ms value.
type dist struct {
	mean, min, max, p50, p95, p99 float64
}

func distribution(values []float64) dist {
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	var sum float64
	for _, v := range sorted {
		sum += v
	}
	return dist{
		mean: roundMs(sum / float64(len(sorted))),
		min:  roundMs(sorted[0]),
		max:  roundMs(sorted[len(sorted)-1]),
		p50:  roundMs(percentileSorted(sorted, 50)),
		p95:  roundMs(percentileSorted(sorted, 95)),
		p99:  roundMs(percentileSorted(sorted, 99)),
	}
}

// roundMs keeps microsecond resolution: the clock is finer, but nobody
// reads nanoseconds off a forward pass and they only make the JSON noisy.
func roundMs(ms float64) float64 { return round(ms, 3) }

func round(x float64, decimals int) float64 {
	scale := math.Pow10(decimals)
	return math.Round(x*scale) / scale
}
