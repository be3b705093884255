package analysis

import (
	"bytes"
	"encoding/json"
	"io"
)

// Summary is what summary.json holds and the console table shows. In JSON the
// phases are top-level keys exactly as the sitecustomize profiler wrote them;
// everything else sits under keys starting with "_", which no phase can have.
type Summary struct {
	Phases    PhaseSet         // all processes together
	Trace     TraceInfo        // "_trace"
	Processes []ProcessSummary // "_processes": processes with timed steps
	// Ranks has the cross-rank spread of each tensor-parallel group with
	// two ranks or more, by group: "_ranks" when there is one group (one
	// engine, the usual case), "_rank_groups" when there are several (data
	// or pipeline parallelism).
	Ranks    []*RankSpread
	Activity []ActivitySummary
	// Scheduler is "_scheduler", the totals of the scheduler's steps;
	// nil (and absent) when no sched_step record came.
	Scheduler *SchedulerTotals
}

// TraceInfo describes the trace as a whole, so that a reader can judge how
// complete the per-phase numbers are.
type TraceInfo struct {
	DurationSec float64 `json:"duration_sec"`
	// StartMonotonicNs is the trace's start in CLOCK_MONOTONIC nanoseconds,
	// the zero of the CSV's timestamp_sec: it puts the rows on the clock
	// other programs of the machine read (time.monotonic() in Python).
	StartMonotonicNs uint64 `json:"start_monotonic_ns"`
	// Steps counts every step record received; TimedSteps those with a
	// duration (the CSV rows), StepsWithoutDuration the rest.
	Steps                int `json:"steps"`
	TimedSteps           int `json:"timed_steps"`
	StepsWithoutDuration int `json:"steps_without_duration"`
	// StepsOpenAtEnd counts the steps still open when the trace ended:
	// rows with status open_at_end where a point came after step_begin,
	// else among StepsWithoutDuration.
	StepsOpenAtEnd int `json:"steps_open_at_end"`
	// StepsBeforeProbes counts steps left out because they began before
	// every CUDA probe of their process was live: their launch and
	// synchronization counts would have started late.
	StepsBeforeProbes uint64 `json:"steps_before_probes"`
	// DroppedRecords counts records (steps and scheduler steps) lost
	// before they reached user space (a full ring buffer) or that could
	// not be decoded, as reported by the tracer.
	DroppedRecords uint64 `json:"dropped_records"`
	// LaunchesProbed is false when kernel launches were not probed
	// (--launches=false): every launch count is then 0 for want of counting.
	LaunchesProbed bool `json:"launches_probed"`
	// LaunchesSampled is true when launches were probed in sampled
	// windows only: per-phase launch means are over the steps counted
	// (launch_counted_steps), and _activity's launches and
	// launches_per_sec are of the LaunchLiveSec the probes were live, not
	// of the whole trace.
	LaunchesSampled bool `json:"launches_sampled"`
	// LaunchLiveSec is how long the kernel-launch probes were live: the
	// span _activity's launch figures cover (the trace but its attach
	// when they were not sampled); 0 when not known or not probed.
	LaunchLiveSec float64 `json:"launch_live_sec"`
	// SyncsProbed is false when synchronizations were not probed
	// (--syncs=off): no step has a sync wait.
	SyncsProbed bool `json:"syncs_probed"`
	// SyncsSampled is true when synchronizations were probed in the
	// sampled windows only: per-phase sync-wait means are over the steps
	// counted (sync_counted_steps), and _activity's syncs, sync_wait_ms
	// and sync_wait_share are of the SyncLiveSec the probes were live,
	// not of the whole trace.
	SyncsSampled bool `json:"syncs_sampled"`
	// SyncLiveSec is how long the synchronization probes were live: the
	// span _activity's synchronization figures cover (the trace but its
	// attach when they were not sampled); 0 when not known.
	SyncLiveSec float64 `json:"sync_live_sec"`
	// LeftOut lists the probe classes left out to measure their cost
	// (--leave-out); what they count is missing from the steps.
	LeftOut string `json:"left_out,omitempty"`
}

// ProcessSummary is the per-phase statistics of one process's steps.
type ProcessSummary struct {
	PID    uint32   `json:"pid"`
	Title  string   `json:"title"`
	Rank   int      `json:"rank"` // -1 when the title names none
	Steps  int      `json:"steps"`
	Phases PhaseSet `json:"phases"`
}

// ActivitySummary is one process's CUDA activity over the whole trace (its
// launches and synchronizations over the time their probes were live,
// TraceInfo's LaunchLiveSec and SyncLiveSec). It is the only timing there
// is when the marker is absent and no step was seen.
type ActivitySummary struct {
	PID      uint32 `json:"pid"`
	Title    string `json:"title"`
	Rank     int    `json:"rank"`
	Launches uint64 `json:"launches"`
	// LaunchesPerSec is launches over the time the launch probes were
	// live (the trace's, where that is not known).
	LaunchesPerSec float64 `json:"launches_per_sec"`
	GraphLaunches  uint64  `json:"graph_launches"`
	Syncs          uint64  `json:"syncs"`
	SyncWaitMs     float64 `json:"sync_wait_ms"`
	// SyncWaitShare is sync wait over the time the synchronization probes
	// were live (the trace's, where that is not known). Waits of several
	// threads add up, so it can exceed 1.
	SyncWaitShare float64 `json:"sync_wait_share"`
}

// summarize builds the summary from rows already built from r.Steps.
func summarize(r Report, rows []Row, withoutDuration int, procs processes) Summary {
	return Summary{
		Phases: phaseSet(rows),
		Trace: TraceInfo{
			DurationSec:          r.durationSec(),
			StartMonotonicNs:     r.StartNs,
			Steps:                len(r.Steps),
			TimedSteps:           len(rows),
			StepsWithoutDuration: withoutDuration,
			StepsOpenAtEnd:       openAtEnd(r.Steps),
			StepsBeforeProbes:    r.StepsBeforeProbes,
			DroppedRecords:       r.DroppedRecords,
			LaunchesProbed:       !r.NoLaunchProbes,
			LaunchesSampled:      r.LaunchesSampled,
			LaunchLiveSec:        round(float64(r.LaunchLiveNs)/1e9, 3),
			SyncsProbed:          !r.NoSyncProbes,
			SyncsSampled:         r.SyncsSampled,
			SyncLiveSec:          round(float64(r.SyncLiveNs)/1e9, 3),
			LeftOut:              r.LeftOut,
		},
		Processes: processSummaries(rows, procs),
		Ranks:     rankSpreads(rows, procs),
		Activity:  activitySummaries(r.Activity, r.liveSec(r.LaunchLiveNs), r.liveSec(r.SyncLiveNs)),
	}
}

// liveSec is how long a class of probes was live, in seconds: ns where the
// tracer said (Report.LaunchLiveNs, SyncLiveNs), else the trace's duration.
func (r Report) liveSec(ns uint64) float64 {
	if ns > 0 {
		return float64(ns) / 1e9
	}
	return r.durationSec()
}

func openAtEnd(steps []Step) int {
	n := 0
	for _, s := range steps {
		if s.OpenAtEnd {
			n++
		}
	}
	return n
}

func processSummaries(rows []Row, procs processes) []ProcessSummary {
	byPID := make(map[uint32][]Row)
	for _, r := range rows {
		byPID[r.PID] = append(byPID[r.PID], r)
	}
	ps := make([]Process, 0, len(byPID))
	for pid := range byPID {
		ps = append(ps, procs.get(pid))
	}
	sortProcesses(ps)
	out := make([]ProcessSummary, len(ps))
	for i, p := range ps {
		out[i] = ProcessSummary{
			PID: p.PID, Title: p.Title, Rank: p.Rank,
			Steps:  len(byPID[p.PID]),
			Phases: phaseSet(byPID[p.PID]),
		}
	}
	return out
}

// activitySummaries summarizes acts, their launch rates over launchSec, the
// time their launches were counted, and their share of time blocked over
// syncSec, the time their synchronizations were timed.
func activitySummaries(acts []ProcessActivity, launchSec, syncSec float64) []ActivitySummary {
	ps := make([]Process, len(acts))
	byPID := make(map[uint32]ProcessActivity, len(acts))
	for i, a := range acts {
		ps[i] = a.Process
		byPID[a.PID] = a
	}
	sortProcesses(ps)
	out := make([]ActivitySummary, len(ps))
	for i, p := range ps {
		a := byPID[p.PID]
		s := ActivitySummary{
			PID: p.PID, Title: p.Title, Rank: p.Rank,
			Launches:      a.Launches,
			GraphLaunches: a.GraphLaunches,
			Syncs:         a.Syncs,
			SyncWaitMs:    roundMs(float64(a.SyncWaitNs) / nsPerMs),
		}
		if launchSec > 0 {
			s.LaunchesPerSec = round(float64(a.Launches)/launchSec, 1)
		}
		if syncSec > 0 {
			s.SyncWaitShare = round(float64(a.SyncWaitNs)/1e9/syncSec, 4)
		}
		out[i] = s
	}
	return out
}

// MarshalJSON writes the phases first, as the sitecustomize profiler did,
// then "_trace", "_processes", "_ranks" or "_rank_groups" (only when there
// are ranks), "_activity" and "_scheduler" (only when sched records came).
func (s Summary) MarshalJSON() ([]byte, error) {
	m := s.Phases.members()
	m = append(m,
		member{"_trace", s.Trace},
		member{"_processes", nonNil(s.Processes)})
	switch {
	case len(s.Ranks) == 1:
		m = append(m, member{"_ranks", s.Ranks[0]})
	case len(s.Ranks) > 1:
		m = append(m, member{"_rank_groups", s.Ranks})
	}
	m = append(m, member{"_activity", nonNil(s.Activity)})
	if s.Scheduler != nil {
		m = append(m, member{"_scheduler", s.Scheduler})
	}
	return marshalObject(m)
}

// WriteSummary writes s as indented summary.json content.
func WriteSummary(w io.Writer, s Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// member is one key of a JSON object written in a fixed order; encoding/json
// would sort map keys and put "_trace" before "prefill".
type member struct {
	key   string
	value any
}

func marshalObject(members []member) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(m.key)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(m.value)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// nonNil makes an empty list an empty JSON array instead of null, so readers
// can iterate without a check.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
