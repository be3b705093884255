package report

import (
	"bytes"
	"errors"
	"fmt"
	"image/color"
	"image/png"
	"math"
	"slices"
	"strconv"
	"time"

	xfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/profilemate/profilemate-bpf/analysis"
)

// A Figure is a plot as data: panels of named series, which tests check
// before Render draws them with gonum/plot. Every series has its own colour;
// phases always have the same one (PhaseColor).
type Figure struct {
	Name     string // file name without extension, e.g. "plot_step_duration"
	Title    string // the header over all panels: what is plotted
	Subtitle string // which server, when, how long
	Caption  string // one line under the plot on report.html
	Cols     int    // panels side by side; rows follow
	Panels   []Panel
	WidthPx  int
	// PanelHeightPx is each panel row's height; the header adds HeaderPx.
	PanelHeightPx int
}

// Panel is one set of axes.
type Panel struct {
	Title          string
	XLabel, YLabel string
	// XMin..YMax fix the axes (shared between panels so they compare);
	// NaN leaves one to the data.
	XMin, XMax, YMin, YMax float64
	Series                 []Series
	Marks                  []Mark // vertical lines: percentiles
}

// SeriesKind is how a series is drawn.
type SeriesKind int

const (
	Dots SeriesKind = iota // one dot per point
	Line                   // points joined in order
)

// Series is one named set of points.
type Series struct {
	Name   string // the legend entry
	Kind   SeriesKind
	Dashed bool // a Line drawn dashed (the legend of marks)
	Color  color.RGBA
	Points plotter.XYs
}

// Mark is a vertical dashed line at a value, e.g. the p99: Name ("p99") is
// its legend entry, Label ("p99 4.21 ms") goes into the panel's title.
type Mark struct {
	X     float64
	Name  string
	Label string
	Color color.RGBA
}

// Rendered is a figure drawn.
type Rendered struct {
	Figure   *Figure
	PNG, SVG []byte
	W, H     int // PNG size in pixels
}

const (
	dpi = 96
	// HeaderPx is the height of a figure's header (title, subtitle,
	// legend) over its panels.
	HeaderPx = 84
)

// PhaseColor is the colour of a phase in every plot (Okabe-Ito colours,
// told apart also with colour-blindness).
func PhaseColor(p analysis.Phase) color.RGBA {
	switch p {
	case analysis.PhasePrefill:
		return color.RGBA{0xD5, 0x5E, 0x00, 0xFF} // vermillion
	case analysis.PhaseDecode:
		return color.RGBA{0x00, 0x72, 0xB2, 0xFF} // blue
	default:
		return color.RGBA{0x00, 0x9E, 0x73, 0xFF} // bluish green
	}
}

// rankColors tell ranks apart in the spread plot.
var rankColors = []color.RGBA{
	{0x00, 0x72, 0xB2, 0xFF}, {0xD5, 0x5E, 0x00, 0xFF}, {0x00, 0x9E, 0x73, 0xFF}, {0xCC, 0x79, 0xA7, 0xFF},
	{0xE6, 0x9F, 0x00, 0xFF}, {0x56, 0xB4, 0xE9, 0xFF}, {0x99, 0x99, 0x99, 0xFF}, {0x00, 0x00, 0x00, 0xFF},
}

var markDashes = []vg.Length{vg.Points(4), vg.Points(3)}

var markColors = map[string]color.RGBA{
	"p50": {0x33, 0x33, 0x33, 0xFF},
	"p95": {0xB0, 0x00, 0x20, 0xFF},
	"p99": {0x80, 0x00, 0x80, 0xFF},
}

func px(n int) vg.Length { return vg.Length(n) * vg.Inch / dpi }

func init() {
	// Sans serif reads better on screens than gonum's default serif face.
	plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"}
}

// allPhases is the output order of phases, as the analysis lists them.
var allPhases = []analysis.Phase{analysis.PhasePrefill, analysis.PhaseDecode, analysis.PhaseMixed}

// Figures are the plots of res: step duration over time per process, the
// distribution per phase and, with tensor parallelism, the cross-rank
// spread over time. A trace without steps has none.
func Figures(res analysis.Result, f Facts) []*Figure {
	if len(res.Rows) == 0 {
		return nil
	}
	figs := []*Figure{durationFigure(res, f), distributionFigure(res, f)}
	if len(res.Summary.Ranks) > 0 {
		figs = append(figs, spreadFigure(res, f))
	}
	return figs
}

// subtitle names the server and the trace's start for every figure's header.
func subtitle(res analysis.Result, f Facts) string {
	s := f.Server
	if s == "" {
		s = "vLLM server"
	}
	start := "trace start unknown"
	if !f.Start.IsZero() {
		start = "trace started " + f.Start.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	return fmt.Sprintf("%s, %s, %.1f s", s, start, res.Summary.Trace.DurationSec)
}

func traceEnd(res analysis.Result) float64 {
	end := res.Summary.Trace.DurationSec
	for _, r := range res.Rows {
		end = max(end, r.TimestampSec+r.DurationMs/1e3)
	}
	return end
}

func durationFigure(res analysis.Result, f Facts) *Figure {
	fig := &Figure{
		Name:  "plot_step_duration",
		Title: "Step duration over time, per process", Subtitle: subtitle(res, f),
		Caption: "Every step as a dot at its begin, by phase; one panel per process, all on the same axes.",
		Cols:    1, WidthPx: 1400, PanelHeightPx: 340,
	}
	var yMax float64
	for _, r := range res.Rows {
		yMax = max(yMax, r.DurationMs)
	}
	for _, p := range res.Summary.Processes {
		panel := Panel{
			Title:  processName(p),
			XLabel: "time since trace start (s)", YLabel: "step duration (ms)",
			XMin: 0, XMax: traceEnd(res), YMin: 0, YMax: yMax * 1.05,
		}
		for _, ph := range allPhases {
			var pts plotter.XYs
			for _, r := range res.Rows {
				if r.PID == p.PID && r.Phase == ph {
					pts = append(pts, plotter.XY{X: r.TimestampSec, Y: r.DurationMs})
				}
			}
			if len(pts) > 0 {
				panel.Series = append(panel.Series, Series{Name: string(ph), Kind: Dots, Color: PhaseColor(ph), Points: pts})
			}
		}
		fig.Panels = append(fig.Panels, panel)
	}
	return fig
}

func processName(p analysis.ProcessSummary) string {
	if p.Title == "" {
		return fmt.Sprintf("pid %d", p.PID)
	}
	return fmt.Sprintf("%s (pid %d)", p.Title, p.PID)
}

// maxCurvePoints bounds a CDF's points: a curve 1,400 pixels wide shows no
// more, and the SVG stays small.
const maxCurvePoints = 2000

func distributionFigure(res analysis.Result, f Facts) *Figure {
	fig := &Figure{
		Name:  "plot_duration_distribution",
		Title: "Distribution of step duration per phase, all processes", Subtitle: subtitle(res, f),
		Caption: "Cumulative share of steps at or under each duration; p50, p95 and p99 as in the summary table.",
		WidthPx: 1400, PanelHeightPx: 420,
	}
	for _, st := range res.Summary.Phases {
		var durs []float64
		for _, r := range res.Rows {
			if r.Phase == st.Phase {
				durs = append(durs, r.DurationMs)
			}
		}
		slices.Sort(durs)
		n := len(durs)
		step := max(1, n/maxCurvePoints)
		var pts plotter.XYs
		for i := 0; i < n; i += step {
			pts = append(pts, plotter.XY{X: durs[i], Y: float64(i+1) / float64(n)})
		}
		if last := (plotter.XY{X: durs[n-1], Y: 1}); pts[len(pts)-1] != last {
			pts = append(pts, last)
		}
		pad := max((st.MaxMs-st.MinMs)/10, 0.01)
		var marks []Mark
		for _, m := range []struct {
			name string
			x    float64
		}{{"p50", st.P50Ms}, {"p95", st.P95Ms}, {"p99", st.P99Ms}} {
			marks = append(marks, Mark{X: m.x, Name: m.name, Label: fmt.Sprintf("%s %.2f ms", m.name, m.x), Color: markColors[m.name]})
		}
		panel := Panel{
			Title:  fmt.Sprintf("%s: %d steps\n%s   %s   %s", st.Phase, st.Count, marks[0].Label, marks[1].Label, marks[2].Label),
			XLabel: "step duration (ms)", YLabel: "share of steps ≤ duration",
			// The range of the data and a tenth of it either side: the
			// steps of one phase often differ by less than their size.
			XMin: max(0, st.MinMs-pad), XMax: st.MaxMs + pad, YMin: 0, YMax: 1.02,
			Series: []Series{{Name: string(st.Phase), Kind: Line, Color: PhaseColor(st.Phase), Points: pts}},
			Marks:  marks,
		}
		fig.Panels = append(fig.Panels, panel)
	}
	fig.Cols = len(fig.Panels)
	return fig
}

func spreadFigure(res analysis.Result, f Facts) *Figure {
	fig := &Figure{
		Name:  "plot_rank_spread",
		Title: "Cross-rank spread per step: slowest minus fastest rank", Subtitle: subtitle(res, f),
		Caption: "Per step that every rank timed: how much longer the slowest rank took than the fastest, coloured by the slowest rank.",
		Cols:    1, WidthPx: 1400, PanelHeightPx: 360,
	}
	for _, g := range res.Summary.Ranks {
		panel := Panel{
			Title:  fmt.Sprintf("%s_TP*: %d aligned steps, p50 %.2f ms, p99 %.2f ms", g.Group, g.AlignedSteps, g.P50Ms, g.P99Ms),
			XLabel: "time since trace start (s)", YLabel: "spread (ms)",
			XMin: 0, XMax: traceEnd(res), YMin: 0, YMax: g.MaxMs*1.05 + 1e-3,
		}
		for i, rk := range g.Slowest {
			var pts plotter.XYs
			for _, s := range g.Steps {
				if s.SlowestRank == rk.Rank {
					pts = append(pts, plotter.XY{X: s.TimestampSec, Y: s.SpreadMs})
				}
			}
			if len(pts) > 0 {
				panel.Series = append(panel.Series, Series{
					Name: fmt.Sprintf("TP%d slowest (%.0f%%)", rk.Rank, rk.Share*100), Kind: Dots,
					Color: rankColors[i%len(rankColors)], Points: pts,
				})
			}
		}
		fig.Panels = append(fig.Panels, panel)
	}
	return fig
}

// Size is the figure's PNG size in pixels.
func (fig *Figure) Size() (w, h int) {
	cols := max(fig.Cols, 1)
	rows := (len(fig.Panels) + cols - 1) / cols
	return fig.WidthPx, HeaderPx + max(rows, 1)*fig.PanelHeightPx
}

// Render draws the figure as PNG and as SVG, side by side.
func (fig *Figure) Render() (Rendered, error) {
	w, h := fig.Size()
	var pngBuf, svgBuf bytes.Buffer
	var pngErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		img := vgimg.NewWith(vgimg.UseWH(px(w), px(h)), vgimg.UseDPI(dpi), vgimg.UseBackgroundColor(color.White))
		if pngErr = fig.draw(draw.New(img)); pngErr == nil {
			// The fastest compression: the default spent as long
			// squeezing the PNG as drawing it, for a file a third
			// smaller.
			pngErr = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&pngBuf, img.Image())
		}
	}()
	svg := vgsvg.New(px(w), px(h))
	svgErr := fig.draw(draw.New(svg))
	if svgErr == nil {
		_, svgErr = svg.WriteTo(&svgBuf)
	}
	<-done
	if err := errors.Join(pngErr, svgErr); err != nil {
		return Rendered{}, err
	}
	return Rendered{Figure: fig, PNG: pngBuf.Bytes(), SVG: svgBuf.Bytes(), W: w, H: h}, nil
}

func (fig *Figure) draw(dc draw.Canvas) error {
	style := func(size float64, bold bool) text.Style {
		st := text.Style{
			Color: color.Black, Font: font.From(plot.DefaultFont, vg.Length(size)),
			XAlign: draw.XCenter, YAlign: draw.YCenter, Handler: plot.DefaultTextHandler,
		}
		if bold {
			st.Font.Weight = xfont.WeightBold
		}
		return st
	}
	mid := (dc.Min.X + dc.Max.X) / 2
	top := dc.Max.Y
	dc.FillText(style(15, true), vg.Point{X: mid, Y: top - px(16)}, fig.Title)
	dc.FillText(style(12, false), vg.Point{X: mid, Y: top - px(40)}, fig.Subtitle)
	fig.drawLegend(dc, top-px(66))
	body := draw.Crop(dc, 0, 0, 0, -px(HeaderPx))

	cols := max(fig.Cols, 1)
	rows := (len(fig.Panels) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	for i, panel := range fig.Panels {
		p, err := panel.plot()
		if err != nil {
			return err
		}
		grid[i/cols][i%cols] = p
	}
	if len(fig.Panels) == 0 {
		return nil
	}
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: px(24), PadY: px(18), PadTop: px(6), PadBottom: px(6), PadLeft: px(10), PadRight: px(16)}
	canvases := plot.Align(grid, tiles, body)
	for i := range grid {
		for j, p := range grid[i] {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
	return nil
}

// Legend is every series name once, in the order the panels have them,
// with its colour (the same in every panel of a figure), then the marks'
// names, drawn dashed.
func (fig *Figure) Legend() []Series {
	var out, marks []Series
	add := func(list *[]Series, s Series) {
		if !slices.ContainsFunc(*list, func(o Series) bool { return o.Name == s.Name }) {
			*list = append(*list, s)
		}
	}
	for _, p := range fig.Panels {
		for _, s := range p.Series {
			add(&out, Series{Name: s.Name, Kind: s.Kind, Color: s.Color})
		}
		for _, m := range p.Marks {
			add(&marks, Series{Name: m.Name, Kind: Line, Color: m.Color, Dashed: true})
		}
	}
	return append(out, marks...)
}

// drawLegend draws the figure's legend as one centred line at y: a dot or
// a short line in each series' colour, then its name.
func (fig *Figure) drawLegend(dc draw.Canvas, y vg.Length) {
	entries := fig.Legend()
	st := text.Style{Color: color.Black, Font: font.From(plot.DefaultFont, 13), YAlign: draw.YCenter, Handler: plot.DefaultTextHandler}
	icon, gap := px(22), px(28)
	var width vg.Length
	for _, e := range entries {
		width += icon + st.Width(e.Name) + gap
	}
	x := (dc.Min.X+dc.Max.X)/2 - (width-gap)/2
	for _, e := range entries {
		c := vg.Point{X: x + icon/2 - px(3), Y: y}
		if e.Kind == Line {
			ls := draw.LineStyle{Color: e.Color, Width: vg.Points(2.5)}
			if e.Dashed {
				ls.Width, ls.Dashes = vg.Points(1.5), markDashes
			}
			dc.StrokeLine2(ls, c.X-px(9), y, c.X+px(9), y)
		} else {
			dc.DrawGlyph(draw.GlyphStyle{Color: e.Color, Radius: px(6), Shape: draw.CircleGlyph{}}, c)
		}
		dc.FillText(st, vg.Point{X: x + icon, Y: y}, e.Name)
		x += icon + st.Width(e.Name) + gap
	}
}

func (panel Panel) plot() (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = panel.Title
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.Title.Padding = px(6)
	p.X.Label.Text, p.Y.Label.Text = panel.XLabel, panel.YLabel
	for _, ax := range []*plot.Axis{&p.X, &p.Y} {
		ax.Label.TextStyle.Font.Size = vg.Points(12)
		ax.Tick.Label.Font.Size = vg.Points(11)
	}
	p.Add(plotter.NewGrid())

	// The most numerous series first, so that rare phases (a prefill
	// among decodes) stay visible on top; the legend keeps the series'
	// order.
	order := make([]int, len(panel.Series))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return len(panel.Series[b].Points) - len(panel.Series[a].Points) })
	for _, i := range order {
		s := panel.Series[i]
		switch s.Kind {
		case Line:
			l, err := plotter.NewLine(s.Points)
			if err != nil {
				return nil, err
			}
			l.Color, l.Width = s.Color, vg.Points(2)
			p.Add(l)
		default:
			sc, err := plotter.NewScatter(panel.distinctPixels(s.Points))
			if err != nil {
				return nil, err
			}
			sc.GlyphStyle = draw.GlyphStyle{Color: s.Color, Radius: vg.Points(1.3), Shape: draw.CircleGlyph{}}
			p.Add(dots{sc})
		}
	}
	for _, m := range panel.Marks {
		l, err := plotter.NewLine(plotter.XYs{{X: m.X, Y: 0}, {X: m.X, Y: 1}})
		if err != nil {
			return nil, err
		}
		l.Color, l.Width, l.Dashes = m.Color, vg.Points(1.2), markDashes
		p.Add(l)
	}
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = panel.XMin, panel.XMax, panel.YMin, panel.YMax
	if p.X.Max <= p.X.Min {
		p.X.Max = p.X.Min + 1
	}
	if p.Y.Max <= p.Y.Min {
		p.Y.Max = p.Y.Min + 1
	}
	p.X.Tick.Marker, p.Y.Tick.Marker = niceTicks{10}, niceTicks{6}
	return p, nil
}

// niceTicks labels an axis at steps of 1, 2 or 5 times a power of ten, about
// n of them, with as many decimals as the step needs: gonum's default puts
// three labels on a minute of trace and writes "25.00".
type niceTicks struct{ n int }

func (t niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return nil
	}
	raw := (hi - lo) / float64(t.n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	decimals := max(0, int(-math.Floor(math.Log10(step)+1e-9)))
	var ticks []plot.Tick
	minor := step / 2
	for v := math.Ceil(lo/minor) * minor; v <= hi+minor*1e-9; v += minor {
		v = math.Round(v/minor) * minor
		tick := plot.Tick{Value: v}
		if major := math.Abs(v/step-math.Round(v/step)) < 1e-6; major {
			tick.Label = strconv.FormatFloat(v, 'f', decimals, 64)
		}
		ticks = append(ticks, tick)
	}
	return ticks
}

// dots is a scatter without glyph boxes: the axes are fixed, so the plot
// needs no padding for the glyphs, and asking each of tens of thousands of
// points for its box is a good part of drawing them.
type dots struct{ s *plotter.Scatter }

func (d dots) Plot(c draw.Canvas, p *plot.Plot)            { d.s.Plot(c, p) }
func (d dots) DataRange() (xmin, xmax, ymin, ymax float64) { return d.s.DataRange() }

// Pixels of a panel's data area, about: the figure's width less the axes,
// and a panel row less its title and axes.
const (
	approxDataWidthPx  = 1250
	approxDataHeightPx = 240
)

// distinctPixels leaves out points that would land on a pixel already
// dotted: identical dots drawn again change nothing a person can see, and
// a steady decode phase puts thousands on the same few pixels. A point
// alone on its pixel, an outlier, always stays.
func (panel Panel) distinctPixels(pts plotter.XYs) plotter.XYs {
	xs := approxDataWidthPx / (panel.XMax - panel.XMin)
	ys := approxDataHeightPx / (panel.YMax - panel.YMin)
	if math.IsInf(xs, 0) || math.IsNaN(xs) || math.IsInf(ys, 0) || math.IsNaN(ys) {
		return pts
	}
	type pixel struct{ x, y int64 }
	seen := make(map[pixel]bool, len(pts))
	out := make(plotter.XYs, 0, len(pts))
	for _, p := range pts {
		k := pixel{int64(math.Round(p.X * xs)), int64(math.Round(p.Y * ys))}
		if !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	return out
}

// startText is how the page and the figures give the trace's start.
func startText(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}
