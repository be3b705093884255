package main

import (
	"testing"

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
