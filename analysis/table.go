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

// RenderTable writes the console view of s: per phase, one line for all
// processes together and one per process (the all-processes line is left out
// when a single process ran the phase, as it would repeat that process's
// line), then the cross-rank spread when there are ranks. Without any step
// (the marker is absent) it shows per-process CUDA activity instead.
func RenderTable(w io.Writer, s Summary) error {
	if len(s.Phases) == 0 {
		return renderActivity(w, s)
	}
	if err := renderPhases(w, s); err != nil {
		return err
	}
	if len(s.Ranks) > 0 {
		fmt.Fprintln(w)
		return renderRanks(w, s.Ranks)
	}
	return nil
}

func renderPhases(w io.Writer, s Summary) error {
	t := newTable(w, "Forward passes (ms)",
		[]string{"Phase", "Process", "Steps", "Mean", "P50", "P95", "P99", "Max", "Launches/step", "Graphs/step", "Sync ms/step"},
		0, 1)
	for _, all := range s.Phases {
		var lines [][]string
		for _, p := range s.Processes {
			if st, ok := p.Phases.Get(all.Phase); ok {
				lines = append(lines, phaseLine(st, label(Process{PID: p.PID, Title: p.Title}), s.Trace.LaunchesProbed))
			}
		}
		if len(lines) > 1 {
			lines = append([][]string{phaseLine(all, "all", s.Trace.LaunchesProbed)}, lines...)
		}
		for _, l := range lines {
			if err := t.Append(l); err != nil {
				return err
			}
		}
	}
	return t.Render()
}

func phaseLine(st PhaseStats, process string, launchesProbed bool) []string {
	return []string{
		string(st.Phase), process, fmt.Sprint(st.Count),
		ms(st.MeanMs), ms(st.P50Ms), ms(st.P95Ms), ms(st.P99Ms), ms(st.MaxMs),
		launchesText(fmt.Sprintf("%.1f", st.MeanLaunches), launchesProbed),
		fmt.Sprintf("%.1f", st.MeanGraphLaunches), ms(st.MeanSyncWaitMs),
	}
}

// launchesText is "off" in place of a launch count when launches were not
// probed, so that nobody reads the zero as a measurement.
func launchesText(count string, probed bool) string {
	if !probed {
		return "off"
	}
	return count
}

// renderRanks shows one line per tensor-parallel group, named in a first
// column when there are several.
func renderRanks(w io.Writer, groups []*RankSpread) error {
	head := []string{"Aligned steps", "Mean", "P50", "P95", "P99", "Max", "Slowest rank"}
	text := []int{6} // left-aligned columns
	several := len(groups) > 1
	if several {
		head = append([]string{"Group"}, head...)
		text = []int{0, 7}
	}
	t := newTable(w, "Cross-rank spread per step (slowest - fastest rank, ms)", head, text...)
	for _, rs := range groups {
		line := []string{
			fmt.Sprint(rs.AlignedSteps),
			ms(rs.MeanMs), ms(rs.P50Ms), ms(rs.P95Ms), ms(rs.P99Ms), ms(rs.MaxMs),
			slowestText(rs),
		}
		if several {
			line = append([]string{rs.Group}, line...)
		}
		if err := t.Append(line); err != nil {
			return err
		}
	}
	return t.Render()
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

func renderActivity(w io.Writer, s Summary) error {
	t := newTable(w, "No forward-pass steps seen (marker absent?): CUDA activity per process",
		[]string{"Process", "Launches", "Launches/s", "Graph launches", "Syncs", "Sync wait ms", "Sync share"},
		0)
	for _, a := range s.Activity {
		err := t.Append([]string{
			label(Process{PID: a.PID, Title: a.Title}),
			launchesText(fmt.Sprint(a.Launches), s.Trace.LaunchesProbed),
			launchesText(fmt.Sprintf("%.1f", a.LaunchesPerSec), s.Trace.LaunchesProbed),
			fmt.Sprint(a.GraphLaunches), fmt.Sprint(a.Syncs),
			ms(a.SyncWaitMs), fmt.Sprintf("%.1f%%", a.SyncWaitShare*100),
		})
		if err != nil {
			return err
		}
	}
	return t.Render()
}

// newTable prints title and makes a table under it with the columns listed in
// textCols left-aligned and the others, numbers, right-aligned, headers
// included, so that digits line up. The title is printed rather than made a table caption,
// which would pad it with trailing spaces to the table's width.
func newTable(w io.Writer, title string, header []string, textCols ...int) *tablewriter.Table {
	fmt.Fprintln(w, title)
	align := make([]tw.Align, len(header))
	for i := range align {
		align[i] = tw.AlignRight
	}
	for _, i := range textCols {
		align[i] = tw.AlignLeft
	}
	t := tablewriter.NewTable(w,
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignmentConfig(tw.CellAlignment{PerColumn: align}),
		tablewriter.WithRowAlignmentConfig(tw.CellAlignment{PerColumn: align}),
	)
	t.Header(header)
	return t
}

func ms(x float64) string { return fmt.Sprintf("%.2f", x) }
