package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/profilemate/profilemate-bpf/analysis"
	"github.com/profilemate/profilemate-bpf/report"
	"github.com/profilemate/profilemate-bpf/tracer"
)

const markerHint = `No profilemate marker in these processes, so forward passes cannot be
delimited; per-process CUDA activity is traced instead. To time every forward
pass, install the marker into the server's Python environment and restart the
server once (it costs nothing while no tracer is attached):
    pip install <profilemate-bpf>/marker
or run the server with PYTHONPATH=<profilemate-bpf>/marker. See the README.`

const markerNotLoadedHint = `The marker is installed where these processes import from, but none has
loaded it yet: processes that load it from now on (vLLM's workers as they
start) are timed from their first forward pass. A server that was started
before the marker was installed, or with PROFILEMATE_MARKER=0 or a VLLM_PLUGINS
list without it, does not load it until it is restarted.`

// monotonicNs reads the clock bpf_ktime_get_ns uses.
func monotonicNs() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// markerStatus says whether forward passes can be timed: the marker is
// loaded by a traced process, installed where they import from but not
// loaded yet, or absent; with what the user can do about the last two.
func markerStatus(libs []*tracer.Library) (status, hint string) {
	installed := false
	for _, l := range libs {
		if l.Kind != tracer.LibMarker {
			continue
		}
		if l.Loaded {
			return "found", ""
		}
		installed = true
	}
	if installed {
		return "installed, not loaded yet", markerNotLoadedHint
	}
	return "NOT found", markerHint
}

// hasCUDA reports whether a CUDA runtime or driver is among libs.
func hasCUDA(libs []*tracer.Library) bool {
	for _, l := range libs {
		if l.Kind == tracer.LibRuntime || l.Kind == tracer.LibDriver {
			return true
		}
	}
	return false
}

// collector keeps the records as they arrive from the ring buffer: it is
// the trace's tracer.Sink.
type collector struct {
	mu      sync.Mutex
	steps   []analysis.Step
	scheds  []analysis.Sched
	verbose io.Writer // nil unless -v
}

// Step keeps s and, with -v, prints its line. Only the ring-buffer reader
// calls it, so lines come in order without holding the lock while writing.
func (c *collector) Step(s analysis.Step) {
	c.mu.Lock()
	c.steps = append(c.steps, s)
	c.mu.Unlock()
	if c.verbose != nil {
		if line, ok := analysis.LiveLine(s); ok {
			fmt.Fprintln(c.verbose, line)
		}
	}
}

// Sched keeps s, to be joined with its forward passes at the end: its own
// record comes after theirs.
func (c *collector) Sched(s analysis.Sched) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scheds = append(c.scheds, s)
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.steps)
}

// all returns the steps and sched records kept.
func (c *collector) all() ([]analysis.Step, []analysis.Sched) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.steps, c.scheds
}

// startError turns a tracer start failure into the message and exit code a
// user can act on.
func startError(pid int, err error) error {
	switch {
	case errors.Is(err, tracer.ErrNoProcess):
		return fail(exitNoProcess, fmt.Errorf("no process with pid %d", pid))
	case errors.Is(err, os.ErrPermission):
		return fail(exitPrivilege, fmt.Errorf("not permitted to load eBPF programs (run with sudo): %w", err))
	case errors.Is(err, ebpf.ErrNotSupported):
		return fail(exitKernel, fmt.Errorf("this kernel lacks an eBPF feature the tracer needs: %w", err))
	}
	return err
}

func trace(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	dir := cfg.out
	if dir == "" {
		dir = defaultOutDir(time.Now())
	}
	if err := prepareOutDir(dir); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "profilemate-bpf: tracing pid %d and its descendants\n", cfg.pid)
	t0 := time.Now() // the wall-clock start that the plots and report.html name
	// The trace starts when probes start going in: a step that begins while
	// the rest attach is inside it.
	startNs := monotonicNs()
	tr, err := tracer.Start(tracer.Options{PID: cfg.pid, Sample: cfg.sampling(), Sampled: cfg.sampled(), LeaveOut: cfg.leave(), Logf: func(format string, a ...any) {
		fmt.Fprintf(stderr, "  "+format+"\n", a...)
	}})
	if err != nil {
		return startError(cfg.pid, err)
	}
	defer tr.Close()
	attachTime := time.Since(t0)

	libs := tr.Libraries()
	probes, procs := tr.Attached()
	status, hint := markerStatus(libs)
	// gpu/vllm_validate.py and scripts/probe-cost.py read this line and
	// the next (launchLine) to know that every probe is live and how
	// launches (and with them GPU waits) are sampled. Each process has
	// its own probes, so they are counted in each.
	fmt.Fprintf(stderr, "  %d probes attached in %d ms (%s); marker %s\n", probes, attachTime.Milliseconds(), inProcesses(procs), status)
	fmt.Fprintln(stderr, launchLine(cfg))
	if cfg.leaveOut != 0 {
		fmt.Fprintf(stderr, "  left out to measure their cost: %v\n", cfg.leaveOut)
	}
	if note := schedProbeNote(libs); note != "" {
		fmt.Fprintln(stderr, note)
	}
	// A server started with the tracer, a front end without torch, workers
	// that restart: its CUDA processes may come later, and the fork hook
	// follows the tree until they do.
	waited := !hasCUDA(libs)
	if waited {
		fmt.Fprintf(stderr, "  waiting for CUDA processes: no CUDA library (libcudart*.so*, libcuda.so*) is mapped by pid %d or its %d descendants yet; following its process tree for %v\n",
			cfg.pid, len(tr.Processes())-1, cfg.duration)
	} else if hint != "" && !cfg.leaveOut.Has(tracer.ClassMarker) {
		fmt.Fprintln(stderr, hint)
	}

	col := &collector{}
	if cfg.verbose {
		col.verbose = stderr
	}
	runCtx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	stopProgress := showProgress(runCtx, cancel, stderr, cfg.duration, col, tr)
	runErr := tr.Run(runCtx, col)
	stopProgress()
	endNs := monotonicNs()
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "profilemate-bpf: interrupted; writing what was traced")
	}
	if runErr != nil {
		fmt.Fprintln(stderr, "profilemate-bpf: warning:", runErr)
	}
	if waited {
		libs = tr.Libraries()
		if !hasCUDA(libs) {
			return fail(exitNoCUDA, fmt.Errorf("no CUDA library (libcudart*.so*, libcuda.so*) was mapped by pid %d or its %d descendants during the trace (%v): is it a vLLM server on a GPU?",
				cfg.pid, len(tr.Processes())-1, time.Duration(endNs-startNs).Round(time.Millisecond)))
		}
		var hint string
		if status, hint = markerStatus(libs); hint != "" && !cfg.leaveOut.Has(tracer.ClassMarker) {
			fmt.Fprintln(stderr, hint)
		}
	}
	title := ""
	for _, p := range tr.Processes() {
		if p.PID == cfg.pid {
			title = p.Title
		}
	}
	facts := report.Facts{Server: serverName(title, cfg.pid), Start: t0, Version: version, Marker: status}
	return writeResults(dir, stdout, stderr, tr, col, analysis.Report{StartNs: startNs, EndNs: endNs,
		NoLaunchProbes: !cfg.launches.on(), LaunchesSampled: cfg.launches == modeSample,
		NoSyncProbes: !cfg.syncs.on(), SyncsSampled: cfg.syncs == modeSample,
		LeftOut: cfg.leaveOut.String()}, facts, cfg.outputs)
}

// serverName names the traced server in titles: the traced process's title
// (its command line, the program without its directory), cut short, and its
// pid.
func serverName(title string, pid int) string {
	// "/venv/bin/python3 -m vllm..." reads as "python3 -m vllm...".
	if cmd, args, _ := strings.Cut(title, " "); strings.Contains(cmd, "/") {
		title = strings.TrimSpace(filepath.Base(cmd) + " " + args)
	}
	const maxTitle = 70
	if r := []rune(title); len(r) > maxTitle {
		title = string(r[:maxTitle-1]) + "…"
	}
	if title == "" {
		return fmt.Sprintf("pid %d", pid)
	}
	return fmt.Sprintf("%s (pid %d)", title, pid)
}

// launchLine says how kernel launches are counted and GPU waits timed in
// this trace, the line after the attach summary in every mode. Where
// launches are sampled it starts "kernel launches counted ON in every
// EVERY ", which gpu/tracerrun.py reads the sampling from.
func launchLine(cfg config) string {
	window := fmt.Sprintf("%v in every %v", cfg.sample.On, cfg.sample.Every)
	if cfg.launches == cfg.syncs {
		switch cfg.launches {
		case modeSample:
			return fmt.Sprintf("  kernel launches counted %s and GPU waits timed in the same seconds (--launches=all, --syncs=all: every step)", window)
		case modeAll:
			return "  kernel launches counted and GPU waits timed in every step (--launches=all, --syncs=all)"
		default:
			return "  kernel launches not counted and GPU waits not timed (--launches=off, --syncs=off)"
		}
	}
	return "  " + probingClause("kernel launches", "counted", "--launches", cfg.launches, window) +
		"; " + probingClause("GPU waits", "timed", "--syncs", cfg.syncs, window)
}

// probingClause says how what is probed under flag's mode (sample, all or
// off): verb in window, in every step, or not at all.
func probingClause(what, verb, flag string, mode probeMode, window string) string {
	switch mode {
	case modeSample:
		return fmt.Sprintf("%s %s %s (%s=all: every step)", what, verb, window, flag)
	case modeAll:
		return fmt.Sprintf("%s %s in every step (%s=all)", what, verb, flag)
	}
	return fmt.Sprintf("%s not %s (%s=off)", what, verb, flag)
}

// inProcesses says into how many traced processes the probes went.
func inProcesses(n int) string {
	if n == 1 {
		return "in 1 traced process"
	}
	return fmt.Sprintf("in %d traced processes", n)
}
