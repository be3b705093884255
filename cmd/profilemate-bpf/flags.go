package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/profilemate/profilemate-bpf/report"
	"github.com/profilemate/profilemate-bpf/tracer"
)

// config is what the command line asked for.
type config struct {
	pid      int
	duration time.Duration
	out      string
	verbose  bool
	version  bool
	launches probeMode
	syncs    probeMode
	sample   tracer.Sampling // under --launches=sample and --syncs=sample
	leaveOut tracer.Classes
	outputs  report.Outputs
}

// probeMode is --launches or --syncs: when a class of probes is live.
type probeMode string

const (
	modeSample probeMode = "sample" // a second out of every ten, launches and waits alike (the default)
	modeAll    probeMode = "all"    // every step
	modeOff    probeMode = "off"    // never
)

func (m *probeMode) String() string {
	if m == nil {
		return ""
	}
	return string(*m)
}

// Set takes sample, all or off.
func (m *probeMode) Set(s string) error {
	switch v := probeMode(s); v {
	case modeSample, modeAll, modeOff:
		*m = v
		return nil
	}
	return fmt.Errorf("want sample, all or off, got %q", s)
}

// on reports whether the probes are live at all.
func (m probeMode) on() bool { return m != modeOff }

// launchesFlag is --launches: a probeMode that also takes true and false,
// meaning all and off, and alone means all: the flag was a boolean once.
type launchesFlag struct{ *probeMode }

func (f launchesFlag) Set(s string) error {
	switch s {
	case "true":
		s = string(modeAll)
	case "false":
		s = string(modeOff)
	}
	return f.probeMode.Set(s)
}

// IsBoolFlag lets a bare --launches mean --launches=all.
func (f launchesFlag) IsBoolFlag() bool { return true }

// defaultSampling is when launches are probed under --launches=sample and
// synchronizations under --syncs=sample: each probed launch costs the
// launching thread about a microsecond, each synchronization two probe
// hits of several, which a server pays only a tenth of the time this way.
var defaultSampling = tracer.Sampling{On: time.Second, Every: 10 * time.Second}

// parseSampling reads --launch-sample ON/EVERY, e.g. 1s/10s.
func parseSampling(s string) (tracer.Sampling, error) {
	on, every, ok := strings.Cut(s, "/")
	if !ok {
		return tracer.Sampling{}, fmt.Errorf("want ON/EVERY such as 1s/10s, got %q", s)
	}
	var l tracer.Sampling
	var err error
	if l.On, err = time.ParseDuration(on); err != nil {
		return l, err
	}
	if l.Every, err = time.ParseDuration(every); err != nil {
		return l, err
	}
	if l.On <= 0 || l.Every <= l.On {
		return l, fmt.Errorf("want 0 < ON < EVERY, got %v/%v", l.On, l.Every)
	}
	return l, nil
}

// sampled are the probe classes that follow the sampling windows.
func (c config) sampled() tracer.Classes {
	var classes tracer.Classes
	if c.launches == modeSample {
		classes |= tracer.ClassLaunch
	}
	if c.syncs == modeSample {
		classes |= tracer.ClassSync
	}
	return classes
}

// sampling is the tracer's sampling window: --launch-sample where a class
// is sampled, none where every class is probed all the time or not at all.
func (c config) sampling() tracer.Sampling {
	if c.sampled() != 0 {
		return c.sample
	}
	return tracer.Sampling{}
}

// leave are the probe classes the tracer does not attach: those
// --leave-out names, and launches and synchronizations where they are off.
func (c config) leave() tracer.Classes {
	leave := c.leaveOut
	if !c.launches.on() {
		leave |= tracer.ClassLaunch
	}
	if !c.syncs.on() {
		leave |= tracer.ClassSync
	}
	return leave
}

const usageText = `profilemate-bpf: time every forward pass of a running vLLM server, without
restarting it and without adding synchronization.

Usage:
  sudo profilemate-bpf --pid N [--duration 30s] [--out DIR] [--format all|csv] [--launches=sample|all|off]
                       [--syncs=sample|all|off] [--launch-sample ON/EVERY] [-v]
  sudo profilemate-bpf check [--pid N]
  profilemate-bpf --version

N is any process of the server, normally the API server: the tool follows
the whole process tree (API server, EngineCore, GPU workers), including
workers started during the trace.

Examples:
  sudo profilemate-bpf --pid $(pgrep -f 'vllm serve' | head -1) --duration 30s
  sudo profilemate-bpf --pid 4242 --out ./run1 -v
  sudo profilemate-bpf check --pid 4242

Output, in $VLLM_PROFILING_DIR/session_<YYYYmmdd_HHMMSS> (/tmp/vllm_profiling
when unset) or in --out DIR: forward_pass_timing.csv and summary.json;
timeline.json (open it in Perfetto, ui.perfetto.dev, or chrome://tracing);
plots (plot_*.png, plot_*.svg); report.html, one page with the summary, the
plots and the trace's facts. --format csv writes only the CSV and summary.json.
A summary table goes to standard output. Ctrl-C ends the trace early and
still writes everything.

Each kernel launch the tracer counts costs the launching thread about a
microsecond: tens per step with CUDA graphs (vLLM's default), hundreds in
eager mode (--enforce-eager). So launches are counted in one second out of
every ten (--launches=sample): those steps carry their launch counts, the
others leave the cell empty. --launches=all counts them in every step, at that
cost; --launches=off (or =false) never.

Timing a GPU wait (a CUDA synchronization or device-to-host copy) costs the
waiting thread two probe hits of several microseconds, about six hits a step
with CUDA graphs. So GPU waits are timed in the same sampled seconds
(--syncs=sample): the other steps leave sync_wait_ms empty. --syncs=all times
them in every step; --syncs=off never. --launch-sample ON/EVERY (default
1s/10s) sets those seconds for both.

Flags:
`

// errHelp means the user asked for help: print it and exit 0.
var errHelp = errors.New("help requested")

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("profilemate-bpf", flag.ContinueOnError)
	fs.IntVar(&c.pid, "pid", 0, "`PID` of any process of the vLLM server (required)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to trace, as a Go duration (`30s`, 2m)")
	fs.StringVar(&c.out, "out", "", "write the results into `DIR` (default $VLLM_PROFILING_DIR/session_<time>)")
	format := fs.String("format", "all", "what to write besides the CSV and summary.json: `all`, csv (nothing else), or a list of timeline, plots, report")
	c.launches = modeSample
	fs.Var(launchesFlag{&c.launches}, "launches", "count kernel launches per step: `sample` (1 s in every 10; the default), all (every step, about 1 µs per launch), off")
	c.syncs = modeSample
	fs.Var(&c.syncs, "syncs", "time GPU waits (CUDA synchronizations) per step: `sample` (in the same sampled seconds as launches, 1 s in every 10; the default), all (every step, two probe hits of several µs per wait), off")
	sample := fs.String("launch-sample", fmt.Sprintf("%v/%v", defaultSampling.On, defaultSampling.Every), "under --launches=sample and --syncs=sample, count launches and time GPU waits `ON/EVERY`")
	leaveOut := fs.String("leave-out", "", "measuring the tracer's own cost: leave out these probe `CLASSES` ("+strings.Join(tracer.ClassNames(), ",")+"); the results miss what they count")
	fs.BoolVar(&c.verbose, "verbose", false, "print a line per forward pass as it happens")
	fs.BoolVar(&c.verbose, "v", false, "shorthand for --verbose")
	fs.BoolVar(&c.version, "version", false, "print the version and commit and exit")
	// Parse quietly: a mistake gets one line pointing at --help, not the
	// whole usage text.
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, usageText)
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return c, errHelp
		}
		return c, fail(exitUsage, fmt.Errorf("%w (see --help)", err))
	}
	if c.version {
		return c, nil
	}
	if fs.NArg() > 0 {
		return c, fail(exitUsage, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0)))
	}
	if c.pid <= 0 {
		return c, fail(exitUsage, errors.New("--pid is required: the PID of any process of the vLLM server (see --help)"))
	}
	var err error
	if c.outputs, err = report.ParseFormat(*format); err != nil {
		return c, fail(exitUsage, fmt.Errorf("--format: %w (see --help)", err))
	}
	if c.sample, err = parseSampling(*sample); err != nil {
		return c, fail(exitUsage, fmt.Errorf("--launch-sample: %w", err))
	}
	if c.leaveOut, err = tracer.ParseClasses(*leaveOut); err != nil {
		return c, fail(exitUsage, fmt.Errorf("--leave-out: %w", err))
	}
	if c.leaveOut.Has(tracer.ClassLaunch) {
		c.launches = modeOff
	}
	if c.leaveOut.Has(tracer.ClassSync) {
		c.syncs = modeOff
	}
	if c.duration <= 0 {
		return c, fail(exitUsage, fmt.Errorf("--duration must be positive, got %v", c.duration))
	}
	return c, nil
}
