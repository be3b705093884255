package analysis

// Report is everything a trace produced, as the tracer hands it over.
type Report struct {
	// StartNs and EndNs bound the trace on the steps' clock
	// (CLOCK_MONOTONIC). Row timestamps count from StartNs; rates and shares
	// of trace time use EndNs-StartNs.
	StartNs, EndNs uint64
	Steps          []Step // in any order, from any processes
	// Scheds are the scheduler's steps (sched_step records), in any
	// order: each is joined to the Steps that carry its key.
	Scheds         []Sched
	Processes      []Process         // labels for the pids of Steps and Activity
	Activity       []ProcessActivity // per-process totals over the whole trace
	DroppedRecords uint64            // records (steps, scheduler steps) the tracer lost
	// StepsBeforeProbes counts steps the tracer left out: they began
	// before every CUDA probe of their process was live.
	StepsBeforeProbes uint64
	// NoLaunchProbes says kernel launches were not probed
	// (--launches=false): their counts are zero because nobody counted.
	NoLaunchProbes bool
	// LaunchesSampled says launches were probed only part of the time
	// (--launches=sample): only some steps carry a count, and Activity's
	// launch totals cover only the LaunchLiveNs the probes were live.
	LaunchesSampled bool
	// LaunchLiveNs is how long the kernel-launch probes were live
	// (tracer.Tracer.LaunchLiveNs), the span Activity's launch totals
	// cover and their rate is taken over; 0: the trace's.
	LaunchLiveNs uint64
	// NoSyncProbes says synchronizations were not probed (--syncs=off):
	// their waits are zero because nobody timed them.
	NoSyncProbes bool
	// SyncsSampled says synchronizations were probed only part of the
	// time (--syncs=sample): only some steps carry a wait, and Activity's
	// synchronization totals cover only the SyncLiveNs the probes were
	// live.
	SyncsSampled bool
	// SyncLiveNs is how long the synchronization probes were live
	// (tracer.Tracer.SyncLiveNs), the span Activity's synchronization
	// totals cover and their share of time is taken over; 0: the trace's.
	SyncLiveNs uint64
	// LeftOut names the probe classes a cost measurement left out
	// (--leave-out), empty in a normal trace.
	LeftOut string
}

func (r Report) durationSec() float64 {
	if r.EndNs <= r.StartNs {
		return 0
	}
	return float64(r.EndNs-r.StartNs) / 1e9
}

// Result is a Report turned into rows and their summary: what Write stores and
// RenderTable shows.
type Result struct {
	Rows    []Row // timed steps ordered by step_begin
	Summary Summary
	// StartNs is the trace start on the steps' clock, from which the rows'
	// TimestampSec count.
	StartNs uint64
}

// Analyze builds the CSV rows and the summary of r. Steps without any end
// point are not rows; Summary.Trace counts them.
func Analyze(r Report) Result {
	procs := newProcesses(r.Processes, r.Activity)
	scheds := joinScheds(r.Scheds, r.Steps)
	rows, withoutDuration := buildRows(r.Steps, r.StartNs, procs, notProbed{launches: r.NoLaunchProbes, syncs: r.NoSyncProbes}, scheds)
	sum := summarize(r, rows, withoutDuration, procs)
	sum.Scheduler = schedulerTotals(scheds)
	return Result{Rows: rows, Summary: sum, StartNs: r.StartNs}
}
