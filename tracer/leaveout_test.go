package tracer

import (
	"strings"
	"testing"
)

func TestParseClasses(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Classes
		err  string
	}{
		{"", 0, ""},
		{"sync", ClassSync, ""},
		{"marker, fork ,rescan", ClassMarker | ClassFork | ClassRescan, ""},
		{"launch,graph,sync", ClassLaunch | ClassGraph | ClassSync, ""},
		{"sync,bogus", 0, `unknown probe class "bogus"`},
	} {
		got, err := ParseClasses(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseClasses(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseClasses(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if back, _ := ParseClasses(got.String()); back != got {
			t.Errorf("round trip of %q: %q gives %v", tc.in, got.String(), back)
		}
	}
}

func TestWithout(t *testing.T) {
	progs := func(sets []probeSet) string {
		var p []string
		for _, s := range sets {
			p = append(p, s.prog)
		}
		return strings.Join(p, " ")
	}
	for _, tc := range []struct {
		leave Classes
		want  string
	}{
		{0, "drv_launch drv_graph_launch sync_enter"},
		{ClassLaunch, "drv_graph_launch sync_enter"},
		{ClassSync | ClassGraph, "drv_launch"},
		{ClassMarker | ClassFork | ClassRescan, "drv_launch drv_graph_launch sync_enter"},
	} {
		if got := progs(without(driverProbes, tc.leave)); got != tc.want {
			t.Errorf("without(driverProbes, %v) = %q, want %q", tc.leave, got, tc.want)
		}
	}
	// Every program on a CUDA library belongs to a class.
	for _, s := range append(append([]probeSet(nil), runtimeProbes...), driverProbes...) {
		if progClass[s.prog] == 0 {
			t.Errorf("program %s has no class", s.prog)
		}
	}
}
