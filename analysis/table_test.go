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
