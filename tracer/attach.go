package tracer

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/cilium/ebpf/link"
)

// Library is one probed library file (one inode), wherever it is mapped.
// Its probes are attached for each traced process that maps it (or imports
// it, a marker found installed), with links of that process alone.
type Library struct {
	Kind    LibKind
	Path    string   // as the first process that mapped it names it
	Loaded  bool     // a traced process maps it (else it was found installed)
	Probes  int      // probes attached in each process it is probed for
	Missing []string // probed functions the library does not export
	Failed  []string // functions it exports that the kernel would not probe

	id        uint32  // a CUDA library's id: the cookie of its links, its lib_ready key
	installed bool    // probed where installed, before a process mapped it
	reported  bool    // what it lacks was logged (once, not per process)
	counted   Classes // the CUDA classes with at least one function probed here
	// What the file holds, read once and used for every process: a CUDA
	// library's exported functions (offsets) and its program sets, a
	// marker's sites with their argument specs stored.
	offsets map[string]uint64
	sets    []*cudaSet
	sites   []markerSite
	// procs are the traced processes it is probed for, by PID; unprobed
	// those it could not be probed for (not retried, and settled for
	// arming as a library the kernel refused is).
	procs    map[int]*procProbes
	unprobed map[int]error
}

// cudaSet is one program set of a CUDA library: its entry program, and a
// return program where a duration is needed, on the functions found in the
// file. Once tried for a first process, syms are the functions the kernel
// took every program on: a refused address is not tried again for the next
// process, whose batch then goes in one link.
type cudaSet struct {
	class Classes
	prog  string
	ret   string // "" for none
	syms  []string
	tried bool
}

// sampled reports whether the set is of the sampledClasses, kernel launches
// or synchronizations: its probes come and go during a trace.
func (s *cudaSet) sampled() bool { return sampledClasses.Has(s.class) }

// markerSite is a marker probe site that was probed: its note, its program
// and its argument spec's id in usdt_specs, the cookie of every process's
// link on it.
type markerSite struct {
	p    USDTProbe
	mp   markerProbe
	spec uint32
}

// procProbes are one traced process's links on a library. Each link is
// created with the process's PID: the kernel plants its breakpoints, and
// raises the marker's semaphores, only in that process (and runs the
// programs only for its threads), so that another server on the host that
// maps the same libcuda or the same marker pays nothing. The kernel keeps
// a reference to the task that leads the process when the link is made,
// and plants the probes only in that task's mm: an exec from the leader
// keeps the task, but one from another thread makes that thread the leader
// and the old task exits, leaving the link nothing to plant in the new
// image. So a process's links are dropped at its exec and made anew
// (Tracer.execed).
type procProbes struct {
	ex      *link.Executable // the file through the process's /proc/PID/root
	links   []link.Link      // probes live for the whole trace
	sampled map[*cudaSet][]link.Link
	probes  int // probes attached for it
}

// errGone says that a process exited while its probes were being
// attached: nothing is wrong with the library.
var errGone = errors.New("the process exited")

// libKey names a file: by the device and inode /proc/PID/maps prints, or by
// those stat gives through /proc/PID/root. The two differ on overlayfs (maps
// shows the layer's file), so a library is known by both where it has both.
type libKey struct {
	dev   string
	inode uint64
}

// statKey is the key of the file at host, or false if it cannot be read.
func statKey(host string) (libKey, bool) {
	st, err := os.Stat(host)
	if err != nil {
		return libKey{}, false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return libKey{}, false
	}
	return libKey{"stat:" + strconv.FormatUint(sys.Dev, 10), sys.Ino}, true
}

// probeHook, when set (by tests), is called before each library is probed
// for a process: it can run a process's steps while some probes are live
// and others not.
var probeHook func(kind LibKind)

// attacher attaches the programs to each library for each traced process
// that maps it, reading each library file once.
type attacher struct {
	objs     *profilemateObjects
	proc     Proc
	libs     map[libKey]*Library // by maps key and by stat key
	failed   map[libKey]error
	nextSpec uint32
	nextLib  uint32 // ids of CUDA libraries
	// atRuntimes are the CUDA classes a driver could not count (none of
	// its functions of the class probed, or the driver not at all): they
	// are counted at the runtimes instead, from then on.
	atRuntimes Classes
	// leave is the probe classes not attached (Options.LeaveOut).
	leave Classes
	// added are the classes of sampled probes attached for a process
	// since takeAdded last looked, spoilt those of them attached for a
	// process already armed, whose open steps lacked them.
	added, spoilt Classes
}

func newAttacher(objs *profilemateObjects, proc Proc, leave Classes) *attacher {
	return &attacher{objs: objs, proc: proc, libs: map[libKey]*Library{}, failed: map[libKey]error{}, leave: leave}
}

// attach probes the library behind m for process pid if it is one the
// tracer knows and pid does not have its probes yet. It returns the library
// when this call attached its probes for pid (attached), or when it is a
// marker library probed where it was installed that a traced process now
// maps for the first time (not attached).
func (a *attacher) attach(pid int, m Mapping) (lib *Library, attached bool, err error) {
	kind := Classify(m.Path)
	key := libKey{m.Dev, m.Inode}
	if kind == LibNone || kind == LibMarker && a.leave.Has(ClassMarker) || a.failed[key] != nil {
		return nil, false, nil
	}
	host := a.proc.HostPath(pid, m.Path)
	if lib = a.libs[key]; lib == nil {
		sk, ok := statKey(host)
		if ok && a.failed[sk] != nil {
			return nil, false, nil
		}
		if lib = a.libs[sk]; !ok || lib == nil {
			keys := []libKey{key}
			if ok {
				keys = append(keys, sk)
			}
			lib, err = a.probe(pid, kind, m.Path, host, keys)
			if lib != nil {
				lib.Loaded = true
			}
			return lib, lib != nil, err
		}
		a.libs[key] = lib
	}
	if lib.procs[pid] == nil && lib.unprobed[pid] == nil {
		ok, err := a.probeMore(lib, pid, host)
		if !ok {
			return nil, false, err
		}
		lib.Loaded = true
		return lib, true, nil
	}
	if lib.Loaded {
		return nil, false, nil
	}
	lib.Loaded = true
	return lib, false, nil
}

// attachInstalled probes a marker library found where process pid imports
// from, for pid, before it maps the file: the kernel raises the semaphores
// and plants the probes in the process as it maps it. It returns the
// library when this call attached it.
func (a *attacher) attachInstalled(pid int, path string) (*Library, error) {
	if a.leave.Has(ClassMarker) {
		return nil, nil
	}
	host := a.proc.HostPath(pid, path)
	sk, ok := statKey(host)
	if !ok || a.failed[sk] != nil {
		return nil, nil
	}
	lib := a.libs[sk]
	if lib == nil {
		lib, err := a.probe(pid, LibMarker, path, host, []libKey{sk})
		if lib != nil {
			lib.installed = true
		}
		return lib, err
	}
	if lib.procs[pid] != nil || lib.unprobed[pid] != nil {
		return nil, nil
	}
	if ok, err := a.probeMore(lib, pid, host); !ok {
		return nil, err
	}
	return lib, nil
}

// probe reads the library of kind at host (path in pid), probes it for
// pid, its first process, and records it under keys. A library that
// cannot be probed is recorded as failed; one whose process exited
// meanwhile is not recorded at all (nil, nil): the next process tries it.
func (a *attacher) probe(pid int, kind LibKind, path, host string, keys []libKey) (*Library, error) {
	lib := &Library{Kind: kind, Path: path, procs: map[int]*procProbes{}, unprobed: map[int]error{}}
	if kind != LibMarker {
		lib.id = a.nextLib
		a.nextLib++
	}
	var err error
	switch kind {
	case LibRuntime:
		err = a.readSymbols(lib, host, only(runtimeProbes, a.atRuntimes))
	case LibDriver:
		err = a.readSymbols(lib, host, without(driverProbes, a.leave))
	}
	if err == nil {
		err = a.probeFor(lib, pid, host)
	}
	if errors.Is(err, errGone) {
		return nil, nil
	}
	if err != nil {
		err = fmt.Errorf("%s %s (pid %d): %w", kind, path, pid, err)
		for _, k := range keys {
			a.failed[k] = err
		}
		if kind == LibDriver {
			a.countAtRuntimes(cudaClasses)
		}
		return nil, err
	}
	for _, k := range keys {
		a.libs[k] = lib
	}
	if kind == LibDriver {
		a.countAtRuntimes(cudaClasses &^ lib.counted)
	}
	return lib, nil
}

// probeMore probes a library already read for one more process, pid, and
// reports whether it did. A failure other than the process's exit is kept:
// the library is not tried again for pid, and is settled for its arming
// (live) as a library the kernel refused is.
func (a *attacher) probeMore(lib *Library, pid int, host string) (bool, error) {
	err := a.probeFor(lib, pid, host)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, errGone):
		return false, nil
	}
	err = fmt.Errorf("%s %s (pid %d): %w", lib.Kind, lib.Path, pid, err)
	lib.unprobed[pid] = err
	return false, err
}

// probeFor attaches lib's probes for process pid, which reaches the file at
// host; on failure none of them stays.
func (a *attacher) probeFor(lib *Library, pid int, host string) error {
	if probeHook != nil {
		probeHook(lib.Kind)
	}
	ex, err := link.OpenExecutable(host)
	if err != nil {
		return a.failure(pid, err)
	}
	pr := &procProbes{ex: ex, sampled: map[*cudaSet][]link.Link{}}
	if lib.Kind == LibMarker {
		err = a.attachMarker(lib, host, pid, pr)
	} else {
		err = a.attachSets(lib, pid, pr, lib.sets)
	}
	if err != nil {
		closeAll(pr.take())
		return err
	}
	lib.procs[pid] = pr
	a.setReady(lib, pid, true)
	return nil
}

// setReady tells the programs whether every probe of a CUDA library is
// attached for process pid: the process calling into a ready library where
// its calls are counted (the driver, or the runtime where launches are
// counted there) is armed, and its steps open from then on. Per process, as
// its links are: another process's being in says nothing of its own.
func (a *attacher) setReady(lib *Library, pid int, ready bool) {
	if lib.Kind != LibRuntime && lib.Kind != LibDriver {
		return
	}
	key := uint64(pid)<<32 | uint64(lib.id)
	if !ready {
		// Gone already where it never was: nothing to undo.
		_ = a.objs.LibReady.Delete(key)
		return
	}
	v := uint32(libReadyDriver)
	if lib.Kind == LibRuntime {
		v = libReadyRuntime
	}
	// A full map only leaves the arming to the tracer.
	_ = a.objs.LibReady.Put(key, v)
}

// The lib_ready values (LIB_READY_* in bpf/records.h).
const (
	libReadyDriver  = 1
	libReadyRuntime = 2
)

// attachKnown probes the CUDA libraries probed so far for process pid, a
// process the fork hook added, where it does not map them yet: a worker
// spawned during the trace maps the libraries of the server's other
// processes as it starts, and has its probes as it maps them (the kernel
// plants a link's probes at the process's mmap; after an exec the tracer
// makes its links anew, see procProbes), so that its warm-up's first CUDA
// call arms it
// (lib_ready) before its first step. A library is probed only where the
// process's root has that same file. It returns the libraries probed.
func (a *attacher) attachKnown(pid int) ([]*Library, error) {
	var probed []*Library
	var errs []error
	for _, lib := range a.libraries() {
		if lib.Kind == LibMarker || lib.procs[pid] != nil || lib.unprobed[pid] != nil {
			continue
		}
		host := a.proc.HostPath(pid, lib.Path)
		if sk, ok := statKey(host); !ok || a.libs[sk] != lib {
			continue
		}
		ok, err := a.probeMore(lib, pid, host)
		if ok {
			probed = append(probed, lib)
		}
		errs = append(errs, err)
	}
	return probed, errors.Join(errs...)
}

// failure is err, an attach for process pid that failed, or errGone where
// the process is no more: then the kernel refused nothing.
func (a *attacher) failure(pid int, err error) error {
	if !a.proc.Alive(pid) {
		return errGone
	}
	return err
}

// live reports whether the CUDA libraries among process pid's maps are all
// probed for it, so that every CUDA call of the process is counted: at
// least one is, and none is waiting to be (one the kernel refused, or that
// could not be probed for pid, counts as settled). With every CUDA class
// of probes left out there is nothing to wait for.
func (a *attacher) live(pid int, maps []Mapping) bool {
	if a.leave.Has(ClassLaunch) && a.leave.Has(ClassGraph) && a.leave.Has(ClassSync) {
		return true
	}
	live, probed := true, false
	for _, m := range maps {
		kind := Classify(m.Path)
		if kind != LibRuntime && kind != LibDriver {
			continue
		}
		key := libKey{m.Dev, m.Inode}
		switch lib := a.libs[key]; {
		case lib != nil && lib.procs[pid] != nil:
			probed = true
		case a.failed[key] != nil, lib != nil && lib.unprobed[pid] != nil:
		default:
			live = false
		}
	}
	return live && probed
}

// countAtRuntimes moves the classes a driver cannot count to the runtimes:
// it probes their functions in every runtime probed so far, for each
// process it is probed for (and later ones get them too). Kernel launches
// counted at a runtime mark their thread, so the programs are told first;
// where that fails they stay at the driver, as unmarked they would count
// twice.
func (a *attacher) countAtRuntimes(classes Classes) {
	classes &^= a.atRuntimes | a.leave
	if classes.Has(ClassLaunch) {
		if err := a.objs.RuntimeLaunchProbes.Set(uint32(1)); err != nil {
			classes &^= ClassLaunch
		}
	}
	if classes == 0 {
		return
	}
	a.atRuntimes |= classes
	for _, lib := range a.libraries() {
		if lib.Kind != LibRuntime {
			continue
		}
		sets := cudaSets(lib, only(runtimeProbes, classes))
		lib.sets = append(lib.sets, sets...)
		for pid, pr := range lib.procs {
			// Not ready until these are probed too.
			a.setReady(lib, pid, false)
			if err := a.attachSets(lib, pid, pr, sets); err != nil && !errors.Is(err, errGone) {
				lib.Failed = append(lib.Failed, err.Error())
			}
			a.setReady(lib, pid, true)
		}
	}
}

// readSymbols reads a CUDA library's exported functions, once, and makes
// its program sets of sets.
func (a *attacher) readSymbols(lib *Library, host string, sets []probeSet) error {
	offsets, err := symbolOffsets(host)
	if err != nil {
		return err
	}
	lib.offsets = offsets
	lib.sets = cudaSets(lib, sets)
	return nil
}

// cudaSets makes lib's program sets of sets, on the functions it exports;
// the others are noted missing.
func cudaSets(lib *Library, sets []probeSet) []*cudaSet {
	var out []*cudaSet
	for _, set := range sets {
		cs := &cudaSet{class: progClass[set.prog], prog: set.prog, ret: set.ret}
		for _, sym := range set.symbols {
			if _, ok := lib.offsets[sym]; ok {
				cs.syms = append(cs.syms, sym)
			} else {
				lib.Missing = append(lib.Missing, sym)
			}
		}
		out = append(out, cs)
	}
	return out
}

// attachSets attaches lib's sets for process pid into pr: the sampled ones
// apart, as their probes come and go. Sets tried for the first time must
// give at least one probe between them.
func (a *attacher) attachSets(lib *Library, pid int, pr *procProbes, sets []*cudaSet) error {
	first, probes := false, 0
	// Read before the links go in: once they are, the process may arm
	// itself (lib_ready), and then its steps have them whole.
	armed := a.armed(pid)
	for _, set := range sets {
		first = first || !set.tried
		links, n, err := a.attachSet(lib, pid, pr.ex, set)
		if err != nil {
			return err
		}
		probes += n
		switch {
		case !set.sampled():
			pr.links = append(pr.links, links...)
		case len(links) > 0:
			pr.sampled[set] = links
			a.added |= set.class
			if armed {
				a.spoilt |= set.class
			}
		}
	}
	pr.probes += probes
	if first && probes == 0 && len(sets) > 0 {
		return fmt.Errorf("no function could be probed (missing: %v; failed: %v)", lib.Missing, lib.Failed)
	}
	return nil
}

// attachSet puts set's programs on its functions for process pid, the
// return program first: an entry seen while its return probe is not live
// yet would leave the thread's synchronization depth up (sync_enter), and
// the entry goes only where the return went, as a call is timed only with
// both. It returns the links and how many probes they hold; the first time
// a set is tried, it is narrowed to the functions the kernel took and
// counted in lib.Probes.
func (a *attacher) attachSet(lib *Library, pid int, ex *link.Executable, set *cudaSet) ([]link.Link, int, error) {
	syms := set.syms
	var links []link.Link
	probes := 0
	if set.ret != "" {
		var err error
		if links, syms, err = a.attachMulti(lib, pid, ex, set.ret, true, syms); err != nil {
			return nil, 0, err
		}
		probes = len(syms)
	}
	// A return the kernel took on a function whose entry it then refused
	// (one address, so not seen in practice) stays and times nothing:
	// sync_exit needs the entry's depth.
	entries, probed, err := a.attachMulti(lib, pid, ex, set.prog, false, syms)
	links = append(links, entries...)
	if err != nil {
		closeAll(links)
		return nil, 0, err
	}
	probes += len(probed)
	if !set.tried {
		set.tried, set.syms = true, probed
		lib.Probes += probes
		if len(probed) > 0 {
			lib.counted |= set.class
		}
	}
	return links, probes, nil
}

// attachMulti puts prog on all of syms for process pid with one
// uprobe_multi link. The kernel refuses the whole link if it refuses one
// address (some first instructions cannot be probed), so then each is tried
// alone and the refused ones are reported: the others are still worth
// probing. It returns the links and the symbols probed, and an error only
// where the process exited.
func (a *attacher) attachMulti(lib *Library, pid int, ex *link.Executable, prog string, ret bool, syms []string) ([]link.Link, []string, error) {
	try := func(syms []string) (link.Link, error) {
		// The cookie names the library, for the programs' lib_ready.
		opts := &link.UprobeMultiOptions{PID: uint32(pid)}
		for _, s := range syms {
			opts.Addresses = append(opts.Addresses, lib.offsets[s])
			opts.Cookies = append(opts.Cookies, uint64(lib.id))
		}
		attach := ex.UprobeMulti
		if ret {
			attach = ex.UretprobeMulti
		}
		l, err := attach(nil, a.objs.program(prog), opts)
		if err != nil {
			return nil, a.failure(pid, err)
		}
		return l, nil
	}
	if len(syms) > 1 {
		l, err := try(syms)
		switch {
		case err == nil:
			return []link.Link{l}, syms, nil
		case errors.Is(err, errGone):
			return nil, nil, err
		}
	}
	var links []link.Link
	var probed []string
	for _, s := range syms {
		l, err := try([]string{s})
		switch {
		case errors.Is(err, errGone):
			closeAll(links)
			return nil, nil, err
		case err != nil:
			lib.Failed = append(lib.Failed, fmt.Sprintf("%s (%s): %v", s, prog, err))
		default:
			links = append(links, l)
			probed = append(probed, s)
		}
	}
	return links, probed, nil
}

// probesOn puts back the sampled probes of classes for every process where
// they are not live, on the functions the kernel took.
func (a *attacher) probesOn(classes Classes) {
	for _, lib := range a.libraries() {
		for pid, pr := range lib.procs {
			for _, set := range lib.sets {
				if !set.sampled() || !classes.Has(set.class) || pr.sampled[set] != nil || len(set.syms) == 0 {
					continue
				}
				if links, _, err := a.attachSet(lib, pid, pr.ex, set); err == nil && len(links) > 0 {
					pr.sampled[set] = links
				}
			}
		}
	}
}

// probesOff removes every sampled probe of classes.
func (a *attacher) probesOff(classes Classes) error {
	return closeAll(a.takeSampled(classes))
}

// takeSampled returns the live links of the sampled probes of classes, of
// every process, and marks them not live.
func (a *attacher) takeSampled(classes Classes) []link.Link {
	var links []link.Link
	for _, lib := range a.libraries() {
		for _, pr := range lib.procs {
			for set, l := range pr.sampled {
				if classes.Has(set.class) {
					links = append(links, l...)
					delete(pr.sampled, set)
				}
			}
		}
	}
	return links
}

// takeAdded returns the classes of sampled probes attached for a process
// since the last call, and of those the classes attached for a process
// already armed.
func (a *attacher) takeAdded() (added, spoilt Classes) {
	added, spoilt = a.added, a.spoilt
	a.added, a.spoilt = 0, 0
	return added, spoilt
}

// armed reports whether process pid's steps may open, as is_armed in the
// programs decides; true where that cannot be read.
func (a *attacher) armed(pid int) bool {
	var st profilemateProcState
	if a.objs.Procs.Lookup(uint32(pid), &st) != nil {
		return true
	}
	var gen uint32
	_ = a.objs.ArmedProcs.Lookup(uint32(pid), &gen) // 0, never a generation plus one, where none
	return armedBy(&st, gen)
}

// symbolOffsets returns where to probe each function a library exports: the
// file offset of its entry (probeOffset may move it past an endbr64).
func symbolOffsets(path string) (map[string]uint64, error) {
	raw, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	f, err := elf.NewFile(raw)
	if err != nil {
		return nil, err
	}
	syms, err := f.DynamicSymbols()
	if err != nil {
		return nil, fmt.Errorf("dynamic symbols: %w", err)
	}
	out := map[string]uint64{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Value == 0 {
			continue
		}
		if off, err := fileOffset(f, s.Value, true); err == nil {
			out[s.Name] = probeOffset(raw, off)
		}
	}
	return out, nil
}

// endbr64 is the instruction a function built for Intel CET (IBT) starts with.
var endbr64 = [4]byte{0xf3, 0x0f, 0x1e, 0xfa}

// probeOffset returns where an entry probe goes on the function at file
// offset off: past a leading endbr64 when a push follows it, else off.
//
// The kernel runs the instruction under a uprobe either by emulating it or
// by copying it out and single-stepping it, a second trap. It emulates a
// push but single-steps endbr64: a probed launch costs about 5 µs on the
// endbr64 and 1 µs on the push after it (measured in this project's VM),
// and launches are probed hundreds of times a step in eager mode. Every
// entry passes the push: endbr64 is a landing pad for indirect branches and
// does nothing else, direct calls that skip it land on the push, and a
// prologue push is no loop's target. A return probe there still finds the
// return address on top of the stack, as nothing was pushed yet.
func probeOffset(r io.ReaderAt, off uint64) uint64 {
	var b [6]byte
	if _, err := r.ReadAt(b[:], int64(off)); err != nil || [4]byte(b[:4]) != endbr64 {
		return off
	}
	push := b[4] >= 0x50 && b[4] <= 0x57 || // push %rax..%rdi
		b[4] == 0x41 && b[5] >= 0x50 && b[5] <= 0x57 // push %r8..%r15
	if push {
		return off + 4
	}
	return off
}

// attachMarker attaches the marker's probes for process pid. The first
// process's attach reads the notes (at host) and finds the sites to probe;
// the next processes get the same sites, their specs already stored.
func (a *attacher) attachMarker(lib *Library, host string, pid int, pr *procProbes) error {
	if len(lib.sites) == 0 {
		return a.firstMarker(lib, host, pid, pr)
	}
	for _, s := range lib.sites {
		if err := a.attachUSDT(pid, pr, s); err != nil {
			return fmt.Errorf("USDT %s:%s: %w", s.p.Provider, s.p.Name, err)
		}
	}
	return nil
}

// firstMarker reads the marker's notes at host and probes its sites for
// pid, keeping those probed in lib.sites.
func (a *attacher) firstMarker(lib *Library, host string, pid int, pr *procProbes) error {
	f, err := os.Open(host)
	if err != nil {
		return err
	}
	probes, err := ReadUSDTProbes(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("read USDT notes: %w", err)
	}
	var sites []USDTProbe
	for _, p := range probes {
		mp, ok := markerProbes[p.Name]
		if p.Provider != MarkerProvider || !ok {
			continue
		}
		// The programs read arguments by position: a site with another
		// count is another protocol, and probing it would record garbage.
		if n := len(p.Args); n < mp.minArgs || n > mp.maxArgs {
			lib.Failed = append(lib.Failed, fmt.Sprintf("%s:%s: %d arguments (%q), want %d to %d", p.Provider, p.Name, n, p.ArgSpec, mp.minArgs, mp.maxArgs))
			continue
		}
		sites = append(sites, p)
	}
	found := map[string]bool{}
	// First the probes no other stands for (step_end among them), then the
	// others, each only where the probe that stands for it was not probed.
	for _, replaced := range []bool{false, true} {
		for _, p := range sites {
			mp := markerProbes[p.Name]
			if (mp.replacedBy != "") != replaced || found[mp.replacedBy] {
				continue
			}
			s, err := a.newSite(p, mp)
			if err != nil {
				return err
			}
			err = a.attachUSDT(pid, pr, s)
			switch {
			case errors.Is(err, errGone):
				return err
			case err != nil && mp.optional:
				lib.Failed = append(lib.Failed, fmt.Sprintf("%s:%s: %v", p.Provider, p.Name, err))
				continue
			case err != nil:
				return fmt.Errorf("USDT %s:%s: %w", p.Provider, p.Name, err)
			}
			found[p.Name] = true
			lib.sites = append(lib.sites, s)
			lib.Probes++
		}
	}
	for name, mp := range markerProbes {
		if !found[name] && !found[mp.replacedBy] {
			lib.Missing = append(lib.Missing, MarkerProvider+":"+name)
		}
	}
	if lib.Probes == 0 {
		return fmt.Errorf("no %s probes in its notes", MarkerProvider)
	}
	return nil
}

// newSite stores the argument spec of the marker's site p under a new id,
// the cookie of its links in every process.
func (a *attacher) newSite(p USDTProbe, mp markerProbe) (markerSite, error) {
	id := a.nextSpec
	if err := a.objs.UsdtSpecs.Put(id, specOf(p)); err != nil {
		return markerSite{}, fmt.Errorf("store argument spec of %s: %w", p.Name, err)
	}
	a.nextSpec++
	return markerSite{p: p, mp: mp, spec: id}, nil
}

// attachUSDT probes the marker's site s for process pid.
func (a *attacher) attachUSDT(pid int, pr *procProbes, s markerSite) error {
	// The kernel raises the semaphore (RefCtrOffset) in the process while
	// this link lives (as it maps the file, if it does not yet), and
	// lowers it when the link is closed, also when the tracer dies.
	l, err := pr.ex.UprobeMulti(nil, a.objs.program(s.mp.prog), &link.UprobeMultiOptions{PID: uint32(pid),
		Addresses: []uint64{s.p.Offset}, RefCtrOffsets: []uint64{s.p.RefCtrOffset}, Cookies: []uint64{uint64(s.spec)}})
	if err != nil {
		return a.failure(pid, err)
	}
	pr.links = append(pr.links, l)
	pr.probes++
	return nil
}

func specOf(p USDTProbe) profilemateUsdtSpec {
	var s profilemateUsdtSpec
	for i, a := range p.Args {
		s.Args[i] = profilemateUsdtArg{Val: a.Val, RegOff: a.RegOff, Kind: a.Kind, Size: a.Size}
		if a.Signed {
			s.Args[i].IsSigned = 1
		}
	}
	s.ArgCnt = uint32(len(p.Args))
	return s
}

// libraries returns the probed libraries, each once.
func (a *attacher) libraries() []*Library {
	seen := map[*Library]bool{}
	out := make([]*Library, 0, len(a.libs))
	for _, l := range a.libs {
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

// take returns every link of pr and leaves it none.
func (pr *procProbes) take() []link.Link {
	links := pr.links
	pr.links = nil
	for set, l := range pr.sampled {
		links = append(links, l...)
		delete(pr.sampled, set)
	}
	return links
}

// forget detaches the probes of a traced process that exited (the kernel
// holds a reference to its task for each of its links until they close),
// or that exec'd, whose links may plant nothing in its new image.
func (a *attacher) forget(pid int) error {
	var links []link.Link
	for _, lib := range a.libraries() {
		if pr := lib.procs[pid]; pr != nil {
			links = append(links, pr.take()...)
			delete(lib.procs, pid)
			a.setReady(lib, pid, false)
		}
		delete(lib.unprobed, pid)
	}
	return closeAll(links)
}

// probed returns how many probes are attached, over every process, and for
// how many processes.
func (a *attacher) probed() (probes, procs int) {
	pids := map[int]bool{}
	for _, lib := range a.libraries() {
		for pid, pr := range lib.procs {
			probes += pr.probes
			pids[pid] = true
		}
	}
	return probes, len(pids)
}

// close detaches every probe; closing a marker link lowers its semaphore.
func (a *attacher) close() error {
	var links []link.Link
	for _, lib := range a.libraries() {
		for _, pr := range lib.procs {
			links = append(links, pr.take()...)
		}
	}
	return closeAll(links)
}

// closeAll closes links concurrently: each uprobe's removal waits for an RCU
// grace period, so closing them one after another takes seconds.
func closeAll(links []link.Link) error {
	errs := make([]error, len(links))
	var wg sync.WaitGroup
	for i, l := range links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.Close()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
