package report_test

import (
	"bytes"
	"testing"

	"github.com/profilemate/profilemate-bpf/analysis"
	"github.com/profilemate/profilemate-bpf/report"
)

// A 60-second trace of two workers at the simulated server's ~480 steps/s
// each: 29,000 steps per rank.
var benchSteps = 29000

func BenchmarkWrite(b *testing.B) {
	res := analysis.Analyze(asyncTrace(benchSteps))
	b.Run("timeline", func(b *testing.B) {
		for b.Loop() {
			var buf bytes.Buffer
			if err := report.WriteTimeline(&buf, res, facts); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(buf.Len())/1e6, "MB")
		}
	})
	for _, fig := range report.Figures(res, facts) {
		b.Run(fig.Name, func(b *testing.B) {
			for b.Loop() {
				if _, err := fig.Render(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("all", func(b *testing.B) {
		for b.Loop() {
			if _, err := report.Write(b.TempDir(), res, facts, report.All); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkWriteSmall(b *testing.B) {
	res := analysis.Analyze(asyncTrace(2000))
	for b.Loop() {
		if _, err := report.Write(b.TempDir(), res, facts, report.All); err != nil {
			b.Fatal(err)
		}
	}
}
