package main

import (
	"strings"
	"testing"

	"github.com/profilemate/profilemate-bpf/analysis"
	"github.com/profilemate/profilemate-bpf/tracer"
)

func TestSchedProbeNote(t *testing.T) {
	cuda := &tracer.Library{Kind: tracer.LibDriver, Loaded: true, Probes: 9}
	current := &tracer.Library{Kind: tracer.LibMarker, Loaded: true, Probes: 5}
	old := &tracer.Library{Kind: tracer.LibMarker, Loaded: true, Probes: 4, Missing: []string{tracer.ProbeSchedStep}}
	refused := &tracer.Library{Kind: tracer.LibMarker, Loaded: true, Probes: 4,
		Failed: []string{tracer.ProbeSchedStep + ": 3 arguments (\"-8@%rdi -8@%rsi -8@%rdx\"), want 11 to 11"}}
	for _, c := range []struct {
		name string
		libs []*tracer.Library
		note bool
	}{
		{"no marker: its own hint says so", []*tracer.Library{cuda}, false},
		{"a marker with sched_step", []*tracer.Library{cuda, current}, false},
		{"an older marker", []*tracer.Library{cuda, old}, true},
		{"a sched_step that could not be probed", []*tracer.Library{cuda, refused}, true},
		{"an older copy next to a current one", []*tracer.Library{old, current}, false},
	} {
		note := schedProbeNote(c.libs)
		if (note != "") != c.note || c.note && !strings.Contains(note, "kv_cache_usage") {
			t.Errorf("%s: note %q, want one: %v", c.name, note, c.note)
		}
	}
}

func TestSchedEndNote(t *testing.T) {
	steps := analysis.PhaseSet{{Phase: analysis.PhaseDecode, Count: 10}}
	for _, c := range []struct {
		name   string
		s      analysis.Summary
		probed bool
		want   string // in the note; "" for none
	}{
		{"the probe is there, no record came", analysis.Summary{Phases: steps}, true, "scheduler patch is off"},
		{"records, none joined", analysis.Summary{Phases: steps, Scheduler: &analysis.SchedulerTotals{SchedSteps: 4}}, true, "no forward pass carried"},
		{"joined", analysis.Summary{Phases: steps, Scheduler: &analysis.SchedulerTotals{SchedSteps: 4, Joined: 4}}, true, ""},
		{"an older marker: said at the start", analysis.Summary{Phases: steps}, false, ""},
		{"no forward pass at all", analysis.Summary{}, true, ""},
	} {
		note := schedEndNote(c.s, c.probed)
		if c.want == "" && note != "" || !strings.Contains(note, c.want) {
			t.Errorf("%s: note %q, want %q in it", c.name, note, c.want)
		}
	}
}
