package analysis

import (
	"slices"
	"testing"
)

// launchesOffReport is tpReport as a trace with --launches=false gives it:
// no launch counted anywhere, graph launches and syncs as usual.
func launchesOffReport() Report {
	r := tpReport()
	r.NoLaunchProbes = true
	for i := range r.Steps {
		r.Steps[i].Launches = 0
	}
	for i := range r.Activity {
		r.Activity[i].Launches = 0
	}
	return r
}

// Without launch probes the launch counts are shown as not measured, never
// as zero launches; graph launches are still counted.
func TestLaunchesNotProbed(t *testing.T) {
	records := csvRecords(t, Analyze(launchesOffReport()).Rows)
	li, gi := slices.Index(records[0], "launches"), slices.Index(records[0], "graph_launches")
	for _, rec := range records[1:] {
		if rec[li] != "" || rec[gi] != "1" {
			t.Errorf("launches %q graph_launches %q, want an empty cell and 1: %v", rec[li], rec[gi], rec)
		}
	}

	for _, c := range []struct {
		r    Report
		want bool
	}{{tpReport(), true}, {launchesOffReport(), false}} {
		m, _ := summaryJSON(t, c.r)
		if got := m["_trace"].(map[string]any)["launches_probed"]; got != c.want {
			t.Errorf("_trace.launches_probed = %v, want %v", got, c.want)
		}
	}

	cells := tableCells(render(t, launchesOffReport()))
	if cells[1][8] != "off" || cells[1][9] != "1.0" {
		t.Errorf("launches/step %q graphs/step %q, want off and 1.0: %q", cells[1][8], cells[1][9], cells)
	}
	r := launchesOffReport()
	r.Steps = nil
	cells = tableCells(render(t, r))
	if want := []string{"VLLM::Worker_TP0 (100)", "off", "off", "20", "30", "50.00", "2.5%"}; !slices.Equal(cells[1], want) {
		t.Errorf("activity line %q, want %q", cells[1], want)
	}
}

// launchesSampledReport is tpReport as a trace with --launches=sample gives
// it: the launch probes were live for 0.5 s of the 2 s trace, and only
// steps 1 and 2 of each rank lay wholly in those seconds. The processes'
// launch totals (4000 and 5000) are of those seconds alone.
func launchesSampledReport() Report {
	r := tpReport()
	r.LaunchesSampled = true
	r.LaunchLiveNs = 500 * msNs
	for i := range r.Steps {
		r.Steps[i].LaunchesUncounted = r.Steps[i].StepID > 2
	}
	return r
}

// _trace says for how long the launch probes were live, and _activity's
// launch rate is over those seconds: 4000 and 5000 launches in 0.5 s of
// probing, not in the 2 s trace; without a live time, over the trace.
func TestLaunchesPerSecOverLiveSeconds(t *testing.T) {
	for _, c := range []struct {
		name         string
		r            Report
		sampled      bool
		liveSec      float64
		rate0, rate1 float64 // _activity's TP0 and TP1
		cell0        string  // TP0's Launches/s in the activity table
		launches0    float64
		probed       bool
	}{
		{"sampled", launchesSampledReport(), true, 0.5, 8000, 10000, "8000.0", 4000, true},
		{"every step", tpReport(), false, 0, 2000, 2500, "2000.0", 4000, true}, // no live time given: over the trace's 2 s
		{"off", launchesOffReport(), false, 0, 0, 0, "off", 0, false},
	} {
		m, _ := summaryJSON(t, c.r)
		tr := m["_trace"].(map[string]any)
		if tr["launches_sampled"] != c.sampled || tr["launch_live_sec"] != c.liveSec || tr["launches_probed"] != c.probed {
			t.Errorf("%s: _trace launches_sampled %v, launch_live_sec %v, launches_probed %v; want %v, %v, %v",
				c.name, tr["launches_sampled"], tr["launch_live_sec"], tr["launches_probed"], c.sampled, c.liveSec, c.probed)
		}
		acts := m["_activity"].([]any)
		checkNumbers(t, c.name+": _activity[0]", acts[0], map[string]float64{"pid": 100, "launches": c.launches0, "launches_per_sec": c.rate0})
		checkNumbers(t, c.name+": _activity[1]", acts[1], map[string]float64{"pid": 101, "launches_per_sec": c.rate1})

		r := c.r
		r.Steps = nil
		if cells := tableCells(render(t, r)); cells[1][2] != c.cell0 {
			t.Errorf("%s: activity table Launches/s %q, want %q: %q", c.name, cells[1][2], c.cell0, cells)
		}
	}
}
