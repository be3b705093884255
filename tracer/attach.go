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
type Library struct {
	Kind    LibKind
	Path    string   // as the first process that mapped it names it
	Loaded  bool     // a traced process maps it (else it was found installed)
	Probes  int      // probes attached
	Missing []string // probed functions the library does not export
	Failed  []string // functions it exports that the kernel would not probe

	host      string  // where the tracer opens it
	id        uint32  // a CUDA library's id: the cookie of its links, its lib_ready index
	ready     bool    // a CUDA library whose probes are all attached (lib_ready)
	installed bool    // probed where installed, before a process mapped it
	counted   Classes // the CUDA classes with at least one function probed here
	// sampled are its launch and synchronization probes.
	sampled []*sampledProbes
}

// sampledProbes are a library's probes of one of the sampledClasses, kernel
// launches or synchronizations, kept apart from its other probes: a class
// that is sampled has its probes come and go during a trace.
type sampledProbes struct {
	class   Classes
	ex      *link.Executable
	prog    string   // the entry program
	ret     string   // the return program on the same functions; "" for none
	syms    []string // the functions the kernel accepted every program on
	offsets map[string]uint64
	links   []link.Link // nil while not live
}

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

// probeHook, when set (by tests), is called before each library is probed:
// it can run a process's steps while some probes are live and others not.
var probeHook func(kind LibKind)

// attacher attaches the programs once per library inode: a uprobe on a file
// fires in every process that maps it, and the programs filter on the traced
// processes themselves.
type attacher struct {
	objs     *profilemateObjects
	proc     Proc
	links    []link.Link
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
	// added are the classes of sampled probes attached to a library for
	// the first time since takeAdded last looked.
	added Classes
}

func newAttacher(objs *profilemateObjects, proc Proc, leave Classes) *attacher {
	return &attacher{objs: objs, proc: proc, libs: map[libKey]*Library{}, failed: map[libKey]error{}, leave: leave}
}

// attach probes the library behind m if it is one the tracer knows and has
// not probed yet. It returns the library when this call attached it, or
// when it is a marker library probed where it was installed that a traced
// process now maps for the first time.
func (a *attacher) attach(pid int, m Mapping) (*Library, error) {
	kind := Classify(m.Path)
	key := libKey{m.Dev, m.Inode}
	if kind == LibNone || kind == LibMarker && a.leave.Has(ClassMarker) || a.libs[key] != nil || a.failed[key] != nil {
		return nil, nil
	}
	host := a.proc.HostPath(pid, m.Path)
	sk, ok := statKey(host)
	if lib := a.libs[sk]; ok && lib != nil {
		a.libs[key] = lib
		if lib.Loaded {
			return nil, nil
		}
		lib.Loaded = true
		return lib, nil
	}
	if ok && a.failed[sk] != nil {
		return nil, nil
	}
	keys := []libKey{key}
	if ok {
		keys = append(keys, sk)
	}
	lib, err := a.probe(pid, kind, m.Path, host, keys)
	if err != nil {
		a.failed[key] = err
		if kind == LibDriver {
			a.countAtRuntimes(cudaClasses)
		}
		return nil, err
	}
	lib.Loaded = true
	return lib, nil
}

// attachInstalled probes a marker library found where process pid imports
// from, before any process maps it: the kernel raises its semaphores and
// plants its probes in each process as it maps the file. It returns the
// library when this call attached it.
func (a *attacher) attachInstalled(pid int, path string) (*Library, error) {
	if a.leave.Has(ClassMarker) {
		return nil, nil
	}
	host := a.proc.HostPath(pid, path)
	sk, ok := statKey(host)
	if !ok || a.libs[sk] != nil || a.failed[sk] != nil {
		return nil, nil
	}
	lib, err := a.probe(pid, LibMarker, path, host, []libKey{sk})
	if err != nil {
		a.failed[sk] = err
		return nil, err
	}
	lib.installed = true
	return lib, nil
}

// probe attaches the programs of kind to the file at host (path in pid) and
// records the library under keys.
func (a *attacher) probe(pid int, kind LibKind, path, host string, keys []libKey) (*Library, error) {
	if probeHook != nil {
		probeHook(kind)
	}
	lib := &Library{Kind: kind, Path: path, host: host}
	var err error
	switch kind {
	case LibRuntime, LibDriver:
		lib.id = a.nextLib
		a.nextLib++
	}
	switch kind {
	case LibMarker:
		err = a.attachMarker(lib)
	case LibRuntime:
		err = a.attachSymbols(lib, only(runtimeProbes, a.atRuntimes))
	case LibDriver:
		err = a.attachSymbols(lib, without(driverProbes, a.leave))
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s (pid %d): %w", kind, path, pid, err)
	}
	for _, k := range keys {
		a.libs[k] = lib
	}
	if kind == LibDriver {
		a.countAtRuntimes(cudaClasses &^ lib.counted)
	}
	a.setReady(lib, true)
	return lib, nil
}

// setReady tells the programs whether every probe of a CUDA library is
// attached: a process calling into a ready library where its calls are
// counted (the driver, or the runtime where launches are counted there) is
// armed, and its steps open from then on.
func (a *attacher) setReady(lib *Library, ready bool) {
	if lib.Kind != LibRuntime && lib.Kind != LibDriver {
		return
	}
	var v uint32
	if ready {
		v = libReadyDriver
		if lib.Kind == LibRuntime {
			v = libReadyRuntime
		}
	}
	// An id past the map's end only leaves the arming to the tracer.
	if err := a.objs.LibReady.Put(lib.id, v); err == nil {
		lib.ready = ready
	}
}

// The lib_ready values (LIB_READY_* in bpf/records.h).
const (
	libReadyDriver  = 1
	libReadyRuntime = 2
)

// live reports whether the CUDA libraries among maps are all probed, so
// that every CUDA call of a process with these mappings is counted: at
// least one is, and none is waiting to be (one the kernel refused counts as
// settled). With every CUDA class of probes left out there is nothing to
// wait for.
func (a *attacher) live(maps []Mapping) bool {
	if a.leave.Has(ClassLaunch) && a.leave.Has(ClassGraph) && a.leave.Has(ClassSync) {
		return true
	}
	live, ready := true, false
	for _, m := range maps {
		kind := Classify(m.Path)
		if kind != LibRuntime && kind != LibDriver {
			continue
		}
		key := libKey{m.Dev, m.Inode}
		switch lib := a.libs[key]; {
		case lib != nil && lib.ready:
			ready = true
		case a.failed[key] != nil:
		default:
			live = false
		}
	}
	return live && ready
}

// countAtRuntimes moves the classes a driver cannot count to the runtimes:
// it probes their functions in every runtime probed so far (and later ones
// get them too). Kernel launches counted at a runtime mark their thread, so
// the programs are told first; where that fails they stay at the driver, as
// unmarked they would count twice.
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
		// Not ready until these are probed too.
		a.setReady(lib, false)
		if err := a.attachSymbols(lib, only(runtimeProbes, classes)); err != nil {
			lib.Failed = append(lib.Failed, err.Error())
		}
		a.setReady(lib, true)
	}
}

func (a *attacher) attachSymbols(lib *Library, sets []probeSet) error {
	ex, err := link.OpenExecutable(lib.host)
	if err != nil {
		return err
	}
	offsets, err := symbolOffsets(lib.host)
	if err != nil {
		return err
	}
	for _, set := range sets {
		var found []string
		for _, sym := range set.symbols {
			if _, ok := offsets[sym]; ok {
				found = append(found, sym)
			} else {
				lib.Missing = append(lib.Missing, sym)
			}
		}
		class := progClass[set.prog]
		if sampledClasses.Has(class) {
			sp := &sampledProbes{class: class, ex: ex, prog: set.prog, ret: set.ret, offsets: offsets}
			var n int
			n, sp.syms = a.attachSampled(lib, sp, found)
			lib.Probes += n
			lib.sampled = append(lib.sampled, sp)
			if len(sp.syms) > 0 {
				lib.counted |= class
				a.added |= class
			}
			continue
		}
		probed := a.attachMulti(lib, &a.links, ex, set.prog, false, found, offsets)
		lib.Probes += len(probed)
		if len(probed) > 0 {
			lib.counted |= class
		}
	}
	if lib.Probes == 0 && len(sets) > 0 {
		return fmt.Errorf("no function could be probed (missing: %v; failed: %v)", lib.Missing, lib.Failed)
	}
	return nil
}

// attachMulti puts prog on all of syms with one uprobe_multi link, kept in
// dst. The kernel refuses the whole link if it refuses one address (some
// first instructions cannot be probed), so then each is tried alone and the
// refused ones are reported: the others are still worth probing. It returns
// the symbols probed.
func (a *attacher) attachMulti(lib *Library, dst *[]link.Link, ex *link.Executable, prog string, ret bool, syms []string, offsets map[string]uint64) []string {
	if len(syms) == 0 {
		return nil
	}
	try := func(syms []string) error {
		// The cookie names the library, for the programs' lib_ready.
		opts := &link.UprobeMultiOptions{}
		for _, s := range syms {
			opts.Addresses = append(opts.Addresses, offsets[s])
			opts.Cookies = append(opts.Cookies, uint64(lib.id))
		}
		attach := ex.UprobeMulti
		if ret {
			attach = ex.UretprobeMulti
		}
		l, err := attach(nil, a.objs.program(prog), opts)
		if err != nil {
			return err
		}
		*dst = append(*dst, l)
		return nil
	}
	if len(syms) > 1 && try(syms) == nil {
		return syms
	}
	var probed []string
	for _, s := range syms {
		if err := try([]string{s}); err != nil {
			lib.Failed = append(lib.Failed, fmt.Sprintf("%s (%s): %v", s, prog, err))
		} else {
			probed = append(probed, s)
		}
	}
	return probed
}

// attachSampled puts sp's programs on syms, the return program first: an
// entry seen while its return probe is not live yet would leave the
// thread's synchronization depth up (sync_enter), and the entry goes only
// where the return went, as a call is timed only with both. It returns how
// many probes it attached and the functions that have them all.
func (a *attacher) attachSampled(lib *Library, sp *sampledProbes, syms []string) (probes int, probed []string) {
	if sp.ret != "" {
		syms = a.attachMulti(lib, &sp.links, sp.ex, sp.ret, true, syms, sp.offsets)
		probes += len(syms)
	}
	// A return the kernel took on a function whose entry it then refused
	// (one address, so not seen in practice) stays and times nothing:
	// sync_exit needs the entry's depth.
	probed = a.attachMulti(lib, &sp.links, sp.ex, sp.prog, false, syms, sp.offsets)
	return probes + len(probed), probed
}

// probesOn puts back the sampled probes of classes in every library where
// they are not live, on the functions found when the library was first
// probed.
func (a *attacher) probesOn(classes Classes) {
	for _, lib := range a.libraries() {
		for _, sp := range lib.sampled {
			if classes.Has(sp.class) && sp.links == nil && len(sp.syms) > 0 {
				a.attachSampled(lib, sp, sp.syms)
			}
		}
	}
}

// probesOff removes every sampled probe of classes.
func (a *attacher) probesOff(classes Classes) error {
	return closeAll(a.takeSampled(classes))
}

// takeSampled returns the live links of the sampled probes of classes and
// marks them not live.
func (a *attacher) takeSampled(classes Classes) []link.Link {
	var links []link.Link
	for _, lib := range a.libraries() {
		for _, sp := range lib.sampled {
			if classes.Has(sp.class) {
				links = append(links, sp.links...)
				sp.links = nil
			}
		}
	}
	return links
}

// takeAdded returns the classes of sampled probes first attached to a
// library since the last call.
func (a *attacher) takeAdded() Classes {
	added := a.added
	a.added = 0
	return added
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

func (a *attacher) attachMarker(lib *Library) error {
	f, err := os.Open(lib.host)
	if err != nil {
		return err
	}
	probes, err := ReadUSDTProbes(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("read USDT notes: %w", err)
	}
	ex, err := link.OpenExecutable(lib.host)
	if err != nil {
		return err
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
			ok, err := a.attachUSDT(ex, lib, p, mp)
			if err != nil {
				return err
			}
			found[p.Name] = ok
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

// attachUSDT probes the marker's site p with its program (mp), its argument
// spec stored under the link's cookie. It reports whether the probe is live:
// an optional probe the kernel refused is noted in lib.Failed instead.
func (a *attacher) attachUSDT(ex *link.Executable, lib *Library, p USDTProbe, mp markerProbe) (bool, error) {
	id := a.nextSpec
	if err := a.objs.UsdtSpecs.Put(id, specOf(p)); err != nil {
		return false, fmt.Errorf("store argument spec of %s: %w", p.Name, err)
	}
	a.nextSpec++
	// The kernel raises the semaphore (RefCtrOffset) in every process
	// mapping the file while this link lives, and lowers it when the link
	// is closed, also when the tracer dies.
	l, err := ex.UprobeMulti(nil, a.objs.program(mp.prog), &link.UprobeMultiOptions{
		Addresses: []uint64{p.Offset}, RefCtrOffsets: []uint64{p.RefCtrOffset}, Cookies: []uint64{uint64(id)}})
	switch {
	case err != nil && mp.optional:
		lib.Failed = append(lib.Failed, fmt.Sprintf("%s:%s: %v", p.Provider, p.Name, err))
		return false, nil
	case err != nil:
		return false, fmt.Errorf("USDT %s:%s: %w", p.Provider, p.Name, err)
	}
	a.links = append(a.links, l)
	lib.Probes++
	return true, nil
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

// close detaches every probe; closing a marker link lowers its semaphore.
func (a *attacher) close() error {
	err := closeAll(append(a.takeSampled(sampledClasses), a.links...))
	a.links = nil
	return err
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
