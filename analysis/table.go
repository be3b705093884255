package analysis

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
)

// Table is one table of the summary as the console shows it, and as
// report.html shows the same: a title, a header and lines of cells already
// formatted. TextCols are the left-aligned (text) columns; the others are
// numbers. Note, when set, says how to read some columns, under the table.
type Table struct {
	Title    string
	Header   []string
	TextCols []int
	Lines    [][]string
	Note     string
}

// Tables are the summary's tables: per phase, one line for all processes
// together and one per process (the all-processes line is left out when a
// single process ran the phase, as it would repeat that process's line),
// then the scheduler's figures when sched records came, then the cross-rank
// spread when there are ranks. Without any step (the
// marker is absent) they are per-process CUDA activity instead.
func Tables(s Summary) []Table {
	if len(s.Phases) == 0 {
		return []Table{activityTable(s)}
	}
	ts := []Table{phaseTable(s)}
	if s.Scheduler != nil {
		ts = append(ts, schedTable(s))
	}
	if len(s.Ranks) > 0 {
		ts = append(ts, rankTable(s.Ranks))
	}
	return ts
}

// RenderTable writes the console view of s: its Tables, a blank line apart.
func RenderTable(w io.Writer, s Summary) error {
	for i, t := range Tables(s) {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if err := renderTable(w, t); err != nil {
			return err
		}
	}
	return nil
}

func phaseTable(s Summary) Table {
	t := Table{
		Title:    "Forward passes (ms)",
		Header:   []string{"Phase", "Process", "Steps", "Mean", "P50", "P95", "P99", "Max", "Launches/step", "Graphs/step", "Sync ms/step"},
		TextCols: []int{0, 1},
		Note:     sampledNote(s.Trace),
	}
	for _, all := range s.Phases {
		var lines [][]string
		for _, p := range s.Processes {
			if st, ok := p.Phases.Get(all.Phase); ok {
				lines = append(lines, phaseLine(st, label(Process{PID: p.PID, Title: p.Title}), s.Trace))
			}
		}
		if len(lines) > 1 {
			lines = append([][]string{phaseLine(all, "all", s.Trace)}, lines...)
		}
		t.Lines = append(t.Lines, lines...)
	}
	return t
}

func phaseLine(st PhaseStats, process string, tr TraceInfo) []string {
	return []string{
		string(st.Phase), process, fmt.Sprint(st.Count),
		ms(st.MeanMs), ms(st.P50Ms), ms(st.P95Ms), ms(st.P99Ms), ms(st.MaxMs),
		probedText(optText(st.MeanLaunches, "%.1f"), tr.LaunchesProbed),
		fmt.Sprintf("%.1f", st.MeanGraphLaunches), probedText(optMs(st.MeanSyncWaitMs), tr.SyncsProbed),
	}
}

// sampledNote says which of the phase table's per-step means are over the
// steps of the sampled seconds only; empty when neither is sampled.
func sampledNote(tr TraceInfo) string {
	var cols, keys []string
	if tr.LaunchesProbed && tr.LaunchesSampled {
		cols, keys = append(cols, "Launches/step"), append(keys, "launch_counted_steps")
	}
	if tr.SyncsProbed && tr.SyncsSampled {
		cols, keys = append(cols, "Sync ms/step"), append(keys, "sync_counted_steps")
	}
	if len(cols) == 0 {
		return ""
	}
	return fmt.Sprintf("%s: means over the steps of the sampled seconds only (%s in summary.json; "+
		"-: none of the line's steps fell in one)",
		strings.Join(cols, " and "), strings.Join(keys, " and "))
}

// probedText is "off" in place of a count (of launches, or a sync wait)
// when its probes were off, so that nobody reads the zero as a
// measurement.
func probedText(count string, probed bool) string {
	if !probed {
		return "off"
	}
	return count
}

// schedTable shows the scheduler's figures a person reads first: KV-cache
// usage, preemptions, the waiting queue and the draft acceptance rate, per
// phase over the scheduler steps its forward passes ran, then over every
// scheduler step of the trace (also those without a forward pass).
func schedTable(s Summary) Table {
	t := Table{
		Title:    "Scheduler steps (KV cache, preemptions, queue, speculative decoding)",
		Header:   []string{"Phase", "Sched steps", "KV mean", "KV peak", "Preempted", "Waiting mean", "Accepted"},
		TextCols: []int{0},
	}
	for _, st := range s.Phases {
		if st.SchedJoinedSteps == 0 {
			continue
		}
		t.Lines = append(t.Lines, []string{
			string(st.Phase), fmt.Sprint(st.SchedJoinedSteps),
			percent(st.KVCacheUsageMean), percent(st.peakKV), optText(st.PreemptedReqs, "%d"),
			optText(st.WaitingReqsMean, "%.1f"), percent(st.SpecAcceptanceRate),
		})
	}
	tot := s.Scheduler
	t.Lines = append(t.Lines, []string{
		"all", fmt.Sprint(tot.SchedSteps),
		percent(tot.MeanKVCacheUsage), percent(tot.PeakKVCacheUsage), fmt.Sprint(tot.Preemptions),
		optText(tot.meanWaiting, "%.1f"), percent(tot.AcceptanceRate),
	})
	return t
}

// percent shows a fraction as a percentage, "-" where it is unknown.
func percent(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", *v*100)
}

// optText formats a value that may be unknown, "-" where it is.
func optText[T int64 | float64](v *T, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}

// rankTable has one line per tensor-parallel group, named in a first column
// when there are several.
func rankTable(groups []*RankSpread) Table {
	t := Table{
		Title:    "Cross-rank spread per step (slowest - fastest rank, ms)",
		Header:   []string{"Aligned steps", "Mean", "P50", "P95", "P99", "Max", "Slowest rank"},
		TextCols: []int{6},
	}
	several := len(groups) > 1
	if several {
		t.Header = append([]string{"Group"}, t.Header...)
		t.TextCols = []int{0, 7}
	}
	for _, rs := range groups {
		line := []string{
			fmt.Sprint(rs.AlignedSteps),
			ms(rs.MeanMs), ms(rs.P50Ms), ms(rs.P95Ms), ms(rs.P99Ms), ms(rs.MaxMs),
			slowestText(rs),
		}
		if several {
			line = append([]string{rs.Group}, line...)
		}
		t.Lines = append(t.Lines, line)
	}
	return t
}

// slowestText lists how often each rank was slowest, most often first:
// "TP1 70%, TP0 30%".
func slowestText(rs *RankSpread) string {
	if rs.AlignedSteps == 0 {
		return "-"
	}
	order := slices.Clone(rs.Slowest)
	// Stable, so equal counts stay in rank order, as Slowest is.
	slices.SortStableFunc(order, func(a, b RankSlowest) int { return cmp.Compare(b.Count, a.Count) })
	parts := make([]string, len(order))
	for i, r := range order {
		parts[i] = fmt.Sprintf("TP%d %.0f%%", r.Rank, r.Share*100)
	}
	return strings.Join(parts, ", ")
}

func activityTable(s Summary) Table {
	t := Table{
		Title:    "No forward-pass steps seen (marker absent?): CUDA activity per process",
		Header:   []string{"Process", "Launches", "Launches/s", "Graph launches", "Syncs", "Sync wait ms", "Sync share"},
		TextCols: []int{0},
		Note:     ActivitySampledNote(s.Trace),
	}
	syncs := s.Trace.SyncsProbed
	for _, a := range s.Activity {
		t.Lines = append(t.Lines, []string{
			label(Process{PID: a.PID, Title: a.Title}),
			probedText(fmt.Sprint(a.Launches), s.Trace.LaunchesProbed),
			probedText(fmt.Sprintf("%.1f", a.LaunchesPerSec), s.Trace.LaunchesProbed),
			fmt.Sprint(a.GraphLaunches), probedText(fmt.Sprint(a.Syncs), syncs),
			probedText(ms(a.SyncWaitMs), syncs), probedText(fmt.Sprintf("%.1f%%", a.SyncWaitShare*100), syncs),
		})
	}
	return t
}

// ActivitySampledNote says that a process's launch and synchronization
// totals are of the sampled seconds alone, and their rate and share of
// time of those seconds, when they are; empty otherwise. Sampled together
// (the default), both share their windows and one note says it of both.
func ActivitySampledNote(tr TraceInfo) string {
	launches, syncs := tr.LaunchesProbed && tr.LaunchesSampled, tr.SyncsProbed && tr.SyncsSampled
	in := func(liveSec float64) string {
		return fmt.Sprintf("in the sampled seconds only, %.1f s of the %.1f s trace", liveSec, tr.DurationSec)
	}
	launchNote := "Launches: " + in(tr.LaunchLiveSec) + "; launches/s is their rate over those seconds"
	syncNote := "Syncs and sync wait: " + in(tr.SyncLiveSec) + "; sync share is of those seconds"
	switch {
	case launches && syncs && in(tr.LaunchLiveSec) == in(tr.SyncLiveSec):
		return "Launches, syncs and sync wait: " + in(tr.SyncLiveSec) + "; launches/s and sync share are of those seconds"
	case launches && syncs:
		return launchNote + ". " + syncNote
	case launches:
		return launchNote
	case syncs:
		return syncNote
	}
	return ""
}

// renderTable prints t's title and the table under it with its text columns
// left-aligned and the others, numbers, right-aligned, headers included, so
// that digits line up. The title is printed rather than made a table
// caption, which would pad it with trailing spaces to the table's width.
func renderTable(w io.Writer, t Table) error {
	fmt.Fprintln(w, t.Title)
	align := make([]tw.Align, len(t.Header))
	for i := range align {
		align[i] = tw.AlignRight
	}
	for _, i := range t.TextCols {
		align[i] = tw.AlignLeft
	}
	tbl := tablewriter.NewTable(w,
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignmentConfig(tw.CellAlignment{PerColumn: align}),
		tablewriter.WithRowAlignmentConfig(tw.CellAlignment{PerColumn: align}),
	)
	tbl.Header(t.Header)
	for _, l := range t.Lines {
		if err := tbl.Append(l); err != nil {
			return err
		}
	}
	if err := tbl.Render(); err != nil {
		return err
	}
	if t.Note != "" {
		fmt.Fprintln(w, t.Note)
	}
	return nil
}

func ms(x float64) string { return fmt.Sprintf("%.2f", x) }

// optMs is ms of a value that may be absent, "-" where it is.
func optMs(o OptMs) string {
	if !o.Valid {
		return "-"
	}
	return ms(o.Ms)
}
