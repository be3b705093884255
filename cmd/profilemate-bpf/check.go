package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/profilemate/profilemate-bpf/tracer"
)

// checkLine is one line of `profilemate-bpf check`.
type checkLine struct {
	ok   bool
	what string
	fix  string // what to do about a ✗
	// A soft ✗ lacks something useful (the marker) without making tracing
	// impossible.
	soft bool
}

func (l checkLine) String() string {
	if l.ok {
		return "✓ " + l.what
	}
	s := "✗ " + l.what
	if l.fix != "" {
		s += "\n    -> " + l.fix
	}
	return s
}

// minKernel is the oldest kernel with every feature the tracer uses
// (uprobe_multi links, 6.6). Its links are each one traced process's, which
// also needs the process filter's fix (6.10, backported to some stable
// kernels): "uprobe_multi filtered by process" checks that itself.
var minKernel = [2]int{6, 6}

func checkKernelRelease(release string) checkLine {
	var major, minor int
	_, err := fmt.Sscanf(release, "%d.%d", &major, &minor)
	ok := err == nil && (major > minKernel[0] || major == minKernel[0] && minor >= minKernel[1])
	return checkLine{ok: ok, what: "kernel " + release,
		fix: fmt.Sprintf("needs Linux %d.%d or newer", minKernel[0], minKernel[1])}
}

func checkBTF(path string) checkLine {
	_, err := os.Stat(path)
	return checkLine{ok: err == nil, what: "kernel BTF at " + path,
		fix: "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels are)"}
}

func checkCaps(caps uint64) checkLine {
	has := func(c uint) bool { return caps&(1<<c) != 0 }
	ok := has(capSysAdmin) || has(capBPF) && has(capPerfmon)
	return checkLine{ok: ok, what: "privileges (root, or CAP_BPF and CAP_PERFMON)",
		fix: "run with sudo, or in a container with --cap-add BPF --cap-add PERFMON (or --privileged)"}
}

func checkFeature(what string, err error, fix string) checkLine {
	l := checkLine{ok: err == nil, what: what, fix: fix}
	if err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
		l.what += " (" + err.Error() + ")"
	}
	return l
}

// checkUprobePMU: the tracer attaches uprobes through the perf "uprobe" PMU,
// which needs no tracefs.
func checkUprobePMU(path string) checkLine {
	_, err := os.Stat(path)
	return checkLine{ok: err == nil, what: "uprobe support (" + path + ")",
		fix: "use a kernel built with CONFIG_UPROBE_EVENTS=y"}
}

// checkServer inspects a server's process tree: per process, the CUDA
// libraries and the marker it maps.
func checkServer(proc tracer.Proc, pid int) []checkLine {
	if !proc.Exists(pid) {
		return []checkLine{{what: fmt.Sprintf("process %d", pid), fix: "no such process: give the PID of a vLLM server process (normally the API server)"}}
	}
	pids, err := proc.Descendants(pid)
	if err != nil {
		return []checkLine{{what: "list processes", fix: err.Error()}}
	}
	var lines, unopenable []checkLine
	cuda, marker := false, false
	opened := map[string]bool{}
	var installs []string // marker libraries where the processes import from
	lookedIn := map[string]bool{}
	for _, p := range pids {
		maps, err := proc.Maps(p)
		if err != nil {
			continue // exited meanwhile
		}
		unopenable = append(unopenable, checkOpenable(proc, p, maps, opened)...)
		for _, dir := range proc.PythonDirs(p, maps) {
			if !lookedIn[dir] {
				lookedIn[dir] = true
				installs = append(installs, proc.MarkerInstalls(p, dir)...)
			}
		}
		kinds := map[tracer.LibKind]string{}
		for _, m := range maps {
			if k := tracer.Classify(m.Path); k != tracer.LibNone {
				kinds[k] = m.Path
			}
		}
		var found []string
		for _, k := range []tracer.LibKind{tracer.LibRuntime, tracer.LibDriver, tracer.LibMarker} {
			if path, ok := kinds[k]; ok {
				found = append(found, k.String()+" "+path)
			}
		}
		cuda = cuda || kinds[tracer.LibRuntime] != "" || kinds[tracer.LibDriver] != ""
		marker = marker || kinds[tracer.LibMarker] != ""
		what := fmt.Sprintf("process %d %s: ", p, proc.Title(p))
		if len(found) > 0 {
			what += strings.Join(found, ", ")
		} else {
			what += "no CUDA library or marker (normal where the model does not run)"
		}
		lines = append(lines, checkLine{ok: true, what: what})
	}
	lines = append(lines, unopenable...)
	lines = append(lines,
		checkLine{ok: cuda, what: "CUDA libraries in the server's processes",
			fix: "no process maps libcudart or libcuda: is this a vLLM server on a GPU, and has it loaded its model?"},
		markerLine(marker, installs))
	return lines
}

// markerLine says whether the server's processes loaded the marker and, if
// not, whether it is installed where they import from: then only a restart
// is missing.
func markerLine(loaded bool, installs []string) checkLine {
	line := checkLine{ok: loaded, soft: true, what: "profilemate marker in the server's processes",
		fix: "install it (pip install <profilemate-bpf>/marker) and restart the server once; without it only per-process CUDA activity is traced"}
	if !loaded && len(installs) > 0 {
		line.fix = fmt.Sprintf("installed (%s) but not loaded: restart the server once (or check PROFILEMATE_MARKER and VLLM_PLUGINS); workers it starts from now on load it", installs[0])
	}
	return line
}

// checkOpenable opens each library of one process that the tracer would
// probe, the way it will: through /proc/PID/root. In a container without
// CAP_SYS_PTRACE the maps can be read but the server's files cannot, and
// tracing would find no CUDA library. seen skips paths already tried.
func checkOpenable(proc tracer.Proc, pid int, maps []tracer.Mapping, seen map[string]bool) []checkLine {
	var lines []checkLine
	for _, m := range maps {
		if tracer.Classify(m.Path) == tracer.LibNone || seen[m.Path] {
			continue
		}
		seen[m.Path] = true
		f, err := os.Open(proc.HostPath(pid, m.Path))
		if err == nil {
			f.Close()
			continue
		}
		lines = append(lines, checkLine{what: fmt.Sprintf("open %s of pid %d through /proc/%d/root: %v", m.Path, pid, pid, err),
			fix: "in a container, add --cap-add SYS_PTRACE (reading another process's files needs it)"})
	}
	return lines
}

func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("profilemate-bpf check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pid := fs.Int("pid", 0, "also check the vLLM server with this `PID`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return fail(exitUsage, err)
	}
	if fs.NArg() > 0 {
		return fail(exitUsage, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	lines := []checkLine{checkKernelRelease(unix.ByteSliceToString(uts.Release[:])), checkBTF(btfPath)}
	caps, err := effectiveCaps()
	lines = append(lines, checkCaps(caps))
	privileged := err == nil && lines[len(lines)-1].ok
	lines = append(lines, checkUprobePMU("/sys/bus/event_source/devices/uprobe/type"))
	if privileged {
		lines = append(lines,
			checkFeature("BPF ring buffer", features.HaveMapType(ebpf.RingBuf), "needs Linux 5.8 or newer"),
			checkFeature("eBPF programs load", tracer.CheckLoad(), "see the message; the kernel may lack a feature or forbid eBPF (kernel.unprivileged_bpf_disabled, lockdown)"),
			checkFeature("uprobe_multi filtered by process fires in all its threads", tracer.CheckPIDFilter(), "needs Linux 6.10, or a stable kernel with the fix 46ba0e49b642"))
	}
	if *pid != 0 {
		lines = append(lines, checkServer(tracer.Proc{Root: "/proc"}, *pid)...)
	}
	ok := true
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
		ok = ok && (l.ok || l.soft)
	}
	if !ok {
		return fail(exitNotPossible, errors.New("tracing cannot work here: see the ✗ lines"))
	}
	fmt.Fprintln(stdout, "tracing can work")
	return nil
}
