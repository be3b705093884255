package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/profilemate/profilemate-bpf/analysis"
	"github.com/profilemate/profilemate-bpf/report"
	"github.com/profilemate/profilemate-bpf/tracer"
)

// writeResults writes the CSV and summary, then the timeline, plots and
// report.html that outputs selects, prints the table and says where the
// files are. It runs after every trace, also an interrupted one. The report
// r holds the trace's bounds and settings; the rest comes from tr and col.
func writeResults(dir string, stdout, stderr io.Writer, tr *tracer.Tracer, col *collector, r analysis.Report,
	facts report.Facts, outputs report.Outputs) error {
	dropped, invalid, err := tr.Lost()
	if err != nil {
		fmt.Fprintln(stderr, "profilemate-bpf: warning:", err)
	}
	if dropped+invalid > 0 {
		fmt.Fprintf(stderr, "profilemate-bpf: warning: %d records lost (ring buffer full: %d, undecodable: %d)\n",
			dropped+invalid, dropped, invalid)
	}
	for _, p := range tr.Processes() {
		r.Processes = append(r.Processes, p.Label())
	}
	r.Steps, r.Scheds = col.all()
	r.Activity, r.DroppedRecords = tr.Activity(), dropped+invalid
	r.SyncLiveNs, r.LaunchLiveNs = tr.SyncLiveNs(), tr.LaunchLiveNs()
	r.StepsBeforeProbes = tr.StepsBeforeProbes()
	res := analysis.Analyze(r)
	files, err := analysis.Write(dir, res)
	if err != nil {
		return fail(exitOutput, err)
	}
	written := []string{files.CSV, files.Summary}
	for _, l := range tr.Libraries() {
		facts.Libraries = append(facts.Libraries, report.Library{Kind: l.Kind.String(), Path: l.Path, Loaded: l.Loaded, Probes: l.Probes})
	}
	t0 := time.Now()
	more, reportErr := report.Write(dir, res, facts, outputs)
	took := time.Since(t0)
	written = append(written, more...)
	for _, f := range written {
		chownToInvoker(f)
	}
	if err := analysis.RenderTable(stdout, res.Summary); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%d forward passes written to\n", len(res.Rows))
	for _, f := range written {
		fmt.Fprintf(stdout, "  %s\n", f)
	}
	if len(more) > 0 {
		fmt.Fprintf(stderr, "profilemate-bpf: timeline, plots and report (%d files) written in %.2f s; --format csv skips them\n", len(more), took.Seconds())
	}
	if hint := openHint(more); hint != "" {
		fmt.Fprint(stdout, hint)
	}
	if note := edgeNote(res.Summary.Trace); note != "" {
		fmt.Fprintln(stderr, note)
	}
	sched, _ := schedProbed(tr.Libraries())
	if note := schedEndNote(res.Summary, sched); note != "" {
		fmt.Fprintln(stderr, note)
	}
	if hint := launchCostHint(res.Summary); hint != "" {
		fmt.Fprintln(stderr, hint)
	}
	if reportErr != nil {
		return fail(exitOutput, reportErr)
	}
	return nil
}

// openHint says how to look at the report and the timeline, where written.
func openHint(files []string) string {
	var b strings.Builder
	for _, f := range files {
		switch filepath.Base(f) {
		case report.ReportName:
			fmt.Fprintf(&b, "Open %s in a browser for the summary, the plots and the trace's facts.\n", f)
		case report.TimelineName:
			fmt.Fprintf(&b, "Open %s in Perfetto (ui.perfetto.dev, Open trace file) or chrome://tracing for the timeline of every step.\n", f)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "\n" + b.String()
}

// edgeNote says what happened to the steps at the trace's edges, if any
// were not written as finished rows: begun before their process's CUDA
// probes were live (left out), or still open at the end (written as far as
// they got, or counted without a duration).
func edgeNote(t analysis.TraceInfo) string {
	var parts []string
	if t.StepsBeforeProbes > 0 {
		parts = append(parts, fmt.Sprintf("%d steps left out that began before their process's CUDA probes were live (_trace.steps_before_probes)", t.StepsBeforeProbes))
	}
	if t.StepsOpenAtEnd > 0 {
		parts = append(parts, fmt.Sprintf("%d steps still open when the trace ended, written as far as they got with status open_at_end, or counted in steps_without_duration where no point came after step_begin (_trace.steps_open_at_end)", t.StepsOpenAtEnd))
	}
	if len(parts) == 0 {
		return ""
	}
	return "profilemate-bpf: note: " + strings.Join(parts, "; ")
}

// The host time one probed kernel launch cost on the H200 hosts measured
// (gpu/hitcost.py, then launchcost.py, and validate.sh), lowest and highest.
const (
	launchProbeMinNs = 300
	launchProbeMaxNs = 1200
)

// launchCostHint estimates what counting launches cost the traced steps when
// they launch many kernels (eager mode), and names the way around it; it is
// empty when the cost is under 1% or launches were not counted.
func launchCostHint(s analysis.Summary) string {
	if !s.Trace.LaunchesProbed || s.Trace.LaunchesSampled {
		return "" // sampled launches cost a tenth of this
	}
	var steps int
	var launches, ms float64
	for _, p := range s.Phases {
		steps += p.Count
		if p.MeanLaunches != nil { // never nil here: with launches all probed, every step is counted
			launches += float64(p.Count) * *p.MeanLaunches
		}
		ms += float64(p.Count) * p.MeanMs
	}
	if steps == 0 || ms <= 0 {
		return ""
	}
	low := launches * launchProbeMinNs / 1e6 / ms
	high := launches * launchProbeMaxNs / 1e6 / ms
	if high < 0.01 {
		return ""
	}
	return fmt.Sprintf("profilemate-bpf: note: the steps launched %.0f kernels each on average; counting them cost about "+
		"%.1f-%.1f%% of their time (%d-%d ns per launch on the machines measured). --launches=sample (the default) counts them one second in ten; --launches=off not at all.",
		launches/float64(steps), 100*low, 100*high, launchProbeMinNs, launchProbeMaxNs)
}
