package report_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/profilemate/profilemate-bpf/analysis"
	"github.com/profilemate/profilemate-bpf/report"
)

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]report.Outputs{
		"all":                   report.All,
		"csv":                   {},
		"csv,timeline":          {Timeline: true},
		"timeline, plots":       {Timeline: true, Plots: true},
		"report":                {Report: true},
		"timeline,plots,report": report.All,
	} {
		got, err := report.ParseFormat(in)
		if err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "pdf", "csv,,timeline"} {
		if _, err := report.ParseFormat(bad); err == nil {
			t.Errorf("ParseFormat(%q): no error", bad)
		}
	}
}

func TestWrite(t *testing.T) {
	res := analysis.Analyze(asyncTrace(100))
	names := func(files []string) string {
		var n []string
		for _, f := range files {
			n = append(n, filepath.Base(f))
		}
		return strings.Join(n, " ")
	}
	dir := t.TempDir()
	files, err := report.Write(dir, res, facts, report.All)
	if err != nil {
		t.Fatal(err)
	}
	want := "timeline.json report.html plot_step_duration.png plot_step_duration.svg plot_duration_distribution.png " +
		"plot_duration_distribution.svg plot_rank_spread.png plot_rank_spread.svg"
	if got := names(files); got != want {
		t.Errorf("wrote %s\nwant %s", got, want)
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil || fi.Size() == 0 || fi.Mode().Perm()&^0o644 != 0 {
			t.Errorf("%s: %v %v", f, fi, err)
		}
	}

	dir = t.TempDir()
	files, err = report.Write(dir, res, facts, report.Outputs{Report: true})
	if err != nil || names(files) != "report.html" {
		t.Errorf("report only: %v %v", names(files), err)
	}
	if files, err := report.Write(t.TempDir(), res, facts, report.Outputs{}); err != nil || len(files) != 0 {
		t.Errorf("csv only: %v %v", files, err)
	}
	// Without steps there is nothing to plot; the page and the timeline
	// are still written.
	files, err = report.Write(t.TempDir(), analysis.Analyze(analysis.Report{}), facts, report.All)
	if err != nil || names(files) != "timeline.json report.html" {
		t.Errorf("no steps: %v %v", names(files), err)
	}
	if _, err := report.Write(filepath.Join(t.TempDir(), "missing"), res, facts, report.All); err == nil {
		t.Error("no error writing into a missing directory")
	}
}
