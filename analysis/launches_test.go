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
