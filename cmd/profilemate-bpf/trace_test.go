package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/profilemate/profilemate-bpf/analysis"
	"github.com/profilemate/profilemate-bpf/tracer"
)

func TestMarkerStatus(t *testing.T) {
	cuda := &tracer.Library{Kind: tracer.LibDriver, Loaded: true}
	installed := &tracer.Library{Kind: tracer.LibMarker}
	loaded := &tracer.Library{Kind: tracer.LibMarker, Loaded: true}
	for _, c := range []struct {
		name         string
		libs         []*tracer.Library
		status, hint string
	}{
		{"no marker anywhere", []*tracer.Library{cuda}, "NOT found", markerHint},
		{"installed, no process loaded it", []*tracer.Library{cuda, installed}, "installed, not loaded yet", markerNotLoadedHint},
		{"loaded by a process", []*tracer.Library{cuda, loaded}, "found", ""},
		{"one copy installed, another loaded", []*tracer.Library{installed, cuda, loaded}, "found", ""},
	} {
		status, hint := markerStatus(c.libs)
		if status != c.status || hint != c.hint {
			t.Errorf("%s: %q with hint %.30q, want %q with %.30q", c.name, status, hint, c.status, c.hint)
		}
	}
}

func TestLaunchCostHint(t *testing.T) {
	eager := analysis.Summary{
		Phases: analysis.PhaseSet{{Phase: analysis.PhaseDecode, Count: 10, MeanMs: 10, MeanLaunches: ptrTo(500.0)}},
		Trace:  analysis.TraceInfo{LaunchesProbed: true},
	}
	// 500 launches at 0.3-1.2 us in a 10 ms step: 1.5-6%.
	if h := launchCostHint(eager); !strings.Contains(h, "500 kernels") || !strings.Contains(h, "1.5-6.0%") ||
		!strings.Contains(h, "--launches=sample") {
		t.Errorf("eager hint = %q", h)
	}
	graph := eager
	graph.Phases = analysis.PhaseSet{{Phase: analysis.PhaseDecode, Count: 10, MeanMs: 3, MeanLaunches: ptrTo(2.0)}}
	if h := launchCostHint(graph); h != "" {
		t.Errorf("graph-mode steps got a hint: %q", h)
	}
	off := eager
	off.Trace.LaunchesProbed = false
	if h := launchCostHint(off); h != "" {
		t.Errorf("launches not counted, yet a hint: %q", h)
	}
	sampled := eager
	sampled.Trace.LaunchesSampled = true
	if h := launchCostHint(sampled); h != "" {
		t.Errorf("launches sampled, yet a hint: %q", h)
	}
	if h := launchCostHint(analysis.Summary{Trace: analysis.TraceInfo{LaunchesProbed: true}}); h != "" {
		t.Errorf("no steps, yet a hint: %q", h)
	}
}

func TestServerName(t *testing.T) {
	for _, c := range []struct {
		title string
		want  string
	}{
		{"/venv/bin/python3 -m vllm.entrypoints.openai.api_server --model m", "python3 -m vllm.entrypoints.openai.api_server --model m (pid 7)"},
		{"vllm serve m", "vllm serve m (pid 7)"},
		{"/usr/bin/vllm", "vllm (pid 7)"},
		{"", "pid 7"},
		{"vllm serve " + strings.Repeat("x", 100), "vllm serve " + strings.Repeat("x", 58) + "… (pid 7)"},
	} {
		if got := serverName(c.title, 7); got != c.want {
			t.Errorf("serverName(%q) = %q, want %q", c.title, got, c.want)
		}
	}
}

func TestEdgeNote(t *testing.T) {
	if n := edgeNote(analysis.TraceInfo{}); n != "" {
		t.Errorf("nothing at the edges, yet a note: %q", n)
	}
	n := edgeNote(analysis.TraceInfo{StepsBeforeProbes: 2, StepsOpenAtEnd: 1})
	for _, want := range []string{"2 steps left out", "steps_before_probes", "1 steps still open", "open_at_end"} {
		if !strings.Contains(n, want) {
			t.Errorf("note %q lacks %q", n, want)
		}
	}
}

// TestLaunchLine: the line after the attach summary says, for every
// combination of --launches and --syncs, how each is probed, and where
// either is sampled it keeps the form gpu/tracerrun.py reads the sampling
// from (SAMPLING there: "kernel launches counted ON in every EVERY" or
// "GPU waits timed ON in every EVERY", followed by a space).
func TestLaunchLine(t *testing.T) {
	for _, c := range []struct {
		launches probeMode
		syncs    probeMode
		want     string
	}{
		{modeSample, modeSample, "  kernel launches counted 250ms in every 2.5s and GPU waits timed in the same seconds (--launches=all, --syncs=all: every step)"},
		{modeAll, modeAll, "  kernel launches counted and GPU waits timed in every step (--launches=all, --syncs=all)"},
		{modeOff, modeOff, "  kernel launches not counted and GPU waits not timed (--launches=off, --syncs=off)"},
		{modeSample, modeAll, "  kernel launches counted 250ms in every 2.5s (--launches=all: every step); GPU waits timed in every step (--syncs=all)"},
		{modeSample, modeOff, "  kernel launches counted 250ms in every 2.5s (--launches=all: every step); GPU waits not timed (--syncs=off)"},
		{modeAll, modeSample, "  kernel launches counted in every step (--launches=all); GPU waits timed 250ms in every 2.5s (--syncs=all: every step)"},
		{modeAll, modeOff, "  kernel launches counted in every step (--launches=all); GPU waits not timed (--syncs=off)"},
		{modeOff, modeSample, "  kernel launches not counted (--launches=off); GPU waits timed 250ms in every 2.5s (--syncs=all: every step)"},
		{modeOff, modeAll, "  kernel launches not counted (--launches=off); GPU waits timed in every step (--syncs=all)"},
	} {
		cfg := config{launches: c.launches, syncs: c.syncs, sample: tracer.Sampling{On: 250 * time.Millisecond, Every: 2500 * time.Millisecond}}
		if got := launchLine(cfg); got != c.want {
			t.Errorf("--launches=%s --syncs=%s: %q, want %q", c.launches, c.syncs, got, c.want)
		}
		sampling := regexp.MustCompile(`(?:kernel launches counted|GPU waits timed) (\S+) in every (\S+) `).FindStringSubmatch(launchLine(cfg))
		if (sampling != nil) != (c.launches == modeSample || c.syncs == modeSample) || sampling != nil && (sampling[1] != "250ms" || sampling[2] != "2.5s") {
			t.Errorf("--launches=%s --syncs=%s: gpu/tracerrun.py would read the sampling as %q", c.launches, c.syncs, sampling)
		}
	}
}
