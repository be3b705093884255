package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/profilemate/profilemate-bpf/tracer"
)

// config is what the command line asked for.
type config struct {
	pid      int
	duration time.Duration
	out      string
	verbose  bool
	version  bool
	launches bool // probe kernel launches (--launches=false leaves them out)
	leaveOut tracer.Classes
}

const usageText = `profilemate-bpf: time every forward pass of a running vLLM server, without
restarting it and without adding synchronization.

Usage:
  sudo profilemate-bpf --pid N [--duration 30s] [--out DIR] [--launches=false] [-v]
  sudo profilemate-bpf check [--pid N]
  profilemate-bpf --version

N is any process of the server, normally the API server: the tool follows
the whole process tree (API server, EngineCore, GPU workers), including
workers started during the trace.

Examples:
  sudo profilemate-bpf --pid $(pgrep -f 'vllm serve' | head -1) --duration 30s
  sudo profilemate-bpf --pid 4242 --out ./run1 -v
  sudo profilemate-bpf check --pid 4242

Output: forward_pass_timing.csv and summary.json in
$VLLM_PROFILING_DIR/session_<YYYYmmdd_HHMMSS> (/tmp/vllm_profiling when
unset) or in --out DIR, and a summary table on standard output.
Ctrl-C ends the trace early and still writes everything.

Each kernel launch the tracer counts costs the launching thread about a
microsecond. With CUDA graphs (vLLM's default) that is a few launches a step;
an eager-mode server (--enforce-eager) makes hundreds, which can slow its steps
by several percent: --launches=false traces it without counting launches.

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
	fs.BoolVar(&c.launches, "launches", true, "count kernel launches per step; --launches=false for eager-mode servers (about 1 µs per launch)")
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
	if c.leaveOut, err = tracer.ParseClasses(*leaveOut); err != nil {
		return c, fail(exitUsage, fmt.Errorf("--leave-out: %w", err))
	}
	if c.leaveOut.Has(tracer.ClassLaunch) {
		c.launches = false
	}
	if c.duration <= 0 {
		return c, fail(exitUsage, fmt.Errorf("--duration must be positive, got %v", c.duration))
	}
	return c, nil
}
