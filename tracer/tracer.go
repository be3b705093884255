// Package tracer loads profilemate's eBPF programs, finds the processes of a
// vLLM server and the CUDA and marker libraries they map, attaches probes
// to each library for each traced process (so that no other process on the
// host pays for them), keeps the set of traced processes current and reads
// the per-step and per-schedule records from the ring buffer.
package tracer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/profilemate/profilemate-bpf/analysis"
)

// rescanEvery is how often Run looks for processes the fork hook added, and
// at the libraries of processes not armed yet. A new process has no probes
// until it is picked up (each link is the process's own), and steps it runs
// before go unseen: vLLM's workers take seconds to their first step, the
// simulated server's a fraction of one. A look walks the procs map (one
// entry per traced process) and reads the maps of those not armed yet, in
// the tracer's own thread: the traced processes pay nothing for it.
const rescanEvery = 100 * time.Millisecond

// ErrNoProcess is returned by Start when the PID names no process.
var ErrNoProcess = errors.New("no such process")

// Options configure a trace.
type Options struct {
	PID  int  // any process of the server, normally the API server
	Proc Proc // where /proc is
	// Sample, when set, probes the classes in Sampled only On out of
	// every Every, starting with the trace: the steps of those windows
	// carry what the classes count, the others do not
	// (Step.LaunchesUncounted, Step.SyncsUncounted). The other classes
	// are probed for the whole trace, as every class is with the zero
	// value.
	Sample Sampling
	// Sampled are the classes that follow Sample, of ClassLaunch (a
	// probed launch costs the launching thread about a microsecond, and
	// eager steps launch hundreds) and ClassSync (each synchronization
	// is two probe hits of several microseconds, about six hits a
	// graph-mode step); others are probed all the time.
	Sampled Classes
	// LeaveOut names probe classes not to attach: ClassLaunch or ClassSync
	// for a trace without launch counts or without sync waits
	// (--launches=off, --syncs=off), any class to measure what it costs
	// the server; the steps then miss what those probes count (and all
	// steps, with ClassMarker).
	LeaveOut Classes
	// Logf receives what the tracer finds as it finds it; nil discards.
	Logf func(format string, args ...any)
}

// Sampling is how often the sampled probe classes are live; see
// Options.Sample.
type Sampling struct{ On, Every time.Duration }

// Sampled reports whether the probes are live only part of the time.
func (s Sampling) Sampled() bool { return s.On > 0 && s.Every > s.On }

// sampledClasses are the classes whose probes sampling can take off and
// put back (attacher.probesOn, probesOff), each with its epoch.
const sampledClasses = ClassLaunch | ClassSync

// epoch is one of the programs' epoch variables, launch_epoch or
// sync_epoch: odd while the probes of its class are live. The tracer bumps
// it after it attached them and before it detaches them, so that a step
// counted them whole when it began and ended in the same odd epoch (submit
// in bpf/profilemate.bpf.c); it also keeps how long the epoch was odd,
// the time the probes were counting.
type epoch struct {
	class Classes
	name  string
	v     *ebpf.Variable
	n     uint32
	since time.Time     // when it last turned odd; zero while even, or once stopped
	live  time.Duration // odd before since
}

// set tells the programs the epoch n, which it took at now.
func (e *epoch) set(n uint32, now time.Time) error {
	if err := e.v.Set(n); err != nil {
		return fmt.Errorf("set %s: %w", e.name, err)
	}
	switch {
	case n%2 == 1 && e.n%2 == 0:
		e.since = now
	case n%2 == 0:
		e.stop(now)
	}
	e.n = n
	return nil
}

// bump moves the epoch on by d (1: into or out of a window; 2: a new one
// within a window), logging a failure: the programs then keep the old one.
func (e *epoch) bump(d uint32, logf func(string, ...any)) {
	if err := e.set(e.n+d, time.Now()); err != nil {
		logf("%v", err)
	}
}

// stop ends the time counted as live at now: the trace is frozen.
func (e *epoch) stop(now time.Time) {
	if !e.since.IsZero() {
		e.live += now.Sub(e.since)
		e.since = time.Time{}
	}
}

// liveFor is how long the epoch was odd up to now.
func (e *epoch) liveFor(now time.Time) time.Duration {
	if e.since.IsZero() {
		return e.live
	}
	return e.live + now.Sub(e.since)
}

// counted reports whether a step that began in epoch begun and ends now
// had the probes for its whole length.
func (e *epoch) counted(begun uint32) bool { return begun%2 == 1 && begun == e.n }

// ProcInfo is what the tracer knows of one traced process.
type ProcInfo struct {
	PID    int
	Title  string
	Exited bool

	armedGen uint32 // the exec generation the tracer armed, plus one; 0: none
	// linkedGen is the exec generation read before its links were made
	// (in it or a later one): an exec since drops them, and its libraries
	// are probed again (rescanMaps, execed).
	linkedGen uint32
	// final is its state in the programs when it exited, its entry then
	// removed (exited).
	final *profilemateProcState
	// start is its start time when it was picked up (Proc.StartTime; 0
	// where unreadable): another start time under its PID is another
	// process (reused).
	start uint64
}

// Label is the process as the analysis names it: title and tensor-parallel rank.
func (p ProcInfo) Label() analysis.Process {
	return analysis.Process{PID: uint32(p.PID), Title: p.Title, Rank: analysis.RankOf(p.Title)}
}

// Tracer traces one process tree.
type Tracer struct {
	opts   Options
	objs   *profilemateObjects
	att    *attacher
	fork   link.Link
	exec   link.Link
	reader *ringbuf.Reader

	mu       sync.Mutex
	procs    map[int]*ProcInfo
	gone     []*ProcInfo             // exited processes whose PID a newer one took
	pyDirs   map[int]map[string]bool // per process, the Python dirs looked into
	lastMaps time.Time
	invalid  atomic.Uint64
	launches epoch   // launch_epoch
	syncs    epoch   // sync_epoch
	sampled  Classes // the classes that follow Options.Sample
}

// Start loads the programs, registers opts.PID and its descendants and
// attaches to the libraries they map, for each of them. Processes the tree
// starts later are traced from their first instruction (a fork hook adds
// them), and Run attaches their own probes at its next look.
func Start(opts Options) (*Tracer, error) {
	if opts.Proc.Root == "" {
		opts.Proc.Root = "/proc"
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.PID <= 0 || !opts.Proc.Exists(opts.PID) {
		return nil, fmt.Errorf("pid %d: %w", opts.PID, ErrNoProcess)
	}
	objs, err := loadObjects()
	if err != nil {
		return nil, err
	}
	// Each link is one traced process's: right only where the kernel's
	// process filter lets every thread of the process run the programs.
	// A check that could not be made (e.g. this program's file deleted
	// since it started) does not stop the trace: only a filter seen to
	// miss a thread does.
	switch err := checkPIDFilter(objs); {
	case errors.Is(err, ErrPIDFilterByThread):
		objs.Close()
		return nil, err
	case err != nil:
		opts.Logf("%v", err)
	}
	t := &Tracer{opts: opts, objs: objs, att: newAttacher(objs, opts.Proc, opts.LeaveOut), procs: map[int]*ProcInfo{}, pyDirs: map[int]map[string]bool{},
		launches: epoch{class: ClassLaunch, name: "launch_epoch", v: objs.LaunchEpoch},
		syncs:    epoch{class: ClassSync, name: "sync_epoch", v: objs.SyncEpoch}}
	if opts.Sample.Sampled() {
		t.sampled = opts.Sampled & sampledClasses &^ opts.LeaveOut
	}
	if !opts.LeaveOut.Has(ClassFork) {
		if t.fork, err = link.AttachTracing(link.TracingOptions{Program: objs.OnFork}); err != nil {
			t.Close()
			return nil, fmt.Errorf("attach the fork hook (tp_btf/sched_process_fork): %w", err)
		}
		// With it, the exec hook: a traced process that execs maps new
		// libraries, and is armed again once they are seen probed.
		if t.exec, err = link.AttachTracing(link.TracingOptions{Program: objs.OnExec}); err != nil {
			t.Close()
			return nil, fmt.Errorf("attach the exec hook (tp_btf/sched_process_exec): %w", err)
		}
	}
	if t.reader, err = ringbuf.NewReader(objs.Events); err != nil {
		t.Close()
		return nil, fmt.Errorf("open the ring buffer: %w", err)
	}
	pids, err := opts.Proc.Descendants(opts.PID)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("list processes: %w", err)
	}
	for _, pid := range pids {
		t.addProc(pid)
	}
	t.rescanMaps(time.Now(), t.live())
	// The first window opens once everything is attached: a step begun
	// before some library's probes were live is not counted.
	now := time.Now()
	for _, e := range t.epochs(sampledClasses &^ opts.LeaveOut) {
		if err := e.set(1, now); err != nil {
			t.Close()
			return nil, err
		}
	}
	return t, nil
}

// epochs returns the epochs of classes.
func (t *Tracer) epochs(classes Classes) []*epoch {
	var out []*epoch
	for _, e := range []*epoch{&t.launches, &t.syncs} {
		if classes.Has(e.class) {
			out = append(out, e)
		}
	}
	return out
}

// probesAdded follows the attachment of launch or synchronization probes
// (classes) for some processes. Outside a sampling window they go at once.
// Inside one, the steps a process armed already began before did not have
// them for their whole length (spoilt: the classes attached for such a
// process), so a new epoch leaves them uncounted; a process not armed yet
// has no counted step to spoil (a worker starting), and the steps of the
// others keep their epoch.
func (t *Tracer) probesAdded(classes, spoilt Classes) {
	for _, e := range t.epochs(classes) {
		switch {
		case e.n == 0:
			// Start sets the first epoch once everything is attached.
		case e.n%2 == 1:
			if spoilt.Has(e.class) {
				e.bump(2, t.opts.Logf)
			}
		default:
			if err := t.att.probesOff(e.class); err != nil {
				t.opts.Logf("remove %v probes: %v", e.class, err)
			}
		}
	}
}

// toggleSampled ends a sampling window (steps begun in it are counted, then
// the sampled probes go) or starts one (the probes come back, then steps
// begun from now on are counted), and returns the time to the next. The
// sampled classes share their windows, so their epochs move together.
func (t *Tracer) toggleSampled() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.opts.Sample
	epochs := t.epochs(t.sampled)
	if epochs[0].n%2 == 1 {
		for _, e := range epochs {
			e.bump(1, t.opts.Logf)
		}
		if err := t.att.probesOff(t.sampled); err != nil {
			t.opts.Logf("remove %v probes: %v", t.sampled, err)
		}
		return s.Every - s.On
	}
	t.att.probesOn(t.sampled)
	for _, e := range epochs {
		e.bump(1, t.opts.Logf)
	}
	return s.On
}

// SyncLiveNs returns how long the synchronization probes were live and
// counting, up to the end of the trace (or now, while it runs): the span
// the processes' synchronization totals (Activity) cover. Under sampling
// that is the sampled seconds only; with the probes on all the trace, the
// trace but its attach.
func (t *Tracer) SyncLiveNs() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return uint64(t.syncs.liveFor(time.Now()))
}

// LaunchLiveNs returns how long the kernel-launch probes were live and
// counting, up to the end of the trace (or now, while it runs): the span
// the processes' launch totals (Activity) cover, as SyncLiveNs is for
// their synchronizations. Under sampling that is the sampled seconds
// only; 0 when launches were not probed.
func (t *Tracer) LaunchLiveNs() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return uint64(t.launches.liveFor(time.Now()))
}

// addProc starts tracing pid (the fork hook may have done so already). A
// process known to have exited with that PID is kept apart: this is a new
// one that took its PID.
func (t *Tracer) addProc(pid int) {
	// The tracer may itself run below the PID it was given (a test, a
	// shell); tracing itself would only count its own noise.
	old := t.procs[pid]
	if old != nil && !old.Exited || pid == os.Getpid() {
		return
	}
	var zero profilemateProcState
	if err := t.objs.Procs.Update(uint32(pid), &zero, ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		t.opts.Logf("cannot trace pid %d: %v", pid, err)
		return
	}
	p := &ProcInfo{PID: pid, Title: t.opts.Proc.Title(pid)}
	if start, err := t.opts.Proc.StartTime(pid); err == nil {
		p.start = start
	}
	// The fork hook may have added it, and it may have exec'd since: its
	// links, none yet, are made in the generation it is in now.
	var st profilemateProcState
	if t.objs.Procs.Lookup(uint32(pid), &st) == nil {
		p.linkedGen = st.ExecGen
	}
	if old != nil {
		t.gone = append(t.gone, old)
	}
	t.procs[pid] = p
	t.opts.Logf("process %d %s", pid, p.Title)
}

// live returns the traced processes not known to have exited.
func (t *Tracer) live() []*ProcInfo {
	out := make([]*ProcInfo, 0, len(t.procs))
	for _, p := range t.procs {
		if !p.Exited {
			out = append(out, p)
		}
	}
	return out
}

// rescanMaps looks for newly mapped libraries in the given processes, and
// arms those whose CUDA libraries are now all probed. now, when not zero, is
// the time of a look at every live process.
func (t *Tracer) rescanMaps(now time.Time, procs []*ProcInfo) {
	if !now.IsZero() {
		t.lastMaps = now
	}
	for _, p := range procs {
		if p.Exited {
			continue
		}
		// The exec generation before the maps: an exec after this read
		// disarms what is armed from it.
		var st profilemateProcState
		gen, known := uint32(0), t.objs.Procs.Lookup(uint32(p.PID), &st) == nil
		if known {
			gen = st.ExecGen
		}
		if !t.opts.Proc.Alive(p.PID) {
			t.exited(p)
			continue
		}
		if t.reused(p) {
			t.exited(p)
			t.adoptReuser(p.PID)
			continue
		}
		if known && gen != p.linkedGen {
			t.execed(p)
			p.linkedGen = gen
			// The new image may map them later, as a fresh process would.
			t.attachKnown([]int{p.PID})
		}
		maps, err := t.opts.Proc.Maps(p.PID)
		if err != nil {
			continue
		}
		if title := t.opts.Proc.Title(p.PID); title != "" {
			p.Title = title
		}
		for _, m := range maps {
			lib, attached, err := t.att.attach(p.PID, m)
			if err != nil {
				t.opts.Logf("cannot probe %v", err)
			}
			t.probesAdded(t.att.takeAdded())
			switch {
			case lib != nil && !attached:
				t.opts.Logf("%s %s loaded by pid %d", lib.Kind, lib.Path, p.PID)
			case lib != nil:
				t.logAttached(lib, fmt.Sprintf("found in pid %d", p.PID))
			}
		}
		t.findInstalledMarkers(p.PID, maps)
		if live := t.att.live(p.PID, maps); known && live && st.Armed == 0 && p.armedGen != gen+1 {
			if err := t.objs.ArmedProcs.Put(uint32(p.PID), gen+1); err == nil {
				p.armedGen = gen + 1
			}
		}
	}
}

// exited marks p exited and detaches its probes. Its state in the
// programs is kept with it, and its entries removed: PIDs are reused (they
// wrap at pid_max, 32768 on many hosts), and the fork hook gives a new
// process of the tree a fresh entry only where there is none, which the
// next scan then takes for a new process (addProc); the tracer's arming
// would arm it at once.
func (t *Tracer) exited(p *ProcInfo) {
	p.Exited = true
	t.unprobe(p)
	var st profilemateProcState
	if t.objs.Procs.Lookup(uint32(p.PID), &st) == nil {
		p.final = &st
	}
	if err := t.objs.Procs.Delete(uint32(p.PID)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.opts.Logf("forget pid %d: %v", p.PID, err)
	}
	if err := t.objs.ArmedProcs.Delete(uint32(p.PID)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.opts.Logf("forget the arming of pid %d: %v", p.PID, err)
	}
	t.opts.Logf("process %d %s exited; its steps so far are kept", p.PID, p.Title)
}

// reused reports whether p's PID names another process now: one that
// took it after p exited, between two looks (PIDs wrap at pid_max). Its
// maps must not be probed as p's: the links would follow the PID into it.
func (t *Tracer) reused(p *ProcInfo) bool {
	start, err := t.opts.Proc.StartTime(p.PID)
	return err == nil && p.start != 0 && start != p.start
}

// adoptReuser traces the process that took an exited one's PID before the
// tracer saw the exit, where its parent is traced: the fork hook found the
// old entry in place and left it, so it would otherwise go untraced. One
// whose parent is not traced is no part of the tree.
func (t *Tracer) adoptReuser(pid int) {
	ppid, err := t.opts.Proc.PPid(pid)
	if parent := t.procs[ppid]; err != nil || parent == nil || parent.Exited {
		return
	}
	t.addProc(pid)
	t.attachKnown([]int{pid})
}

// execed drops the links of p, which exec'd since they were made, for its
// libraries to be probed again from its new maps. A link made with the PID
// holds the task that led the process then, and the kernel plants its
// probes only in that task's mm (uprobe_multi_link_filter in
// kernel/trace/bpf_trace.c). An exec from the leader keeps the task; one
// from another thread makes that thread the leader and the old leader
// exits, its mm NULL: the old links plant nothing in the new image, which
// would run untraced while its libraries count as probed. New links
// resolve the PID to the new leader. Which thread exec'd is not known
// here, so a leader's exec is probed again too; a step its new image
// opened meanwhile (armed by lib_ready) has its epoch spoilt, as with any
// probes attached for an armed process. The Python dirs looked into were
// the old image's.
func (t *Tracer) execed(p *ProcInfo) {
	t.unprobe(p)
	t.opts.Logf("process %d exec'd; probing its libraries again", p.PID)
}

// unprobe detaches p's probes and forgets the Python dirs looked into for
// it: both were of the process as it was.
func (t *Tracer) unprobe(p *ProcInfo) {
	delete(t.pyDirs, p.PID)
	if err := t.att.forget(p.PID); err != nil {
		t.opts.Logf("detach the probes of pid %d: %v", p.PID, err)
	}
}

// armed reports whether the programs let process p's steps open, from its
// state in the procs map.
func (p *ProcInfo) armed(st *profilemateProcState) bool {
	return armedBy(st, p.armedGen)
}

// armedBy is is_armed of the programs: a process with state st is armed
// by itself, or by the tracer for its exec generation (armedGen, that
// generation plus one, as armed_procs holds it).
func armedBy(st *profilemateProcState, armedGen uint32) bool {
	return st.Armed != 0 || armedGen == st.ExecGen+1
}

// findInstalledMarkers probes the marker where process pid's Python would
// import it from, in the directories not looked into yet, so that a process
// which loads it later is traced from its first step.
func (t *Tracer) findInstalledMarkers(pid int, maps []Mapping) {
	looked := t.pyDirs[pid]
	if looked == nil {
		looked = map[string]bool{}
		t.pyDirs[pid] = looked
	}
	for _, dir := range t.opts.Proc.PythonDirs(pid, maps) {
		if looked[dir] {
			continue
		}
		looked[dir] = true
		for _, path := range t.opts.Proc.MarkerInstalls(pid, dir) {
			lib, err := t.att.attachInstalled(pid, path)
			if err != nil {
				t.opts.Logf("cannot probe %v", err)
			}
			if lib != nil {
				t.logAttached(lib, fmt.Sprintf("installed where pid %d imports from; not loaded yet", pid))
			}
		}
	}
}

func (t *Tracer) logAttached(lib *Library, where string) {
	if lib.Kind == LibRuntime && lib.Probes == 0 {
		t.opts.Logf("%s %s: not probed, the driver counts its calls (%s)", lib.Kind, lib.Path, where)
		return
	}
	t.opts.Logf("%s %s: %d probes attached (%s)", lib.Kind, lib.Path, lib.Probes, where)
	// What the library lacks is the same for every process.
	if lib.reported {
		return
	}
	lib.reported = true
	for _, f := range lib.Failed {
		t.opts.Logf("  not probed, its calls are not counted: %s", f)
	}
	if lib.Kind != LibDriver {
		return
	}
	moved := t.att.atRuntimes &^ lib.counted
	if moved.Has(ClassLaunch) {
		t.opts.Logf("  no launch function of the driver can be probed: launches are counted at the runtime, and launches straight through the driver (cuBLAS, Triton) are missed")
	}
	if moved.Has(ClassGraph) || moved.Has(ClassSync) {
		t.opts.Logf("  no %s function of the driver can be probed: counted at the runtime instead",
			strings.ReplaceAll((moved&^ClassLaunch).String(), ",", " or "))
	}
}

// scan picks up processes the fork hook added and, at most once a second,
// libraries mapped since the last look.
func (t *Tracer) scan(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var key uint32
	var fresh []int
	var unarmed []*ProcInfo
	it := t.objs.Procs.Iterate()
	var val profilemateProcState
	for it.Next(&key, &val) {
		p, ok := t.procs[int(key)]
		switch {
		case !ok || p.Exited:
			// An exited process's entry is gone (exited): this is a
			// new process with its PID.
			fresh = append(fresh, int(key))
		case !p.armed(&val):
			unarmed = append(unarmed, p)
		}
	}
	for _, pid := range fresh {
		t.addProc(pid)
	}
	switch {
	case len(fresh) > 0 || now.Sub(t.lastMaps) >= time.Second:
		t.rescanMaps(now, t.live())
		t.attachKnown(fresh)
	case len(unarmed) > 0:
		// Their steps are left out until their CUDA libraries are
		// probed: look for those at every tick.
		t.rescanMaps(time.Time{}, unarmed)
	}
}

// attachKnown probes the CUDA libraries probed so far for the processes
// the fork hook added (pids), or that exec'd, where they do not map them
// yet.
func (t *Tracer) attachKnown(pids []int) {
	for _, pid := range pids {
		if p := t.procs[pid]; p == nil || p.Exited {
			continue // not traced (the tracer itself), or gone
		}
		libs, err := t.att.attachKnown(pid)
		if err != nil {
			t.opts.Logf("cannot probe %v", err)
		}
		t.probesAdded(t.att.takeAdded())
		for _, lib := range libs {
			t.logAttached(lib, fmt.Sprintf("for pid %d, new or exec'd during the trace, before it maps it", pid))
		}
	}
}

// Run reads step and sched records, handing each to sink, and keeps the
// traced set current until ctx ends. Then it detaches every probe and drains
// the ring buffer, so no record sent before the end is lost.
func (t *Tracer) Run(ctx context.Context, sink Sink) error {
	done := make(chan error, 1)
	go func() {
		n, err := readRecords(t.reader, sink)
		t.invalid.Add(n)
		done <- err
	}()
	tick := time.NewTicker(rescanEvery)
	defer tick.Stop()
	if t.opts.LeaveOut.Has(ClassRescan) {
		tick.Stop() // the set traced stays what Start found
	}
	// Sampling: a timer that never fires when no class is sampled (each
	// probed all the time or not at all).
	sample := time.NewTimer(time.Hour)
	sample.Stop()
	if t.sampled != 0 {
		sample.Reset(t.opts.Sample.On)
	}
	defer sample.Stop()
	for {
		select {
		case <-ctx.Done():
			// Freeze the steps first: the probes are detached one link
			// at a time, and a step_begin gone before the launch probes
			// would leave a newer step's launches to the one before.
			// Nothing is counted from then on.
			t.stopLive()
			freezeErr := t.objs.Frozen.Set(uint32(1))
			detachErr := errors.Join(freezeErr, t.att.close())
			if err := t.reader.Flush(); err != nil {
				return errors.Join(detachErr, err)
			}
			if err := <-done; err != nil {
				return errors.Join(detachErr, err)
			}
			// No probe fires any more: what is still open stays so.
			t.emitOpenSteps(sink)
			return detachErr
		case err := <-done:
			return fmt.Errorf("read the ring buffer: %w", err)
		case now := <-tick.C:
			t.scan(now)
		case <-sample.C:
			sample.Reset(t.toggleSampled())
		}
	}
}

// stopLive ends the time the epochs count as live: the trace freezes.
func (t *Tracer) stopLive() {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for _, e := range t.epochs(sampledClasses) {
		e.stop(now)
	}
}

// emitOpenSteps hands sink every step still open in a traced process, as
// far as it got, marked OpenAtEnd: a trace that ends in the middle of a long
// prefill writes it with the points that came.
func (t *Tracer) emitOpenSteps(sink Sink) {
	var open []analysis.Step
	for _, p := range t.Processes() {
		var st profilemateProcState
		if !t.stateOf(p, &st) {
			continue
		}
		for _, r := range st.Open {
			if r.BeginNs == 0 || r.StepId == 0 || r.Pid == 0 {
				continue
			}
			s := stepOf(r)
			s.OpenAtEnd = true
			// Its launches and syncs were counted up to the freeze if
			// their probes were live all that time (submit's rule, at
			// the end).
			s.LaunchesUncounted = !t.launches.counted(r.LaunchEpoch)
			s.SyncsUncounted = !t.syncs.counted(r.SyncEpoch)
			open = append(open, s)
		}
	}
	sort.Slice(open, func(i, j int) bool { return open[i].BeginNs < open[j].BeginNs })
	for _, s := range open {
		sink.Step(s)
	}
}

// StepsBeforeProbes returns how many steps were left out because they began
// before every CUDA probe of their process was live: their counts would have
// started late.
func (t *Tracer) StepsBeforeProbes() uint64 {
	var n uint64
	for _, p := range t.Processes() {
		var st profilemateProcState
		if t.stateOf(p, &st) {
			n += st.StepsUnarmed
		}
	}
	return n
}

// Processes returns the traced processes, by PID; of those with the same
// PID, the ones that exited before a newer one took it come first.
func (t *Tracer) Processes() []ProcInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]ProcInfo, 0, len(t.procs)+len(t.gone))
	for _, p := range t.gone {
		out = append(out, *p)
	}
	for _, p := range t.procs {
		out = append(out, *p)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

// stateOf reads process p's state in the programs into st, or the one kept
// at its exit, and reports whether there is one.
func (t *Tracer) stateOf(p ProcInfo, st *profilemateProcState) bool {
	if p.final != nil {
		*st = *p.final
		return true
	}
	return !p.Exited && t.objs.Procs.Lookup(uint32(p.PID), st) == nil
}

// Attached returns how many probes are attached now, counted in each
// process they are attached for, and for how many processes.
func (t *Tracer) Attached() (probes, procs int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.att.probed()
}

// Libraries returns the probed libraries.
func (t *Tracer) Libraries() []*Library {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.att.libraries()
}

// Activity returns each traced process's CUDA activity over the whole trace.
func (t *Tracer) Activity() []analysis.ProcessActivity {
	procs := t.Processes()
	out := make([]analysis.ProcessActivity, 0, len(procs))
	for _, p := range procs {
		var st profilemateProcState
		if !t.stateOf(p, &st) {
			continue
		}
		out = append(out, analysis.ProcessActivity{
			Process:  p.Label(),
			Launches: st.Launches, GraphLaunches: st.GraphLaunches,
			SyncWaitNs: st.SyncWaitNs, Syncs: st.Syncs,
		})
	}
	return out
}

// Lost returns the records the kernel could not send (ring buffer full) and
// the records that arrived but could not be decoded.
func (t *Tracer) Lost() (dropped, invalid uint64, err error) {
	var perCPU []uint64
	if err := t.objs.Drops.Lookup(uint32(0), &perCPU); err != nil {
		return 0, t.invalid.Load(), fmt.Errorf("read the drop counter: %w", err)
	}
	for _, n := range perCPU {
		dropped += n
	}
	return dropped, t.invalid.Load(), nil
}

// Close detaches everything and releases the eBPF objects, newest first.
func (t *Tracer) Close() error {
	var errs []error
	errs = append(errs, t.att.close())
	if t.reader != nil {
		errs = append(errs, t.reader.Close())
	}
	if t.exec != nil {
		errs = append(errs, t.exec.Close())
	}
	if t.fork != nil {
		errs = append(errs, t.fork.Close())
	}
	errs = append(errs, t.objs.Close())
	return errors.Join(errs...)
}
