package analysis

import (
	"fmt"
	"testing"
)

// key is a sched_key as the marker builds it.
func key(nonce, counter uint64) uint64 { return nonce<<32 | counter }

// schedAt is a sched record of the scheduler in pid, fired atMs into the
// trace, whose values all follow from tag so a row shows which one it got.
func schedAt(pid uint32, k uint64, atMs uint64, tag int64) Sched {
	return Sched{
		PID: pid, TimeNs: traceStart + atMs*msNs, Key: k,
		KVUsagePermille: 100 + tag, RunningReqs: tag, WaitingReqs: 2 * tag, PreemptedReqs: tag % 3,
		ScheduledTokens: 64 * tag, TokenBudget: 2048, ScheduledReqs: tag, MaxNumSeqs: 256,
		SpecProposed: 4 * tag, SpecAccepted: 3 * tag,
	}
}

// keyed is tpStep carrying sched_key k.
func keyed(s Step, k uint64) Step {
	s.SchedKey = k
	return s
}

// TestJoinSchedByKey: the cases where time or process would pair a forward
// pass with the wrong scheduler step, or with none; each row must get the
// values of the record with its key, the totals count each record once.
func TestJoinSchedByKey(t *testing.T) {
	const n1, n2 = 0x1111, 0x2222 // two schedulers' nonces
	for _, tt := range []struct {
		name   string
		steps  []Step
		scheds []Sched
		// per row "pid/step": the tag of the record it joins, 0 for none
		want map[string]int64
		// sched_steps, joined, without_forward_pass, duplicates
		totals [4]int
	}{
		{
			name:   "one process, record after its step",
			steps:  []Step{keyed(tpStep(core, 1, 0, 10, 2, 0, 2), key(n1, 1))},
			scheds: []Sched{schedAt(core.PID, key(n1, 1), 11, 5)},
			want:   map[string]int64{"50/1": 5},
			totals: [4]int{1, 1, 0, 0},
		},
		{
			// The scheduler runs a step ahead: step 1's record fires
			// after step 2 began, nearer in time to step 2 than step 2's
			// own, which comes after step 3 began.
			name: "async scheduling",
			steps: []Step{
				keyed(tpStep(core, 1, 0, 15, 2, 0, 2), key(n1, 1)),
				keyed(tpStep(core, 2, 10, 15, 2, 0, 2), key(n1, 2)),
				keyed(tpStep(core, 3, 20, 15, 2, 0, 2), key(n1, 3)),
			},
			scheds: []Sched{
				schedAt(core.PID, key(n1, 1), 16, 1),
				schedAt(core.PID, key(n1, 2), 26, 2),
				schedAt(core.PID, key(n1, 3), 36, 3),
			},
			want:   map[string]int64{"50/1": 1, "50/2": 2, "50/3": 3},
			totals: [4]int{3, 3, 0, 0},
		},
		{
			// One scheduler step, one forward pass per rank in other
			// processes: both rows get its values, the totals count it once.
			name: "tensor parallelism",
			steps: []Step{
				keyed(tpStep(tp0, 1, 0, 10, 2, 0, 2), key(n1, 1)),
				keyed(tpStep(tp1, 1, 0, 11, 2, 0, 2), key(n1, 1)),
				keyed(tpStep(tp0, 2, 20, 10, 2, 0, 2), key(n1, 2)),
				keyed(tpStep(tp1, 2, 20, 12, 2, 0, 2), key(n1, 2)),
			},
			scheds: []Sched{schedAt(core.PID, key(n1, 1), 13, 7), schedAt(core.PID, key(n1, 2), 33, 8)},
			want:   map[string]int64{"100/1": 7, "101/1": 7, "100/2": 8, "101/2": 8},
			totals: [4]int{2, 2, 0, 0},
		},
		{
			// Two engines (data parallelism) count their schedules alike;
			// the nonces keep their keys apart, whatever the times.
			name: "two engines, same counter",
			steps: []Step{
				keyed(tpStep(tp0, 1, 0, 10, 2, 0, 2), key(n1, 1)),
				keyed(tpStep(tp1, 1, 0, 10, 2, 0, 2), key(n2, 1)),
			},
			scheds: []Sched{schedAt(60, key(n2, 1), 11, 2), schedAt(core.PID, key(n1, 1), 11, 1)},
			want:   map[string]int64{"100/1": 1, "101/1": 2},
			totals: [4]int{2, 2, 0, 0},
		},
		{
			// Its forward pass began before the trace, or was left out.
			name:   "record without a forward pass",
			steps:  []Step{keyed(tpStep(core, 2, 10, 10, 2, 0, 2), key(n1, 2))},
			scheds: []Sched{schedAt(core.PID, key(n1, 1), 5, 1), schedAt(core.PID, key(n1, 2), 21, 2)},
			want:   map[string]int64{"50/2": 2},
			totals: [4]int{2, 1, 1, 0},
		},
		{
			// Key 0: a schedule made before the tracer attached, or an
			// older marker. A key without a record: the trace ended
			// before the scheduler step's record came.
			name: "step without key or without record",
			steps: []Step{
				tpStep(core, 1, 0, 10, 2, 0, 2),
				keyed(tpStep(core, 2, 10, 10, 2, 0, 2), key(n1, 2)),
				keyed(tpStep(core, 3, 20, 10, 2, 0, 2), key(n1, 3)),
			},
			scheds: []Sched{schedAt(core.PID, key(n1, 2), 21, 2)},
			want:   map[string]int64{"50/1": 0, "50/2": 2, "50/3": 0},
			totals: [4]int{1, 1, 0, 0},
		},
		{
			// Keys are unique per trace; the earlier record of a key is
			// joined, whatever order they arrived in, the later counted.
			name:   "duplicate keys",
			steps:  []Step{keyed(tpStep(core, 1, 0, 10, 2, 0, 2), key(n1, 1))},
			scheds: []Sched{schedAt(core.PID, key(n1, 1), 30, 9), schedAt(core.PID, key(n1, 1), 11, 4)},
			want:   map[string]int64{"50/1": 4},
			totals: [4]int{2, 1, 0, 1},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := Analyze(Report{StartNs: traceStart, EndNs: traceStart + 1000*msNs, Steps: tt.steps, Scheds: tt.scheds})
			if len(res.Rows) != len(tt.want) {
				t.Fatalf("%d rows, want %d", len(res.Rows), len(tt.want))
			}
			for _, r := range res.Rows {
				id := fmt.Sprintf("%d/%d", r.PID, r.Step)
				want, ok := tt.want[id]
				switch {
				case !ok:
					t.Errorf("unexpected row %s", id)
				case want == 0 && r.Sched != nil:
					t.Errorf("row %s joined %+v, want none", id, *r.Sched)
				case want != 0 && (r.Sched == nil || r.Sched.RunningReqs != want):
					t.Errorf("row %s joined %+v, want the record tagged %d", id, r.Sched, want)
				}
			}
			tot := res.Summary.Scheduler
			if tot == nil {
				t.Fatal("no _scheduler totals")
			}
			if got := [4]int{tot.SchedSteps, tot.Joined, tot.WithoutForwardPass, tot.Duplicates}; got != tt.totals {
				t.Errorf("sched_steps, joined, without_forward_pass, duplicates = %v, want %v", got, tt.totals)
			}
		})
	}
}

// TestSchedFiguresCountEachRecordOnce: under tensor parallelism a record
// joins a row per rank; the phase's sums and means are over records, so the
// preemptions of a two-rank trace are not doubled.
func TestSchedFiguresCountEachRecordOnce(t *testing.T) {
	steps := []Step{
		keyed(tpStep(tp0, 1, 0, 10, 2, 0, 2), key(1, 1)),
		keyed(tpStep(tp1, 1, 0, 11, 2, 0, 2), key(1, 1)),
		keyed(tpStep(tp0, 2, 20, 10, 2, 0, 2), key(1, 2)),
		keyed(tpStep(tp1, 2, 20, 12, 2, 0, 2), key(1, 2)),
	}
	a, b := schedAt(core.PID, key(1, 1), 13, 2), schedAt(core.PID, key(1, 2), 33, 4)
	a.PreemptedReqs, b.PreemptedReqs = 1, 2
	a.SpecProposed, a.SpecAccepted = 10, 7
	b.SpecProposed, b.SpecAccepted = 10, 3
	a.KVUsagePermille, b.KVUsagePermille = 500, 900
	res := Analyze(Report{StartNs: traceStart, EndNs: traceStart + 1000*msNs, Steps: steps, Scheds: []Sched{a, b}})
	d, ok := res.Summary.Phases.Get(PhaseDecode)
	if !ok {
		t.Fatal("no decode phase")
	}
	if d.Count != 4 || d.SchedJoinedSteps != 2 {
		t.Errorf("count %d, sched_joined_steps %d; want 4 rows over 2 scheduler steps", d.Count, d.SchedJoinedSteps)
	}
	checkOpt(t, "preempted_reqs", d.PreemptedReqs, 3)
	checkOpt(t, "kv_cache_usage_mean", d.KVCacheUsageMean, 0.7)
	checkOpt(t, "running_reqs_mean", d.RunningReqsMean, 3)
	checkOpt(t, "waiting_reqs_mean", d.WaitingReqsMean, 6)
	checkOpt(t, "token_budget_use_mean", d.TokenBudgetUseMean, 0.0938) // 192 of 2048 tokens, rounded
	checkOpt(t, "seq_budget_use_mean", d.SeqBudgetUseMean, 0.0117)     // 3 of 256 requests
	checkOpt(t, "spec_acceptance_rate", d.SpecAcceptanceRate, 0.5)     // 10 of 20
	tot := res.Summary.Scheduler
	if tot.Preemptions != 3 {
		t.Errorf("_scheduler.preemptions = %d, want 3", tot.Preemptions)
	}
	checkOpt(t, "peak_kv_cache_usage", tot.PeakKVCacheUsage, 0.9)
	checkOpt(t, "mean_kv_cache_usage", tot.MeanKVCacheUsage, 0.7)
	checkOpt(t, "spec_proposed", tot.SpecProposed, 20)
	checkOpt(t, "spec_accepted", tot.SpecAccepted, 10)
	checkOpt(t, "acceptance_rate", tot.AcceptanceRate, 0.5)
	// Each rank's own phase figures are its rows': the same two records.
	for _, p := range res.Summary.Processes {
		st, _ := p.Phases.Get(PhaseDecode)
		checkOpt(t, fmt.Sprintf("pid %d preempted_reqs", p.PID), st.PreemptedReqs, 3)
	}
}

// TestSchedUnknownValues: -1 is left out of every figure, and a figure no
// record knew is null, not 0.
func TestSchedUnknownValues(t *testing.T) {
	s := schedAt(core.PID, key(1, 1), 11, 2)
	s.KVUsagePermille, s.SpecProposed, s.SpecAccepted, s.TokenBudget = Unknown, Unknown, Unknown, Unknown
	res := Analyze(Report{StartNs: traceStart, EndNs: traceStart + 100*msNs,
		Steps: []Step{keyed(tpStep(core, 1, 0, 10, 2, 0, 2), key(1, 1))}, Scheds: []Sched{s}})
	d, _ := res.Summary.Phases.Get(PhaseDecode)
	for name, v := range map[string]*float64{
		"kv_cache_usage_mean": d.KVCacheUsageMean, "token_budget_use_mean": d.TokenBudgetUseMean,
		"spec_acceptance_rate": d.SpecAcceptanceRate, "_scheduler.peak_kv_cache_usage": res.Summary.Scheduler.PeakKVCacheUsage,
	} {
		if v != nil {
			t.Errorf("%s = %v from unknown values, want null", name, *v)
		}
	}
	if tot := res.Summary.Scheduler; tot.SpecProposed != nil || tot.AcceptanceRate != nil {
		t.Errorf("spec totals %v, %v without speculative decoding, want null", tot.SpecProposed, tot.AcceptanceRate)
	}
	checkOpt(t, "running_reqs_mean", d.RunningReqsMean, 2)
}

func checkOpt[T int64 | float64](t *testing.T, name string, got *T, want float64) {
	t.Helper()
	if got == nil {
		t.Errorf("%s = null, want %v", name, want)
	} else if d := float64(*got) - want; d > 1e-9 || d < -1e-9 {
		t.Errorf("%s = %v, want %v", name, *got, want)
	}
}
