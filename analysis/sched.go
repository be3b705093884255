package analysis

// Sched is one scheduled step of an EngineCore's scheduler, as the marker's
// sched_step probe reported it once the step's output came back. The
// forward passes it produced (one per tensor-parallel rank, in other
// processes) carry its Key in Step.SchedKey. Values are -1 where the marker
// did not know them (spec_* without speculative decoding).
type Sched struct {
	PID    uint32 // process that fired it: the EngineCore
	TimeNs uint64 // when it fired (CLOCK_MONOTONIC)
	// Key is (nonce << 32) | counter: the nonce is per scheduler, so two
	// engines never share keys, and the counter counts its schedules.
	Key uint64

	KVUsagePermille int64 // KV-cache usage at the end of schedule(), 0..1000
	RunningReqs     int64
	WaitingReqs     int64
	PreemptedReqs   int64 // preempted by this step's schedule()
	ScheduledTokens int64
	TokenBudget     int64 // the scheduler's max_num_scheduled_tokens
	ScheduledReqs   int64
	MaxNumSeqs      int64
	SpecProposed    int64 // draft tokens verified in this step
	SpecAccepted    int64 // of those, accepted
}

// Unknown is the value the marker passes for what it does not know.
const Unknown = -1

// KV-cache usage comes in per mille.
const permille = 1000

// kvUsage is the KV-cache usage as a fraction of the cache.
func (s *Sched) kvUsage() (float64, bool) {
	return float64(s.KVUsagePermille) / permille, s.KVUsagePermille >= 0
}

// tokenBudgetUse is the share of the step's token budget scheduled.
func (s *Sched) tokenBudgetUse() (float64, bool) {
	return ratio(s.ScheduledTokens, s.TokenBudget)
}

// seqBudgetUse is the share of max_num_seqs scheduled.
func (s *Sched) seqBudgetUse() (float64, bool) {
	return ratio(s.ScheduledReqs, s.MaxNumSeqs)
}

// specKnown says the step ran with speculative decoding and counted both.
func (s *Sched) specKnown() bool { return s.SpecProposed >= 0 && s.SpecAccepted >= 0 }

// ratio is part/whole where both are known and whole is not zero.
func ratio(part, whole int64) (float64, bool) {
	if part < 0 || whole <= 0 {
		return 0, false
	}
	return float64(part) / float64(whole), true
}
