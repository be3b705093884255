// Package analysis turns the tracer's per-step records into the outputs users
// read: forward_pass_timing.csv, summary.json and a console table. It knows
// nothing about eBPF, so everything here is tested without root.
package analysis

// Step is one forward pass of one process, as the eBPF programs saw it.
// Timestamps are CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns); zero means the
// point never came during the trace.
type Step struct {
	PID    uint32 // process (tgid) that ran the step
	StepID uint64 // the marker's step_id, monotonic per process

	BeginNs       uint64 // step_begin
	ForwardEndNs  uint64 // forward_end: execute_model returned
	SampleEndNs   uint64 // sample_end: sample_tokens returned
	OutputReadyNs uint64 // output_ready: the host holds the output

	NumReqs          uint32
	NumTokens        uint32
	NumPrefillReqs   uint32
	NumPrefillTokens uint32

	// SchedKey names the scheduled step (Sched.Key) this forward pass ran;
	// 0 when the marker stamped none (an older marker, or a schedule
	// made before the tracer attached).
	SchedKey uint64

	Launches uint32 // kernel launches, each counted once
	// LaunchesUncounted: the launch probes were not live for the whole
	// step (they are sampled, or off), so Launches is not its count.
	LaunchesUncounted bool
	GraphLaunches     uint32 // CUDA graph launches
	SyncWaitNs        uint64 // time blocked in CUDA synchronization while the step was open
	// SyncsUncounted: the synchronization probes were not live for the
	// whole step (they are sampled, or off), so SyncWaitNs is not its wait.
	SyncsUncounted bool

	// Evicted: flushed unfinished, a newer step of the process needed its
	// slot. OpenAtEnd: still open when the trace ended. Either way the
	// step has the points that came, and its row says which it was.
	Evicted   bool
	OpenAtEnd bool
}

// Process describes one traced process for labelling rows and table lines.
type Process struct {
	PID   uint32
	Title string // vLLM process title, e.g. "VLLM::Worker_TP0"; comm when there is none
	Rank  int    // tensor-parallel rank parsed from the title; -1 when the title names none
}

// ProcessActivity is a process's CUDA activity over the whole trace (its
// synchronizations over the time their probes were live, Report.SyncLiveNs),
// reported per process whether or not the marker is present.
type ProcessActivity struct {
	Process
	Launches      uint64
	GraphLaunches uint64
	SyncWaitNs    uint64
	Syncs         uint64
}
