package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/profilemate/profilemate-bpf/analysis"
	"github.com/profilemate/profilemate-bpf/tracer"
)

const schedColumns = "kv_cache_usage, running_reqs, waiting_reqs, preempted_reqs, token_budget_use, seq_budget_use, spec_proposed, spec_accepted"

// schedProbed reports whether a probed marker has the scheduler's probe, and
// whether any marker was probed at all.
func schedProbed(libs []*tracer.Library) (sched, marker bool) {
	for _, l := range libs {
		if l.Kind != tracer.LibMarker {
			continue
		}
		marker = true
		if l.Probes > 0 && !slices.Contains(l.Missing, tracer.ProbeSchedStep) && !hasFailed(l, tracer.ProbeSchedStep) {
			sched = true
		}
	}
	return sched, marker
}

// hasFailed reports whether the kernel or the tracer refused l's probe
// (Library.Failed names it first).
func hasFailed(l *tracer.Library, probe string) bool {
	return slices.ContainsFunc(l.Failed, func(f string) bool { return strings.HasPrefix(f, probe+":") })
}

// schedProbeNote says, once the marker is probed, that the scheduler's
// columns will stay empty because no probed marker has sched_step: an
// older marker still times every forward pass.
func schedProbeNote(libs []*tracer.Library) string {
	if sched, marker := schedProbed(libs); sched || !marker {
		return ""
	}
	return fmt.Sprintf("  the marker has no %s probe (it is older than the scheduler's probe): the scheduler's CSV columns (%s) stay empty; install the current marker and restart the server once to have them",
		tracer.ProbeSchedStep, schedColumns)
}

// schedEndNote says why the scheduler's columns are empty after a trace
// whose marker has the probe: no record came (the marker switched its
// scheduler patch off, as it does where this vLLM lacks a field it reads),
// or none joined a forward pass.
func schedEndNote(s analysis.Summary, probed bool) string {
	if !probed || len(s.Phases) == 0 {
		return ""
	}
	switch t := s.Scheduler; {
	case t == nil:
		return "profilemate-bpf: note: no scheduler step was recorded, though the marker has the probe: its scheduler patch is off in this server (the server's log has the marker's warning why); the scheduler's columns are empty"
	case t.Joined == 0:
		return fmt.Sprintf("profilemate-bpf: note: %d scheduler steps recorded, but no forward pass carried their sched_key (does the runner's marker predate the scheduler's?); the scheduler's columns are empty", t.SchedSteps)
	}
	return ""
}
