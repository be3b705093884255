package tracer

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf/link"
)

// Library is one probed library file (one inode), wherever it is mapped.
type Library struct {
	Kind     LibKind
	Path     string // as the first process that mapped it names it
	FirstPID int    // that process
	Probes   int    // probes attached
	Missing  []string // probed functions the library does not export
	Failed   []string // functions it exports that the kernel would not probe
}

type libKey struct {
	dev   string
	inode uint64
}

// attacher attaches the programs once per library inode: a uprobe on a file
// fires in every process that maps it, and the programs filter on the traced
// processes themselves.
type attacher struct {
	objs     *profilemateObjects
	proc     Proc
	links    []link.Link
	libs     map[libKey]*Library
	failed   map[libKey]error
	nextSpec uint32
}

func newAttacher(objs *profilemateObjects, proc Proc) *attacher {
	return &attacher{objs: objs, proc: proc, libs: map[libKey]*Library{}, failed: map[libKey]error{}}
}

// attach probes the library behind m if it is one the tracer knows and has
// not probed yet. It returns the library when this call attached it.
func (a *attacher) attach(pid int, m Mapping) (*Library, error) {
	kind := Classify(m.Path)
	key := libKey{m.Dev, m.Inode}
	if kind == LibNone || a.libs[key] != nil || a.failed[key] != nil {
		return nil, nil
	}
	lib := &Library{Kind: kind, Path: m.Path, FirstPID: pid}
	host := a.proc.HostPath(pid, m.Path)
	var err error
	switch kind {
	case LibMarker:
		err = a.attachMarker(lib, host)
	case LibRuntime:
		err = a.attachSymbols(lib, host, runtimeProbes)
	case LibDriver:
		err = a.attachSymbols(lib, host, driverProbes)
	}
	if err != nil {
		a.failed[key] = err
		return nil, fmt.Errorf("%s %s (pid %d): %w", kind, m.Path, pid, err)
	}
	a.libs[key] = lib
	return lib, nil
}

func (a *attacher) attachSymbols(lib *Library, path string, sets []probeSet) error {
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return err
	}
	for _, set := range sets {
		for _, sym := range set.symbols {
			l, err := ex.Uprobe(sym, a.objs.program(set.prog), nil)
			if errors.Is(err, link.ErrNoSymbol) {
				lib.Missing = append(lib.Missing, sym)
				continue
			}
			if err != nil {
				// The kernel refuses some first instructions (ENOTSUPP):
				// the other functions are still worth probing.
				lib.Failed = append(lib.Failed, fmt.Sprintf("%s: %v", sym, err))
				continue
			}
			a.links = append(a.links, l)
			lib.Probes++
			if set.ret == "" {
				continue
			}
			if l, err = ex.Uretprobe(sym, a.objs.program(set.ret), nil); err != nil {
				lib.Failed = append(lib.Failed, fmt.Sprintf("%s (return): %v", sym, err))
				continue
			}
			a.links = append(a.links, l)
			lib.Probes++
		}
	}
	if lib.Probes == 0 {
		return fmt.Errorf("no function could be probed (missing: %v; failed: %v)", lib.Missing, lib.Failed)
	}
	return nil
}

func (a *attacher) attachMarker(lib *Library, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	probes, err := ReadUSDTProbes(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("read USDT notes: %w", err)
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return err
	}
	found := map[string]bool{}
	for _, p := range probes {
		prog, ok := markerProbes[p.Name]
		if p.Provider != MarkerProvider || !ok {
			continue
		}
		id := a.nextSpec
		if err := a.objs.UsdtSpecs.Put(id, specOf(p)); err != nil {
			return fmt.Errorf("store argument spec of %s: %w", p.Name, err)
		}
		a.nextSpec++
		// The kernel raises the semaphore (RefCtrOffset) in every process
		// mapping the file while this link lives, and lowers it when the
		// link is closed, also when the tracer dies.
		l, err := ex.Uprobe("", a.objs.program(prog), &link.UprobeOptions{
			Address: p.Offset, RefCtrOffset: p.RefCtrOffset, Cookie: uint64(id)})
		if err != nil {
			return fmt.Errorf("USDT %s:%s: %w", p.Provider, p.Name, err)
		}
		a.links = append(a.links, l)
		lib.Probes++
		found[p.Name] = true
	}
	for name := range markerProbes {
		if !found[name] {
			lib.Missing = append(lib.Missing, MarkerProvider+":"+name)
		}
	}
	if lib.Probes == 0 {
		return fmt.Errorf("no %s probes in its notes", MarkerProvider)
	}
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

// libraries returns the probed libraries.
func (a *attacher) libraries() []*Library {
	out := make([]*Library, 0, len(a.libs))
	for _, l := range a.libs {
		out = append(out, l)
	}
	return out
}

// close detaches every probe, newest first; closing a marker link lowers its
// semaphore.
func (a *attacher) close() error {
	var errs []error
	for i := len(a.links) - 1; i >= 0; i-- {
		errs = append(errs, a.links[i].Close())
	}
	a.links = nil
	return errors.Join(errs...)
}
