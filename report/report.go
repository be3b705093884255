// Package report draws a trace for people: timeline.json (Chrome trace
// events, for Perfetto and chrome://tracing), plots of the steps (PNG and
// SVG) and report.html, one self-contained page with the summary, the plots
// and the trace's facts. Everything comes from the analysis.Result the CSV
// is written from; nothing here is recomputed from the raw steps, and there
// is no eBPF in it, so it is tested without root.
package report

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/profilemate/profilemate-bpf/analysis"
)

// Facts is what the trace knew beyond its steps, for titles and the page.
type Facts struct {
	Server    string    // names the traced server, e.g. "vllm serve m (pid 4242)"
	Start     time.Time // wall-clock start of the trace
	Version   string    // of profilemate-bpf
	Marker    string    // marker status: "found", "installed, not loaded yet", "NOT found"
	Libraries []Library
}

// Library is one probed library.
type Library struct {
	Kind   string // "CUDA runtime", "CUDA driver", "marker"
	Path   string
	Loaded bool // mapped by a traced process (else probed where installed)
	Probes int
}

// Outputs selects what Write writes besides the CSV and summary.json.
type Outputs struct {
	Timeline bool // timeline.json
	Plots    bool // the plots' PNG and SVG files
	Report   bool // report.html (its plots are drawn for it either way)
}

// All is every output: the default.
var All = Outputs{Timeline: true, Plots: true, Report: true}

// ParseFormat reads --format: "all", "csv" (only the CSV and summary.json,
// which are always written) or a comma-separated list of "timeline",
// "plots", "report" ("csv" may be named in it too).
func ParseFormat(s string) (Outputs, error) {
	var o Outputs
	for _, part := range strings.Split(s, ",") {
		switch strings.TrimSpace(part) {
		case "all":
			o = All
		case "csv":
		case "timeline":
			o.Timeline = true
		case "plots":
			o.Plots = true
		case "report":
			o.Report = true
		default:
			return Outputs{}, fmt.Errorf("unknown output %q: want all, csv, or a list of timeline, plots, report", part)
		}
	}
	return o, nil
}

// Output file names.
const (
	TimelineName = "timeline.json"
	ReportName   = "report.html"
)

// Write writes the selected outputs of res into dir, which exists, and
// returns the paths written, in the order a user would open them.
func Write(dir string, res analysis.Result, f Facts, o Outputs) ([]string, error) {
	var files []string
	// The timeline and each figure are drawn side by side: the trace's end
	// waits for the slowest of them, not for their sum.
	var timelineErr error
	timelineDone := make(chan struct{})
	timelinePath := filepath.Join(dir, TimelineName)
	go func() {
		defer close(timelineDone)
		if o.Timeline {
			timelineErr = analysis.WriteFile(timelinePath, func(w io.Writer) error { return WriteTimeline(w, res, f) })
		}
	}()
	var rendered []Rendered
	var renderErr error
	if o.Plots || o.Report {
		figs := Figures(res, f)
		rendered = make([]Rendered, len(figs))
		errs := make([]error, len(figs))
		var wg sync.WaitGroup
		for i, fig := range figs {
			wg.Go(func() {
				var err error
				if rendered[i], err = fig.Render(); err != nil {
					errs[i] = fmt.Errorf("plot %s: %w", fig.Name, err)
				}
			})
		}
		wg.Wait()
		renderErr = errors.Join(errs...)
	}
	<-timelineDone
	if timelineErr != nil {
		return files, timelineErr
	}
	if o.Timeline {
		files = append(files, timelinePath)
	}
	if renderErr != nil {
		return files, renderErr
	}
	if o.Report {
		path := filepath.Join(dir, ReportName)
		if err := analysis.WriteFile(path, func(w io.Writer) error { return WriteHTML(w, res, f, rendered) }); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	if o.Plots {
		for _, r := range rendered {
			for _, file := range []struct {
				ext  string
				data []byte
			}{{".png", r.PNG}, {".svg", r.SVG}} {
				path := filepath.Join(dir, r.Figure.Name+file.ext)
				if err := os.WriteFile(path, file.data, 0o644); err != nil {
					return files, err
				}
				files = append(files, path)
			}
		}
	}
	return files, nil
}
