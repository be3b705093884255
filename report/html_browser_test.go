package report_test

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/profilemate/profilemate-bpf/analysis"
	"github.com/profilemate/profilemate-bpf/report"
	"github.com/profilemate/profilemate-bpf/report/reporttest"
)

// TestReportInBrowser opens report.html in headless Chromium and checks
// what a person sees: the summary's cells as the console prints them, every
// plot decoded and laid out, the trace's facts, how to open the timeline,
// and that the page fetched nothing. The screenshot is kept in
// reporttest.ArtefactDir as report_screenshot.png.
func TestReportInBrowser(t *testing.T) {
	chromium := reporttest.RequireChromium(t)
	res := analysis.Analyze(asyncTrace(2000))
	dir := t.TempDir()
	if _, err := report.Write(dir, res, facts, report.Outputs{Report: true}); err != nil {
		t.Fatal(err)
	}
	page, err := reporttest.Open(context.Background(), chromium, filepath.Join(dir, report.ReportName), 1500)
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(reporttest.ArtefactDir(t), "report_screenshot.png")
	if err := os.WriteFile(shot, page.PNG, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%dx%d CSS px page)", shot, page.Size[0], page.Size[1])

	if !strings.Contains(page.Title, facts.Server) {
		t.Errorf("title %q", page.Title)
	}
	// The summary tables: exactly the console's cells, in its order.
	tables := analysis.Tables(res.Summary)
	if len(page.Tables) < len(tables)+2 {
		t.Fatalf("%d tables on the page, want the %d summary tables, processes and libraries", len(page.Tables), len(tables))
	}
	for i, want := range tables {
		got := page.Tables[i].Rows
		if !reflect.DeepEqual(got[0], want.Header) || !reflect.DeepEqual(got[1:], want.Lines) {
			t.Errorf("table %q shows\n%v\nwant\n%v\n%v", want.Title, got, want.Header, want.Lines)
		}
		if !strings.Contains(page.Text, want.Title) {
			t.Errorf("no heading %q", want.Title)
		}
	}
	byID := map[string][][]string{}
	for _, tb := range page.Tables {
		byID[tb.ID] = tb.Rows
	}
	if procs := byID["processes"]; len(procs) != 5 || procs[1][0] != "VLLM::Worker_TP0" || procs[1][3] != "2000" {
		t.Errorf("processes table %v", procs)
	}
	if libs := byID["libraries"]; len(libs) != 4 || libs[3][0] != "marker" || libs[3][1] != facts.Libraries[2].Path {
		t.Errorf("libraries table %v", libs)
	}
	for _, s := range []string{
		"_trace", "duration_sec", "timed_steps", "dropped_records", "launches_probed", "launches_sampled", "launch_live_sec",
		"syncs_probed", "syncs_sampled", "sync_live_sec",
		"Marker: found", "timeline.json", "ui.perfetto.dev", "Open trace file", "chrome://tracing",
		"Trace started 2026-12-01 09:50:00 UTC",
	} {
		if !strings.Contains(page.Text, s) {
			t.Errorf("the page does not show %q", s)
		}
	}

	// Every plot drawn at its size; none broken.
	figs := report.Figures(res, facts)
	if len(page.Images) != len(figs) || len(page.Broken) > 0 {
		t.Fatalf("%d images (%d broken: %v), want %d plots", len(page.Images), len(page.Broken), page.Broken, len(figs))
	}
	for i, img := range page.Images {
		w, h := figs[i].Size()
		if img.NaturalW != w || img.NaturalH != h || img.ShownW < 1000 {
			t.Errorf("plot %d: %+v, want %dx%d shown at 1000 px or wider", i, img, w, h)
		}
	}
	for _, u := range page.Requests() {
		if !strings.HasPrefix(u, "file://") && !strings.HasPrefix(u, "data:") {
			t.Errorf("the page fetched %s: it must be self-contained", u)
		}
	}

	// The screenshot shows the page with the plots in it.
	img, err := png.Decode(bytes.NewReader(page.PNG))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 1000 || b.Dy() < page.Size[1]-1 {
		t.Errorf("screenshot %v of a %v page", b, page.Size)
	}
	for _, ph := range []analysis.Phase{analysis.PhasePrefill, analysis.PhaseDecode, analysis.PhaseMixed} {
		n := 0
		b := img.Bounds()
		for y := b.Min.Y; y < b.Max.Y; y += 2 {
			for x := b.Min.X; x < b.Max.X; x += 2 {
				if near(img.At(x, y), report.PhaseColor(ph)) {
					n++
				}
			}
		}
		if n < 100 {
			t.Errorf("the screenshot has %d pixels of %s's colour", n, ph)
		}
	}
}

// TestBrowserSeesBrokenImages: the browser check tells a broken image from
// a drawn one, so a passing TestReportInBrowser means the plots show.
func TestBrowserSeesBrokenImages(t *testing.T) {
	chromium := reporttest.RequireChromium(t)
	path := filepath.Join(t.TempDir(), "broken.html")
	html := `<!DOCTYPE html><title>x</title><img alt="bad" src="data:image/png;base64,iVBORw0KGgoAAAA"><img alt="missing" src="nothere.png">`
	if err := os.WriteFile(path, []byte(html), 0o644); err != nil {
		t.Fatal(err)
	}
	page, err := reporttest.Open(context.Background(), chromium, path, 800)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(page.Broken, []string{"bad", "missing"}) {
		t.Errorf("broken = %v, want both", page.Broken)
	}
}
