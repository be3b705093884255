package main

import (
	"fmt"
	"io"

	"github.com/profilemate/profilemate-bpf/analysis"
	"github.com/profilemate/profilemate-bpf/tracer"
)

// writeResults writes the CSV and summary, prints the table and says where
// the files are. It runs after every trace, also an interrupted one. The
// report r holds the trace's bounds and settings; the rest comes from tr and col.
func writeResults(dir string, stdout, stderr io.Writer, tr *tracer.Tracer, col *collector, r analysis.Report) error {
	dropped, invalid, err := tr.Lost()
	if err != nil {
		fmt.Fprintln(stderr, "profilemate-bpf: warning:", err)
	}
	if dropped+invalid > 0 {
		fmt.Fprintf(stderr, "profilemate-bpf: warning: %d step records lost (ring buffer full: %d, undecodable: %d)\n",
			dropped+invalid, dropped, invalid)
	}
	for _, p := range tr.Processes() {
		r.Processes = append(r.Processes, p.Label())
	}
	r.Steps, r.Activity, r.DroppedRecords = col.all(), tr.Activity(), dropped+invalid
	res := analysis.Analyze(r)
	files, err := analysis.Write(dir, res)
	if err != nil {
		return fail(exitOutput, err)
	}
	chownToInvoker(files.CSV)
	chownToInvoker(files.Summary)
	if err := analysis.RenderTable(stdout, res.Summary); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%d forward passes written to\n  %s\n  %s\n", len(res.Rows), files.CSV, files.Summary)
	return nil
}
