package tracer

import (
	"fmt"
	"strings"
)

// Classes is a set of probe classes. A trace can leave some out to measure
// what each one costs the traced server: the cost of tracing is located by
// comparing runs, not by argument.
type Classes uint

// The probe classes, and the periodic rescan of /proc, which a trace can
// leave out.
const (
	ClassMarker Classes = 1 << iota // the marker's USDT step probes
	ClassSync                       // CUDA synchronization entry and return probes
	ClassGraph                      // CUDA graph launches
	ClassLaunch                     // kernel launches (--launches=false)
	ClassFork                       // the fork hook that traces children from birth
	ClassRescan                     // the periodic look for new processes and libraries
)

var classNames = []struct {
	c    Classes
	name string
}{
	{ClassMarker, "marker"}, {ClassSync, "sync"}, {ClassGraph, "graph"},
	{ClassLaunch, "launch"}, {ClassFork, "fork"}, {ClassRescan, "rescan"},
}

// ClassNames lists the names ParseClasses accepts.
func ClassNames() []string {
	out := make([]string, len(classNames))
	for i, c := range classNames {
		out[i] = c.name
	}
	return out
}

// ParseClasses reads a comma-separated list of class names ("" is none).
func ParseClasses(s string) (Classes, error) {
	var set Classes
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		found := false
		for _, c := range classNames {
			if c.name == f {
				set |= c.c
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown probe class %q (known: %s)", f, strings.Join(ClassNames(), ", "))
		}
	}
	return set, nil
}

// Has reports whether c is in the set.
func (s Classes) Has(c Classes) bool { return s&c != 0 }

func (s Classes) String() string {
	var names []string
	for _, c := range classNames {
		if s.Has(c.c) {
			names = append(names, c.name)
		}
	}
	return strings.Join(names, ",")
}

// progClass is the class of each uprobe program the attacher puts on a
// CUDA library.
var progClass = map[string]Classes{
	"rt_launch": ClassLaunch, "drv_launch": ClassLaunch,
	"rt_graph_launch": ClassGraph, "drv_graph_launch": ClassGraph,
	"sync_enter": ClassSync,
}

// without returns sets less those whose program is in the left-out classes.
func without(sets []probeSet, leave Classes) []probeSet {
	var out []probeSet
	for _, s := range sets {
		if !leave.Has(progClass[s.prog]) {
			out = append(out, s)
		}
	}
	return out
}

// only returns the sets whose program is in classes.
func only(sets []probeSet, classes Classes) []probeSet {
	return without(sets, ^classes)
}
