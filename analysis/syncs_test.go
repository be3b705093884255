package analysis

import (
	"slices"
	"strings"
	"testing"
)

// syncsSampledReport is tpReport as a trace with --syncs=sample gives it:
// the synchronization probes were live for 0.5 s of the 2 s trace, and
// only steps 1 and 2 of each rank lay wholly in those seconds. A step
// outside carries what the probes saw of it (here 7 ms, as one that
// straddled a window's start would), which is not its wait.
func syncsSampledReport() Report {
	r := tpReport()
	r.SyncsSampled = true
	r.SyncLiveNs = 500 * msNs
	for i := range r.Steps {
		if r.Steps[i].StepID > 2 {
			r.Steps[i].SyncsUncounted = true
			r.Steps[i].SyncWaitNs = 7 * msNs
		}
	}
	return r
}

// A step whose synchronizations were not timed whole has an empty
// sync_wait_ms cell, never a wait that reads as measured; the others keep
// theirs, and the launches are not affected.
func TestSyncWaitCellEmptyWhereNotCounted(t *testing.T) {
	records := csvRecords(t, Analyze(syncsSampledReport()).Rows)
	si, li, step := slices.Index(records[0], "sync_wait_ms"), slices.Index(records[0], "launches"), slices.Index(records[0], "step")
	for _, rec := range records[1:] {
		want := "2.000"
		if rec[step] != "1" && rec[step] != "2" {
			want = ""
		}
		if rec[si] != want || rec[li] != "100" {
			t.Errorf("step %s: sync_wait_ms %q launches %q, want %q and 100", rec[step], rec[si], rec[li], want)
		}
	}
}

// Sync-wait means are over the steps whose synchronizations were timed,
// and say how many: decode's counted steps are step 2 of each rank, 2 ms
// each, while the 7 ms of the others stay out.
func TestSyncWaitMeanOverCountedStepsOnly(t *testing.T) {
	m, _ := summaryJSON(t, syncsSampledReport())
	checkNumbers(t, "decode", m["decode"], map[string]float64{
		"count": 7, "mean_sync_wait_ms": 2, "sync_counted_steps": 2, "mean_launches": 100, "launch_counted_steps": 7,
	})
	checkNumbers(t, "prefill", m["prefill"], map[string]float64{"count": 2, "mean_sync_wait_ms": 2, "sync_counted_steps": 2})
	tp0Decode := m["_processes"].([]any)[0].(map[string]any)["phases"].(map[string]any)["decode"]
	checkNumbers(t, "_processes[0].phases.decode", tp0Decode, map[string]float64{"count": 4, "mean_sync_wait_ms": 2, "sync_counted_steps": 1})

	// Every step counted: the mean is over all of them.
	m, _ = summaryJSON(t, tpReport())
	checkNumbers(t, "decode", m["decode"], map[string]float64{"count": 7, "mean_sync_wait_ms": 2, "sync_counted_steps": 7})
}

// A phase none of whose steps fell in a sampled second has no mean of
// launches or sync wait: null in summary.json and "-" in the table, never
// a zero that reads as steps that launch nothing (lease 11 on the H200:
// a 2.5 s batch whose sampled quarter second held only its prefill and
// mixed steps showed its 389 graph-replayed decode steps at 0.0).
func TestPhaseWithoutSampledStepsHasNoMeans(t *testing.T) {
	r := syncsSampledReport()
	r.LaunchesSampled, r.LaunchLiveNs = true, 500*msNs
	for i := range r.Steps {
		if r.Steps[i].StepID == 1 { // the prefill steps
			r.Steps[i].LaunchesUncounted, r.Steps[i].SyncsUncounted = true, true
		}
	}
	m, _ := summaryJSON(t, r)
	prefill := m["prefill"].(map[string]any)
	for _, k := range []string{"mean_launches", "mean_sync_wait_ms"} {
		if v, ok := prefill[k]; !ok || v != nil {
			t.Errorf("prefill.%s = %v (present: %v), want null", k, v, ok)
		}
	}
	checkNumbers(t, "prefill", prefill, map[string]float64{"count": 2, "launch_counted_steps": 0, "sync_counted_steps": 0})
	checkNumbers(t, "decode", m["decode"], map[string]float64{"mean_launches": 100, "launch_counted_steps": 7})
	lines := 0
	for _, cells := range tableCells(render(t, r)) {
		if cells[0] != "prefill" {
			continue
		}
		lines++
		if cells[8] != "-" || cells[10] != "-" {
			t.Errorf("prefill line %q: want - for Launches/step and Sync ms/step", cells)
		}
	}
	if lines == 0 {
		t.Error("no prefill line in the phase table")
	}
}

// _trace says whether synchronizations were probed and sampled and for how
// long their probes were live, and _activity's share of time blocked is
// over those seconds: 50 and 100 ms of waiting in 0.5 s of probing.
func TestSyncsSampledSummaryKeys(t *testing.T) {
	for _, c := range []struct {
		name            string
		r               Report
		probed, sampled bool
		liveSec         float64
		share0, share1  float64 // _activity's TP0 and TP1
	}{
		{"every step", tpReport(), true, false, 0, 0.025, 0.05}, // no live time given: over the trace's 2 s
		{"sampled", syncsSampledReport(), true, true, 0.5, 0.1, 0.2},
		{"off", syncsOffReport(), false, false, 0, 0, 0},
	} {
		m, _ := summaryJSON(t, c.r)
		tr := m["_trace"].(map[string]any)
		if tr["syncs_probed"] != c.probed || tr["syncs_sampled"] != c.sampled || tr["sync_live_sec"] != c.liveSec {
			t.Errorf("%s: _trace syncs_probed %v, syncs_sampled %v, sync_live_sec %v; want %v, %v, %v",
				c.name, tr["syncs_probed"], tr["syncs_sampled"], tr["sync_live_sec"], c.probed, c.sampled, c.liveSec)
		}
		acts := m["_activity"].([]any)
		checkNumbers(t, c.name+": _activity[0]", acts[0], map[string]float64{"pid": 100, "sync_wait_share": c.share0})
		checkNumbers(t, c.name+": _activity[1]", acts[1], map[string]float64{"pid": 101, "sync_wait_share": c.share1})
	}
}

// syncsOffReport is tpReport as --syncs=off gives it: no synchronization
// timed anywhere.
func syncsOffReport() Report {
	r := tpReport()
	r.NoSyncProbes = true
	for i := range r.Steps {
		r.Steps[i].SyncWaitNs = 0
		r.Steps[i].SyncsUncounted = true
	}
	for i := range r.Activity {
		r.Activity[i].SyncWaitNs, r.Activity[i].Syncs = 0, 0
	}
	return r
}

// Without synchronization probes the console shows "off" where a wait
// would be, in the phase table and in the activity table, never 0.
func TestSyncsNotProbedShowOff(t *testing.T) {
	records := csvRecords(t, Analyze(syncsOffReport()).Rows)
	si := slices.Index(records[0], "sync_wait_ms")
	for _, rec := range records[1:] {
		if rec[si] != "" {
			t.Errorf("sync_wait_ms %q, want an empty cell: %v", rec[si], rec)
		}
	}
	out := render(t, syncsOffReport())
	if cells := tableCells(out); cells[1][10] != "off" || cells[1][8] != "100.0" {
		t.Errorf("sync ms/step %q launches/step %q, want off and 100.0: %q", cells[1][10], cells[1][8], cells)
	}
	if strings.Contains(out, "sampled seconds") {
		t.Errorf("a note on sampling, yet nothing was sampled:\n%s", out)
	}
	r := syncsOffReport()
	r.Steps = nil
	want := []string{"VLLM::Worker_TP0 (100)", "4000", "2000.0", "20", "off", "off", "off"}
	if cells := tableCells(render(t, r)); !slices.Equal(cells[1], want) {
		t.Errorf("activity line %q, want %q", cells[1], want)
	}
}

// With sampling the console says which means are of the sampled seconds,
// under the phase table, and, without steps, that the processes' launch
// and synchronization figures are of those seconds alone: one note for
// both when they shared their windows, as they do by default.
func TestSampledNotesInTheTable(t *testing.T) {
	const (
		syncNote   = "Syncs and sync wait: in the sampled seconds only, 0.5 s of the 2.0 s trace; sync share is of those seconds"
		launchNote = "Launches: in the sampled seconds only, 0.5 s of the 2.0 s trace; launches/s is their rate over those seconds"
	)
	for _, c := range []struct {
		name            string
		launches, syncs bool
		launchLiveNs    uint64
		want, activity  string
	}{
		{"both sampled", true, true, 500 * msNs, "Launches/step and Sync ms/step: means over the steps of the sampled seconds only (launch_counted_steps and sync_counted_steps in summary.json; -: none of the line's steps fell in one)",
			"Launches, syncs and sync wait: in the sampled seconds only, 0.5 s of the 2.0 s trace; launches/s and sync share are of those seconds"},
		{"both sampled, live apart", true, true, 300 * msNs, "Launches/step and Sync ms/step: means over the steps of the sampled seconds only (launch_counted_steps and sync_counted_steps in summary.json; -: none of the line's steps fell in one)",
			"Launches: in the sampled seconds only, 0.3 s of the 2.0 s trace; launches/s is their rate over those seconds. " + syncNote},
		{"syncs sampled", false, true, 0, "Sync ms/step: means over the steps of the sampled seconds only (sync_counted_steps in summary.json; -: none of the line's steps fell in one)", syncNote},
		{"launches sampled", true, false, 500 * msNs, "Launches/step: means over the steps of the sampled seconds only (launch_counted_steps in summary.json; -: none of the line's steps fell in one)", launchNote},
		{"neither", false, false, 0, "", ""},
	} {
		r := syncsSampledReport()
		r.SyncsSampled, r.LaunchesSampled, r.LaunchLiveNs = c.syncs, c.launches, c.launchLiveNs
		out := render(t, r)
		if note := "\n" + c.want + "\n"; c.want != "" && !strings.Contains(out, note) || c.want == "" && strings.Contains(out, "sampled seconds") {
			t.Errorf("%s: want the note %q under the phase table:\n%s", c.name, c.want, out)
		}
		r.Steps = nil
		out = render(t, r)
		if note := "\n" + c.activity + "\n"; c.activity != "" && !strings.Contains(out, note) || c.activity == "" && strings.Contains(out, "sampled seconds") {
			t.Errorf("%s: want the note %q under the activity table:\n%s", c.name, c.activity, out)
		}
	}
	// The activity table's share is of the live seconds: 50 ms in 0.5 s.
	r := syncsSampledReport()
	r.Steps = nil
	if cells := tableCells(render(t, r)); cells[1][6] != "10.0%" {
		t.Errorf("sync share %q, want 10.0%%: %q", cells[1][6], cells)
	}
}
