package analysis

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// tableCells returns the cells of every boxed line of out (header and data
// lines), trimmed, so tests compare content and not padding.
func tableCells(out string) [][]string {
	var cells [][]string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "│") {
			continue
		}
		parts := strings.Split(strings.Trim(line, "│"), "│")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		cells = append(cells, parts)
	}
	return cells
}

func render(t *testing.T, r Report) string {
	t.Helper()
	var buf bytes.Buffer
	if err := RenderTable(&buf, Analyze(r).Summary); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestRenderTable(t *testing.T) {
	out := render(t, tpReport())
	cells := tableCells(out)
	want := [][]string{
		{"Phase", "Process", "Steps", "Mean", "P50", "P95", "P99", "Max", "Launches/step", "Graphs/step", "Sync ms/step"},
		{"prefill", "all", "2", "42.00", "42.00", "43.80", "43.96", "44.00", "100.0", "1.0", "2.00"},
		{"prefill", "VLLM::Worker_TP0 (100)", "1", "40.00", "40.00", "40.00", "40.00", "40.00", "100.0", "1.0", "2.00"},
		{"prefill", "VLLM::Worker_TP1 (101)", "1", "44.00", "44.00", "44.00", "44.00", "44.00", "100.0", "1.0", "2.00"},
		{"decode", "all", "7", "11.00", "10.00", "13.40", "13.88", "14.00", "100.0", "1.0", "2.00"},
		{"decode", "VLLM::Worker_TP0 (100)", "4", "10.50", "10.00", "11.70", "11.94", "12.00", "100.0", "1.0", "2.00"},
		{"decode", "VLLM::Worker_TP1 (101)", "3", "11.67", "11.00", "13.70", "13.94", "14.00", "100.0", "1.0", "2.00"},
		{"Aligned steps", "Mean", "P50", "P95", "P99", "Max", "Slowest rank"},
		{"4", "2.75", "3.00", "4.00", "4.00", "4.00", "TP1 75%, TP0 25%"},
	}
	if !slices.EqualFunc(cells, want, slices.Equal) {
		t.Errorf("table cells:\n%q\nwant\n%q\noutput:\n%s", cells, want, out)
	}
	for _, title := range []string{"Forward passes (ms)\n", "Cross-rank spread per step"} {
		if !strings.Contains(out, title) {
			t.Errorf("output lacks %q:\n%s", title, out)
		}
	}
	for i, line := range strings.Split(out, "\n") {
		if strings.TrimRight(line, " ") != line {
			t.Errorf("line %d has trailing spaces: %q", i, line)
		}
	}
}

// One process: its line alone, no "all" line repeating it and no rank table.
func TestRenderTableSingleProcess(t *testing.T) {
	p := Process{PID: 9, Title: "VLLM::EngineCore", Rank: -1}
	r := Report{StartNs: traceStart, EndNs: traceStart + 100*msNs, Processes: []Process{p},
		Steps: []Step{tpStep(p, 1, 0, 10, 1, 0, 1), tpStep(p, 2, 20, 12, 1, 0, 1)}}
	out := render(t, r)
	cells := tableCells(out)
	want := [][]string{
		{"Phase", "Process", "Steps", "Mean", "P50", "P95", "P99", "Max", "Launches/step", "Graphs/step", "Sync ms/step"},
		{"decode", "VLLM::EngineCore (9)", "2", "11.00", "11.00", "11.90", "11.98", "12.00", "100.0", "1.0", "2.00"},
	}
	if !slices.EqualFunc(cells, want, slices.Equal) {
		t.Errorf("table cells:\n%q\nwant\n%q\noutput:\n%s", cells, want, out)
	}
}

func TestRenderTableWithoutSteps(t *testing.T) {
	r := tpReport()
	r.Steps = nil
	out := render(t, r)
	cells := tableCells(out)
	want := [][]string{
		{"Process", "Launches", "Launches/s", "Graph launches", "Syncs", "Sync wait ms", "Sync share"},
		{"VLLM::Worker_TP0 (100)", "4000", "2000.0", "20", "30", "50.00", "2.5%"},
		{"VLLM::Worker_TP1 (101)", "5000", "2500.0", "20", "30", "100.00", "5.0%"},
		{"VLLM::EngineCore (50)", "0", "0.0", "0", "0", "0.00", "0.0%"},
	}
	if !slices.EqualFunc(cells, want, slices.Equal) {
		t.Errorf("table cells:\n%q\nwant\n%q\noutput:\n%s", cells, want, out)
	}
	if !strings.Contains(out, "No forward-pass steps") {
		t.Errorf("output does not say why there are no phases:\n%s", out)
	}
}

// TestRenderTableSched: with sched records, a scheduler table follows the
// phases: per phase over the records its steps joined, then over all.
func TestRenderTableSched(t *testing.T) {
	r := tpReport()
	for i := range r.Steps {
		r.Steps[i].SchedKey = key(7, r.Steps[i].StepID)
	}
	for id := uint64(1); id <= 6; id++ {
		s := schedAt(core.PID, key(7, id), 20*id, int64(id))
		if id == 6 {
			s.SpecProposed, s.SpecAccepted = -1, -1
		}
		r.Scheds = append(r.Scheds, s)
	}
	cells := tableCells(render(t, r))
	i := slices.IndexFunc(cells, func(l []string) bool { return l[0] == "Phase" && l[1] == "Sched steps" })
	if i < 0 {
		t.Fatalf("no scheduler table in\n%v", cells)
	}
	want := [][]string{
		{"Phase", "Sched steps", "KV mean", "KV peak", "Preempted", "Waiting mean", "Accepted"},
		{"prefill", "1", "10.1%", "10.1%", "1", "2.0", "75.0%"},
		{"decode", "4", "10.3%", "10.5%", "5", "7.0", "75.0%"}, // records 2..5: 10.35% shown rounded
		{"all", "6", "10.3%", "10.6%", "6", "7.0", "75.0%"},    // 6 preempted: 1+2+0+1+2+0
	}
	if got := cells[i : i+len(want)]; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("scheduler table\n got %q\nwant %q", got, want)
	}
	// Without sched records there is none (TestRenderTable has the rest).
	if strings.Contains(render(t, tpReport()), "Sched steps") {
		t.Error("a scheduler table without sched records")
	}
}
