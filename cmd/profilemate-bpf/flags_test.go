package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/profilemate/profilemate-bpf/tracer"
)

// TestSyncsFlag: --syncs is sample by default, in the launches' windows;
// all and off are taken, off (or --leave-out sync) leaves the
// synchronization probes out of the trace, and the sampling window is
// the tracer's whenever either class is sampled, with the classes that
// follow it.
func TestSyncsFlag(t *testing.T) {
	def := tracer.Sampling{On: time.Second, Every: 10 * time.Second}
	for _, c := range []struct {
		args     []string
		launches probeMode
		syncs    probeMode
		sampled  tracer.Classes
		sampling tracer.Sampling
		leave    tracer.Classes
	}{
		{nil, modeSample, modeSample, tracer.ClassLaunch | tracer.ClassSync, def, 0},
		{[]string{"--syncs=all"}, modeSample, modeAll, tracer.ClassLaunch, def, 0},
		{[]string{"--syncs", "off"}, modeSample, modeOff, tracer.ClassLaunch, def, tracer.ClassSync},
		{[]string{"--syncs=sample"}, modeSample, modeSample, tracer.ClassLaunch | tracer.ClassSync, def, 0},
		{[]string{"--leave-out", "sync"}, modeSample, modeOff, tracer.ClassLaunch, def, tracer.ClassSync},
		{[]string{"--leave-out", "sync", "--syncs=all"}, modeSample, modeOff, tracer.ClassLaunch, def, tracer.ClassSync},
		{[]string{"--launches=off"}, modeOff, modeSample, tracer.ClassSync, def, tracer.ClassLaunch},
		{[]string{"--launches=all", "--launch-sample", "2s/5s"}, modeAll, modeSample, tracer.ClassSync,
			tracer.Sampling{On: 2 * time.Second, Every: 5 * time.Second}, 0},
		{[]string{"--launches=all", "--syncs=all"}, modeAll, modeAll, 0, tracer.Sampling{}, 0},
		{[]string{"--launches=off", "--syncs=off"}, modeOff, modeOff, 0, tracer.Sampling{}, tracer.ClassLaunch | tracer.ClassSync},
		{[]string{"--leave-out", "graph", "--syncs=off"}, modeSample, modeOff, tracer.ClassLaunch, def, tracer.ClassGraph | tracer.ClassSync},
	} {
		cfg, err := parseFlags(append([]string{"--pid", "5"}, c.args...), &bytes.Buffer{})
		if err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if cfg.launches != c.launches || cfg.syncs != c.syncs || cfg.sampled() != c.sampled || cfg.sampling() != c.sampling || cfg.leave() != c.leave {
			t.Errorf("%q: launches %s, syncs %s, sampled %v, sampling %v, leave %v; want %s, %s, %v, %v, %v", c.args,
				cfg.launches, cfg.syncs, cfg.sampled(), cfg.sampling(), cfg.leave(), c.launches, c.syncs, c.sampled, c.sampling, c.leave)
		}
	}
}

// TestSyncsFlagRejectsOtherValues: anything but sample, all or off is a
// usage error (exit 2) that names the values, true and false included
// (--launches takes those for its old boolean form; --syncs was never
// one), and a bare --syncs wants its value.
func TestSyncsFlagRejectsOtherValues(t *testing.T) {
	for _, args := range [][]string{{"--syncs=true"}, {"--syncs=false"}, {"--syncs=sampled"}, {"--syncs="}, {"--syncs"}} {
		_, err := parseFlags(append([]string{"--pid", "5"}, args...), &bytes.Buffer{})
		want := "want sample, all or off"
		if args[0] == "--syncs" {
			want = "flag needs an argument: -syncs"
		}
		if codeOf(err) != exitUsage || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "see --help") {
			t.Errorf("%q: exit %d (%v), want %d saying %q and pointing at --help", args, codeOf(err), err, exitUsage, want)
		}
	}
}

// TestHelpNamesSyncs: --help explains --syncs and that --launch-sample
// sets the seconds of both.
func TestHelpNamesSyncs(t *testing.T) {
	var help bytes.Buffer
	if _, err := parseFlags([]string{"--help"}, &help); err != errHelp {
		t.Fatal(err)
	}
	for _, want := range []string{"[--syncs=sample|all|off]", "--syncs=all times", "--syncs=off never", "sets those seconds for both",
		"-syncs sample", "under --launches=sample and --syncs=sample"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, help.String())
		}
	}
}
