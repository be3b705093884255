package report

import (
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"slices"

	"github.com/profilemate/profilemate-bpf/analysis"
)

// WriteHTML writes report.html: one file with everything inline (styles,
// the plots as data: URIs), so that it opens anywhere, also mailed or
// offline, and fetches nothing.
func WriteHTML(w io.Writer, res analysis.Result, f Facts, plots []Rendered) error {
	return page.Execute(w, pageData(res, f, plots))
}

type htmlTable struct {
	analysis.Table
	Text []bool // per column: left-aligned text
}

type htmlPlot struct {
	Name, Title, Caption string
	Src                  template.URL
	W, H                 int
}

type fact struct{ Key, Value string }

type htmlProcess struct {
	Title, PID, Rank, Steps, Launches, GraphLaunches, Syncs, SyncWait string
}

type htmlData struct {
	Title        string
	Server       string
	Start        string
	Tables       []htmlTable
	Plots        []htmlPlot
	Trace        []fact
	Processes    []htmlProcess
	ActivityNote string // how to read the processes' launch and synchronization columns
	Libraries    []Library
	Marker       string
	Timeline     string
	NoSteps      bool
	Version      string
}

func pageData(res analysis.Result, f Facts, plots []Rendered) htmlData {
	d := htmlData{
		Title:    "profilemate-bpf: " + orDefault(f.Server, "vLLM server"),
		Server:   orDefault(f.Server, "unknown"),
		Start:    startText(f.Start),
		Marker:   orDefault(f.Marker, "unknown"),
		Timeline: TimelineName,
		NoSteps:  len(res.Rows) == 0,
		Version:  orDefault(f.Version, "dev"),
	}
	for _, t := range analysis.Tables(res.Summary) {
		ht := htmlTable{Table: t, Text: make([]bool, len(t.Header))}
		for _, c := range t.TextCols {
			ht.Text[c] = true
		}
		d.Tables = append(d.Tables, ht)
	}
	for _, p := range plots {
		d.Plots = append(d.Plots, htmlPlot{
			Name: p.Figure.Name, Title: p.Figure.Title, Caption: p.Figure.Caption,
			// The plots are ours, PNG, base64: a safe URL.
			Src: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(p.PNG)),
			W:   p.W, H: p.H,
		})
	}
	tr := res.Summary.Trace
	d.Trace = []fact{
		{"duration_sec", fmt.Sprintf("%.3f", tr.DurationSec)},
		{"steps", fmt.Sprint(tr.Steps)},
		{"timed_steps", fmt.Sprint(tr.TimedSteps)},
		{"steps_without_duration", fmt.Sprint(tr.StepsWithoutDuration)},
		{"dropped_records", fmt.Sprint(tr.DroppedRecords)},
		{"launches_probed", fmt.Sprint(tr.LaunchesProbed)},
		{"launches_sampled", fmt.Sprint(tr.LaunchesSampled)},
		{"launch_live_sec", fmt.Sprintf("%.3f", tr.LaunchLiveSec)},
		{"syncs_probed", fmt.Sprint(tr.SyncsProbed)},
		{"syncs_sampled", fmt.Sprint(tr.SyncsSampled)},
		{"sync_live_sec", fmt.Sprintf("%.3f", tr.SyncLiveSec)},
	}
	if tr.LeftOut != "" {
		d.Trace = append(d.Trace, fact{"left_out", tr.LeftOut})
	}
	steps := make(map[uint32]int)
	for _, p := range res.Summary.Processes {
		steps[p.PID] = p.Steps
	}
	// Every traced process, with or without steps (the API server and the
	// engine core run none when there are workers).
	for _, a := range res.Summary.Activity {
		rank := "-"
		if a.Rank >= 0 {
			rank = fmt.Sprint(a.Rank)
		}
		launches := fmt.Sprint(a.Launches)
		if !tr.LaunchesProbed {
			launches = "off"
		}
		syncs, wait := fmt.Sprint(a.Syncs), fmt.Sprintf("%.2f", a.SyncWaitMs)
		if !tr.SyncsProbed {
			syncs, wait = "off", "off"
		}
		d.Processes = append(d.Processes, htmlProcess{
			Title: orDefault(a.Title, "-"), PID: fmt.Sprint(a.PID), Rank: rank, Steps: fmt.Sprint(steps[a.PID]),
			Launches: launches, GraphLaunches: fmt.Sprint(a.GraphLaunches), Syncs: syncs, SyncWait: wait,
		})
	}
	d.ActivityNote = analysis.ActivitySampledNote(tr)
	d.Libraries = slices.Clone(f.Libraries)
	return d
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	// cls is a column's alignment class: text left, numbers right.
	"cls": func(text []bool, i int) string {
		if i < len(text) && text[i] {
			return "text"
		}
		return "num"
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font-family: "Liberation Sans", Arial, Helvetica, sans-serif; margin: 24px auto; max-width: 1460px; padding: 0 16px; color: #1a1a1a; line-height: 1.4; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 28px 0 8px; border-bottom: 1px solid #ccc; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
.meta { color: #444; margin: 0 0 12px; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 10px; }
th { background: #f0f3f7; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text, th.text { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 10px 0 26px; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; display: block; }
figcaption { color: #444; font-size: 14px; margin-top: 4px; }
.open { background: #eef6ee; border: 1px solid #b8d8b8; padding: 10px 14px; border-radius: 4px; }
code { font-family: "Liberation Mono", monospace; font-size: 13px; background: #f4f4f4; padding: 1px 3px; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; font-size: 14px; }
dt { font-family: "Liberation Mono", monospace; }
dd { margin: 0; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p class="meta">Trace started {{.Start}} &middot; marker {{.Marker}}</p>

<p class="open" id="timeline">The timeline of every step is <code>{{.Timeline}}</code> next to this page. To see it,
open <b>ui.perfetto.dev</b> in a browser, choose <i>Open trace file</i> and pick <code>{{.Timeline}}</code> (or drag
the file onto the page; it is read in the browser, not uploaded), or open <code>chrome://tracing</code> and <i>Load</i> it.
Each traced process is a track named by its vLLM title; each step is a slice with forward, sampling and wait for output inside.</p>

<h2>Summary</h2>
{{if .NoSteps}}<p>No forward-pass steps were seen (marker absent?), so there are no plots: the table is each process's CUDA activity.</p>{{end}}
{{range .Tables}}{{$t := .}}<h3>{{.Title}}</h3>
<table class="summary">
<thead><tr>{{range $i, $h := .Header}}<th class="{{cls $t.Text $i}}">{{$h}}</th>{{end}}</tr></thead>
<tbody>
{{range .Lines}}<tr>{{range $i, $c := .}}<td class="{{cls $t.Text $i}}">{{$c}}</td>{{end}}</tr>
{{end}}</tbody>
</table>
{{if .Note}}<p class="meta">{{.Note}}.</p>{{end}}
{{end}}
{{if .Plots}}<h2>Plots</h2>
{{range .Plots}}<figure id="{{.Name}}">
<img src="{{.Src}}" width="{{.W}}" height="{{.H}}" alt="{{.Title}}">
<figcaption>{{.Caption}} The same plot is <code>{{.Name}}.png</code> and <code>{{.Name}}.svg</code> next to this page.</figcaption>
</figure>
{{end}}{{end}}
<h2>Trace</h2>
<h3><code>_trace</code></h3>
<dl id="trace-facts">
{{range .Trace}}<dt>{{.Key}}</dt><dd>{{.Value}}</dd>
{{end}}</dl>
<p>Server: {{.Server}}. Marker: {{.Marker}}.</p>
<h3>Processes</h3>
<table id="processes">
<thead><tr><th class="text">Process</th><th class="num">PID</th><th class="num">TP rank</th><th class="num">Steps</th><th class="num">Launches</th><th class="num">Graph launches</th><th class="num">Syncs</th><th class="num">Sync wait ms</th></tr></thead>
<tbody>
{{range .Processes}}<tr><td class="text">{{.Title}}</td><td class="num">{{.PID}}</td><td class="num">{{.Rank}}</td><td class="num">{{.Steps}}</td><td class="num">{{.Launches}}</td><td class="num">{{.GraphLaunches}}</td><td class="num">{{.Syncs}}</td><td class="num">{{.SyncWait}}</td></tr>
{{end}}</tbody>
</table>
{{if .ActivityNote}}<p class="meta" id="activity-note">{{.ActivityNote}}.</p>{{end}}
<h3>Libraries</h3>
{{if .Libraries}}<table id="libraries">
<thead><tr><th class="text">Kind</th><th class="text">Path</th><th class="text">Loaded</th><th class="num">Probes</th></tr></thead>
<tbody>
{{range .Libraries}}<tr><td class="text">{{.Kind}}</td><td class="text"><code>{{.Path}}</code></td><td class="text">{{if .Loaded}}mapped by a traced process{{else}}installed, not loaded yet{{end}}</td><td class="num">{{.Probes}}</td></tr>
{{end}}</tbody>
</table>{{else}}<p>None recorded.</p>{{end}}
<p class="meta">Written by profilemate-bpf {{.Version}}.</p>
</body>
</html>
`))
