package main

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkTracerOverhead prints the tracer's overhead on the simulated
// server as the ratio of step rates traced / untraced, in graph and eager
// mode, with launches and GPU waits sampled (the default, here a tenth of
// each window as in a long trace), launches sampled and every GPU wait
// timed (the default before GPU waits were sampled), both in every step,
// and launches not counted. Untraced and traced windows alternate on one
// running server, so both see the same machine and the same workload.
//
// The simulated GPU paces the steps, so the rate hides the probes' cost;
// the server's CPU time per step shows it: counting every launch in eager
// mode was the cost found on a real vLLM (0.27 ms a step). It prints the
// traced windows' extra CPU µs per step over the untraced ones.
func BenchmarkTracerOverhead(b *testing.B) {
	requireRoot(b)
	bin := buildAll(b)
	const window = 3 * time.Second
	for _, v := range []struct {
		mode, launches, syncs string
		flags                 []string
	}{
		{"graph", "sampled", "sampled", []string{"--launch-sample", "300ms/3s"}},
		{"graph", "sampled", "all", []string{"--launch-sample", "300ms/3s", "--syncs=all"}},
		{"graph", "all", "all", []string{"--launches=all", "--syncs=all"}},
		{"eager", "sampled", "sampled", []string{"--launch-sample", "300ms/3s"}},
		{"eager", "all", "all", []string{"--launches=all", "--syncs=all"}},
		{"eager", "off", "sampled", []string{"--launches=off", "--launch-sample", "300ms/3s"}},
	} {
		mode := v.mode
		b.Run(mode+"-launches-"+v.launches+"-syncs-"+v.syncs, func(b *testing.B) {
			args := []string{"--workers", "1", "--duration", "120"}
			if mode == "eager" {
				args = append(args, "--eager")
			}
			srv := startServer(b, args...)
			defer srv.cmd.Process.Kill()
			srv.waitReady(b)
			stepsIn := func(from, to int64) int {
				n := 0
				for _, s := range readTruth(b, srv.truth) {
					if s.begin >= from && s.begin < to {
						n++
					}
				}
				return n
			}
			rate := func(from, to int64) float64 { return float64(stepsIn(from, to)) / (float64(to-from) / 1e9) }
			var untraced, traced, cpuUntraced, cpuTraced []float64
			// Untraced and traced windows in ABBA order (U T T U ...): a
			// drift of the server's rate over the run then weighs on both
			// alike instead of on the later (traced) windows.
			isUntraced := func(i int) bool { return i%4 == 0 || i%4 == 3 }
			for i := 0; i < 4*max(b.N, 1); i++ {
				start, cpu0 := monotonic(), treeCPUNs(b, srv.cmd.Process.Pid)
				if isUntraced(i) {
					time.Sleep(window)
				} else {
					cmd := exec.Command(bin, append([]string{"--pid", strconv.Itoa(srv.cmd.Process.Pid), "--duration", window.String(),
						"--out", filepath.Join(b.TempDir(), "out")}, v.flags...)...)
					if out, err := cmd.CombinedOutput(); err != nil {
						b.Fatalf("%v\n%s", err, out)
					}
				}
				end, cpu1 := monotonic(), treeCPUNs(b, srv.cmd.Process.Pid)
				time.Sleep(200 * time.Millisecond) // let the truth file catch up
				r := rate(start+int64(200*time.Millisecond), end-int64(200*time.Millisecond))
				// CPU µs per step over the whole window.
				perStep := float64(cpu1-cpu0) / 1e3 / float64(stepsIn(start, end))
				if isUntraced(i) {
					untraced, cpuUntraced = append(untraced, r), append(cpuUntraced, perStep)
				} else {
					traced, cpuTraced = append(traced, r), append(cpuTraced, perStep)
				}
			}
			mean := func(x []float64) float64 {
				s := 0.0
				for _, v := range x {
					s += v
				}
				return s / float64(len(x))
			}
			extra := mean(cpuTraced) - mean(cpuUntraced)
			b.ReportMetric(mean(traced)/mean(untraced), "traced/untraced")
			b.ReportMetric(extra, "extra-cpu-µs/step")
			b.Logf("%s mode, launches %s, syncs %s: %.0f steps/s untraced, %.0f traced: ratio %.3f (overhead %.1f%%); "+
				"server CPU %.0f µs/step untraced, %+.1f traced",
				mode, v.launches, v.syncs, mean(untraced), mean(traced), mean(traced)/mean(untraced), 100*(1-mean(traced)/mean(untraced)),
				mean(cpuUntraced), extra)
		})
	}
}
