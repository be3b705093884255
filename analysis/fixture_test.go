package analysis

// Shared test data: a two-rank tensor-parallel trace with hand-checkable
// numbers.

const traceStart = 10_000 * msNs

var (
	tp0  = Process{PID: 100, Title: "VLLM::Worker_TP0", Rank: 0}
	tp1  = Process{PID: 101, Title: "VLLM::Worker_TP1", Rank: 1}
	core = Process{PID: 50, Title: "VLLM::EngineCore", Rank: -1}
)

// tpStep is a step of one rank beginning beginMs into the trace and lasting
// durMs to output_ready, with sample_end at half of it.
func tpStep(p Process, id uint64, beginMs, durMs uint64, reqs, prefill, tokens uint32) Step {
	b := traceStart + beginMs*msNs
	return Step{
		PID: p.PID, StepID: id, BeginNs: b,
		ForwardEndNs: b + durMs*msNs/4, SampleEndNs: b + durMs*msNs/2, OutputReadyNs: b + durMs*msNs,
		NumReqs: reqs, NumTokens: tokens, NumPrefillReqs: prefill, NumPrefillTokens: tokens - (reqs - prefill),
		Launches: 100, GraphLaunches: 1, SyncWaitNs: 2 * msNs,
	}
}

// tpReport: step 1 is a prefill, steps 2-4 decode, on both ranks, 20 ms
// apart. TP1 is slower on steps 1, 2 and 4; step 5 only reached TP0 before
// the trace ended, and TP1 has one record without any end point.
func tpReport() Report {
	steps := []Step{
		tpStep(tp0, 1, 0, 40, 1, 1, 128),
		tpStep(tp1, 1, 0, 44, 1, 1, 128),
		tpStep(tp0, 2, 20, 10, 2, 0, 2),
		tpStep(tp1, 2, 20, 11, 2, 0, 2),
		tpStep(tp0, 3, 40, 12, 2, 0, 2),
		tpStep(tp1, 3, 40, 10, 2, 0, 2),
		tpStep(tp0, 4, 60, 10, 2, 0, 2),
		tpStep(tp1, 4, 60, 14, 2, 0, 2),
		tpStep(tp0, 5, 80, 10, 2, 0, 2),
		{PID: tp1.PID, StepID: 5, BeginNs: traceStart + 80*msNs, NumReqs: 2, NumTokens: 2},
	}
	return Report{
		StartNs: traceStart, EndNs: traceStart + 2000*msNs,
		Steps:     steps,
		Processes: []Process{tp1, tp0, core},
		Activity: []ProcessActivity{
			{Process: tp1, Launches: 5000, GraphLaunches: 20, SyncWaitNs: 100 * msNs, Syncs: 30},
			{Process: core, Launches: 0},
			{Process: tp0, Launches: 4000, GraphLaunches: 20, SyncWaitNs: 50 * msNs, Syncs: 30},
		},
		DroppedRecords: 3,
	}
}
