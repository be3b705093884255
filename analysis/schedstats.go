package analysis

// SchedStats are the scheduler's figures for a group of rows (a phase),
// over the distinct sched records the rows joined: with tensor parallelism
// one record joins a row in every rank, and counts once. Values are null in
// JSON where no joined record knew them.
type SchedStats struct {
	KVCacheUsageMean   *float64 `json:"kv_cache_usage_mean"` // fraction of the cache, 0..1
	RunningReqsMean    *float64 `json:"running_reqs_mean"`
	WaitingReqsMean    *float64 `json:"waiting_reqs_mean"`
	PreemptedReqs      *int64   `json:"preempted_reqs"` // sum
	TokenBudgetUseMean *float64 `json:"token_budget_use_mean"`
	SeqBudgetUseMean   *float64 `json:"seq_budget_use_mean"`
	// SpecAcceptanceRate is accepted over proposed draft tokens, summed.
	SpecAcceptanceRate *float64 `json:"spec_acceptance_rate"`
	// SchedJoinedSteps counts the scheduler steps the figures are over.
	SchedJoinedSteps int `json:"sched_joined_steps"`

	peakKV *float64 // for the console table
}

// SchedulerTotals is "_scheduler": the trace's totals over every sched
// record, joined to a forward pass or not.
type SchedulerTotals struct {
	SchedSteps         int `json:"sched_steps"`
	Joined             int `json:"joined"`
	WithoutForwardPass int `json:"without_forward_pass"`
	// Duplicates are records whose key an earlier one had: counted in the
	// totals (each is a scheduler step), joined to nothing.
	Duplicates       int      `json:"duplicates"`
	Preemptions      int64    `json:"preemptions"`
	PeakKVCacheUsage *float64 `json:"peak_kv_cache_usage"`
	MeanKVCacheUsage *float64 `json:"mean_kv_cache_usage"`
	SpecProposed     *int64   `json:"spec_proposed"`
	SpecAccepted     *int64   `json:"spec_accepted"`
	AcceptanceRate   *float64 `json:"acceptance_rate"`

	meanWaiting *float64 // for the console table
}

// schedAcc accumulates sched records into SchedStats and totals.
type schedAcc struct {
	n                                  int
	kv, running, waiting, tokens, seqs mean
	peakKV                             float64
	kvSeen, preemptSeen, specSeen      bool
	preempted, proposed, accepted      int64
}

func (a *schedAcc) add(s *Sched) {
	a.n++
	if kv, ok := s.kvUsage(); ok {
		a.kv.addValue(kv)
		if !a.kvSeen || kv > a.peakKV {
			a.peakKV = kv
		}
		a.kvSeen = true
	}
	a.running.addKnown(s.RunningReqs)
	a.waiting.addKnown(s.WaitingReqs)
	if v, ok := s.tokenBudgetUse(); ok {
		a.tokens.addValue(v)
	}
	if v, ok := s.seqBudgetUse(); ok {
		a.seqs.addValue(v)
	}
	if s.PreemptedReqs >= 0 {
		a.preempted += s.PreemptedReqs
		a.preemptSeen = true
	}
	if s.specKnown() {
		a.proposed += s.SpecProposed
		a.accepted += s.SpecAccepted
		a.specSeen = true
	}
}

// acceptance is accepted over proposed, where any draft was proposed.
func (a *schedAcc) acceptance() *float64 {
	if !a.specSeen || a.proposed == 0 {
		return nil
	}
	return ptr(round(float64(a.accepted)/float64(a.proposed), 4))
}

func (a *schedAcc) stats() SchedStats {
	st := SchedStats{
		KVCacheUsageMean:   a.kv.opt(4),
		RunningReqsMean:    a.running.opt(3),
		WaitingReqsMean:    a.waiting.opt(3),
		TokenBudgetUseMean: a.tokens.opt(4),
		SeqBudgetUseMean:   a.seqs.opt(4),
		SpecAcceptanceRate: a.acceptance(),
		SchedJoinedSteps:   a.n,
	}
	if a.preemptSeen {
		st.PreemptedReqs = ptr(a.preempted)
	}
	if a.kvSeen {
		st.peakKV = ptr(a.peakKV)
	}
	return st
}

// schedStats is the SchedStats of rows: each joined record once.
func schedStats(rows []Row) SchedStats {
	var a schedAcc
	seen := make(map[*Sched]bool)
	for _, r := range rows {
		if r.Sched != nil && !seen[r.Sched] {
			seen[r.Sched] = true
			a.add(r.Sched)
		}
	}
	return a.stats()
}

// schedulerTotals is "_scheduler", or nil when no sched record came (the
// marker has no scheduler probe, or the trace saw no scheduled step).
func schedulerTotals(j schedJoin) *SchedulerTotals {
	if len(j.all) == 0 {
		return nil
	}
	var a schedAcc
	for i := range j.all {
		a.add(&j.all[i])
	}
	st := a.stats()
	t := &SchedulerTotals{
		SchedSteps:         len(j.all),
		Joined:             j.joined,
		WithoutForwardPass: len(j.all) - j.duplicates - j.joined,
		Duplicates:         j.duplicates,
		Preemptions:        a.preempted,
		PeakKVCacheUsage:   st.peakKV,
		MeanKVCacheUsage:   st.KVCacheUsageMean,
		AcceptanceRate:     st.SpecAcceptanceRate,
		meanWaiting:        st.WaitingReqsMean,
	}
	if a.specSeen {
		t.SpecProposed, t.SpecAccepted = ptr(a.proposed), ptr(a.accepted)
	}
	return t
}

func ptr[T any](v T) *T { return &v }
