package report_test

import (
	"math/rand/v2"
	"time"

	"github.com/profilemate/profilemate-bpf/analysis"
	"github.com/profilemate/profilemate-bpf/report"
)

const msNs = uint64(time.Millisecond)

var (
	tp0  = analysis.Process{PID: 4101, Title: "VLLM::Worker_TP0", Rank: 0}
	tp1  = analysis.Process{PID: 4102, Title: "VLLM::Worker_TP1", Rank: 1}
	core = analysis.Process{PID: 4100, Title: "VLLM::EngineCore", Rank: -1}
	api  = analysis.Process{PID: 4000, Title: "python -m vllm.entrypoints.openai.api_server", Rank: -1}
)

// asyncTrace is a two-rank trace of n steps per rank under async
// scheduling: each step begins at 70% of the previous one's duration (but
// not before the one before that ended), so consecutive steps of a rank
// overlap. Waves of requests make prefill,
// mixed and decode steps; TP1 straggles on every 50th step; the last step
// of TP1 never got its output (the trace ended), so its duration falls back
// to sample_end.
func asyncTrace(n int) analysis.Report {
	const start = 1_000_000 * msNs
	rng := rand.New(rand.NewPCG(1, 2))
	var steps []analysis.Step
	begin := [2]uint64{start + 5*msNs, start + 5*msNs + 30_000}
	var prevEnd [2]uint64 // where each rank's previous step ended: vLLM keeps two in flight at most
	for i := 1; i <= n; i++ {
		reqs, prefill := uint32(16), uint32(0)
		tokens := uint32(16)
		switch {
		case i%40 == 1:
			reqs, prefill, tokens = 4, 4, 512
		case i%40 < 4:
			prefill, tokens = 2, 300
		}
		base := 1.0 + float64(tokens)/120 + rng.Float64()*0.3
		for r, p := range []analysis.Process{tp0, tp1} {
			d := base + rng.Float64()*0.1
			if r == 1 && i%50 == 0 {
				d += 2.5
			}
			dur := uint64(d * float64(msNs))
			b := begin[r]
			s := analysis.Step{
				PID: p.PID, StepID: uint64(i), BeginNs: b,
				ForwardEndNs: b + dur*3/10, SampleEndNs: b + dur*6/10, OutputReadyNs: b + dur,
				NumReqs: reqs, NumTokens: tokens, NumPrefillReqs: prefill, NumPrefillTokens: tokens - (reqs - prefill),
				Launches: 5, GraphLaunches: 1, SyncWaitNs: dur / 3,
			}
			if prefill > 0 {
				s.Launches, s.GraphLaunches = 29, 13
			}
			if r == 1 && i == n {
				s.OutputReadyNs = 0
			}
			steps = append(steps, s)
			begin[r] = max(b+dur*7/10, prevEnd[r])
			prevEnd[r] = b + dur
		}
	}
	end := max(begin[0], begin[1]) + 20*msNs
	return analysis.Report{
		StartNs: start, EndNs: end, Steps: steps,
		Processes: []analysis.Process{api, core, tp0, tp1},
		Activity: []analysis.ProcessActivity{
			{Process: api}, {Process: core},
			{Process: tp0, Launches: uint64(6 * n), GraphLaunches: uint64(n), Syncs: uint64(n), SyncWaitNs: uint64(n) * msNs / 2},
			{Process: tp1, Launches: uint64(6 * n), GraphLaunches: uint64(n), Syncs: uint64(n), SyncWaitNs: uint64(n) * msNs / 2},
		},
	}
}

var facts = report.Facts{
	Server:  "python -m vllm.entrypoints.openai.api_server (pid 4000)",
	Start:   time.Date(2026, 12, 1, 9, 50, 0, 0, time.UTC),
	Version: "test",
	Marker:  "found",
	Libraries: []report.Library{
		{Kind: "CUDA runtime", Path: "/venv/lib/python3.12/site-packages/nvidia/cu13/lib/libcudart.so.13", Loaded: true, Probes: 14},
		{Kind: "CUDA driver", Path: "/usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04", Loaded: true, Probes: 9},
		{Kind: "marker", Path: "/venv/lib/python3.12/site-packages/profilemate_marker/_probes.so", Loaded: true, Probes: 4},
	},
}

// withScheds stamps every step of r with a sched_key and adds the record of
// each scheduler step, fired by pid after the step's output as EngineCore
// fires it. KV usage changes every step, running requests every other,
// waiting requests every tenth.
func withScheds(r analysis.Report, pid uint32) analysis.Report {
	const nonce = 0x77
	last := map[uint64]uint64{}
	for i := range r.Steps {
		s := &r.Steps[i]
		s.SchedKey = nonce<<32 | s.StepID
		last[s.StepID] = max(last[s.StepID], s.BeginNs, s.OutputReadyNs)
	}
	for id, at := range last {
		n := int64(id)
		r.Scheds = append(r.Scheds, analysis.Sched{
			PID: pid, TimeNs: at + msNs/10, Key: nonce<<32 | id,
			KVUsagePermille: n * 7 % 1001, RunningReqs: 16 + n/2, WaitingReqs: n / 10, PreemptedReqs: 0,
			ScheduledTokens: 16, TokenBudget: 2048, ScheduledReqs: 16, MaxNumSeqs: 256,
			SpecProposed: -1, SpecAccepted: -1,
		})
	}
	return r
}
