package report_test

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/profilemate/profilemate-bpf/analysis"
	"github.com/profilemate/profilemate-bpf/report"
)

func figure(t *testing.T, figs []*report.Figure, name string) *report.Figure {
	t.Helper()
	for _, f := range figs {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no figure %s among %d", name, len(figs))
	return nil
}

func seriesNames(p report.Panel) string {
	var names []string
	for _, s := range p.Series {
		names = append(names, s.Name)
	}
	return strings.Join(names, ",")
}

// TestFigures: what each plot holds, before it is drawn.
func TestFigures(t *testing.T) {
	res := analysis.Analyze(asyncTrace(400))
	figs := report.Figures(res, facts)
	if len(figs) != 3 {
		t.Fatalf("%d figures, want step duration, distribution and rank spread", len(figs))
	}
	for _, f := range figs {
		if !strings.Contains(f.Subtitle, facts.Server) || !strings.Contains(f.Subtitle, "2026-12-01 09:50:00 UTC") {
			t.Errorf("%s: subtitle %q names neither the server nor the start", f.Name, f.Subtitle)
		}
		for _, p := range f.Panels {
			if p.XLabel == "" || p.YLabel == "" || !strings.Contains(p.XLabel+p.YLabel, "(ms)") && !strings.Contains(p.XLabel, "(ms)") {
				t.Errorf("%s %q: axes %q, %q: want labels with units", f.Name, p.Title, p.XLabel, p.YLabel)
			}
		}
	}

	dur := figure(t, figs, "plot_step_duration")
	if len(dur.Panels) != 2 || dur.Panels[0].Title != "VLLM::Worker_TP0 (pid 4101)" || dur.Panels[1].Title != "VLLM::Worker_TP1 (pid 4102)" {
		t.Fatalf("step duration panels: %+v", dur.Panels)
	}
	for _, p := range dur.Panels {
		if got := seriesNames(p); got != "prefill,decode,mixed" {
			t.Errorf("%s: series %s, want one per phase", p.Title, got)
		}
		n := 0
		for _, s := range p.Series {
			n += len(s.Points)
			if s.Color != report.PhaseColor(analysis.Phase(s.Name)) {
				t.Errorf("%s: %s in %v", p.Title, s.Name, s.Color)
			}
		}
		if n != 400 {
			t.Errorf("%s: %d points, want one per step (400)", p.Title, n)
		}
		if p.XMin != dur.Panels[0].XMin || p.XMax != dur.Panels[0].XMax || p.YMax != dur.Panels[0].YMax {
			t.Errorf("%s: axes differ from the first panel's: panels must compare", p.Title)
		}
	}

	dist := figure(t, figs, "plot_duration_distribution")
	if len(dist.Panels) != len(res.Summary.Phases) {
		t.Fatalf("%d distribution panels, %d phases", len(dist.Panels), len(res.Summary.Phases))
	}
	for i, st := range res.Summary.Phases {
		p := dist.Panels[i]
		if seriesNames(p) != string(st.Phase) {
			t.Errorf("panel %d: series %s, want %s", i, seriesNames(p), st.Phase)
		}
		// The marks are the summary's percentiles, not computed again.
		want := fmt.Sprintf("p50 %.2f ms|p95 %.2f ms|p99 %.2f ms", st.P50Ms, st.P95Ms, st.P99Ms)
		var got []string
		for j, m := range p.Marks {
			got = append(got, m.Label)
			if m.X != []float64{st.P50Ms, st.P95Ms, st.P99Ms}[j] {
				t.Errorf("%s: mark %s at %v", st.Phase, m.Label, m.X)
			}
		}
		if strings.Join(got, "|") != want {
			t.Errorf("%s: marks %v, want %s", st.Phase, got, want)
		}
		if !strings.Contains(p.Title, strings.ReplaceAll(want, "|", "   ")) {
			t.Errorf("%s: title %q does not give the percentiles", st.Phase, p.Title)
		}
		pts := p.Series[0].Points
		if last := pts[len(pts)-1]; math.Abs(last.X-st.MaxMs) > 0.0005 || last.Y != 1 {
			t.Errorf("%s: CDF ends at %+v, want (max %v, 1)", st.Phase, last, st.MaxMs)
		}
	}

	spread := figure(t, figs, "plot_rank_spread")
	if len(spread.Panels) != 1 || !regexp.MustCompile(`^TP0 slowest \(\d+%\),TP1 slowest \(\d+%\)$`).MatchString(seriesNames(spread.Panels[0])) {
		t.Errorf("spread panels %+v", spread.Panels)
	}
}

// TestFiguresWithoutRanks: one process, no tensor parallelism: no spread
// plot; no steps: no plots at all.
func TestFiguresWithoutRanks(t *testing.T) {
	r := asyncTrace(50)
	var steps []analysis.Step
	for _, s := range r.Steps {
		if s.PID == tp0.PID {
			steps = append(steps, s)
		}
	}
	r.Steps = steps
	figs := report.Figures(analysis.Analyze(r), facts)
	if len(figs) != 2 || len(figs[0].Panels) != 1 {
		t.Errorf("one process: %d figures", len(figs))
	}
	if figs := report.Figures(analysis.Analyze(analysis.Report{}), facts); len(figs) != 0 {
		t.Errorf("no steps: %d figures", len(figs))
	}
}

// near says whether c is within a small distance of want (antialiased
// edges blend a colour into the background).
func near(c color.Color, want color.RGBA) bool {
	r, g, b, _ := c.RGBA()
	d := func(x uint32, y uint8) int { v := int(x>>8) - int(y); return v * v }
	return d(r, want.R)+d(g, want.G)+d(b, want.B) < 20*20
}

// TestRender: the PNG has the figure's size and draws every series in its
// colour inside the panels (below the header, which has the legend); the
// SVG is well-formed and has every series' colour too.
func TestRender(t *testing.T) {
	res := analysis.Analyze(asyncTrace(400))
	for _, fig := range report.Figures(res, facts) {
		t.Run(fig.Name, func(t *testing.T) {
			r, err := fig.Render()
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(r.PNG))
			if err != nil {
				t.Fatal(err)
			}
			w, h := fig.Size()
			if b := img.Bounds(); b.Dx() != w || b.Dy() != h || r.W != w || r.H != h || w < 1000 || h < 300 {
				t.Fatalf("PNG %v, figure %dx%d, rendered %dx%d", b, w, h, r.W, r.H)
			}
			counts := colourCounts(img.(interface {
				image.Image
				SubImage(image.Rectangle) image.Image
			}).SubImage(image.Rect(0, report.HeaderPx, w, h)), fig.Legend())
			white := 0
			for y := 0; y < h; y += 4 {
				for x := 0; x < w; x += 4 {
					if near(img.At(x, y), color.RGBA{255, 255, 255, 255}) {
						white++
					}
				}
			}
			if white == w*h/16 {
				t.Fatal("blank image")
			}
			points := map[string]int{}
			for _, p := range fig.Panels {
				for _, s := range p.Series {
					points[s.Name] += len(s.Points)
				}
			}
			for _, s := range fig.Legend() {
				// A dot is a few pixels; a line many.
				if want := min(points[s.Name], 200); counts[s.Name] < want {
					t.Errorf("series %s: %d pixels of %v in the panels for %d points: not drawn", s.Name, counts[s.Name], s.Color, points[s.Name])
				}
			}
			hex := func(c color.RGBA) string { return fmt.Sprintf("#%02X%02X%02X", c.R, c.G, c.B) }
			for _, s := range fig.Legend() {
				if n := strings.Count(string(r.SVG), hex(s.Color)); n < 2 {
					t.Errorf("SVG: %s's colour %s %d times", s.Name, hex(s.Color), n)
				}
			}
			dec := xml.NewDecoder(bytes.NewReader(r.SVG))
			root := ""
			for {
				tok, err := dec.Token()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("SVG: %v", err)
				}
				if se, ok := tok.(xml.StartElement); ok && root == "" {
					root = se.Name.Local
				}
			}
			if root != "svg" {
				t.Errorf("SVG root %q", root)
			}
		})
	}
}

func colourCounts(img image.Image, series []report.Series) map[string]int {
	counts := map[string]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := img.At(x, y)
			for _, s := range series {
				if near(c, s.Color) {
					counts[s.Name]++
				}
			}
		}
	}
	return counts
}
