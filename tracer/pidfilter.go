package tracer

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// ErrPIDFilterByThread is returned by Start, and by CheckPIDFilter, on a
// kernel whose uprobe_multi links filtered by process run their program for
// the process's main thread only.
var ErrPIDFilterByThread = errors.New("this kernel runs a uprobe_multi link filtered by process for its main thread only " +
	"(Linux before 6.10 without the fix 46ba0e49b642): the tracer would miss every other thread of the server, " +
	"vLLM's output thread among them; upgrade the kernel")

// pidFilterTarget is the function the check probes: the tracer's own, so
// that the check needs no other process or library.
//
//go:noinline
func pidFilterTarget(x int) int { return x*3 + 1 }

// checkPIDFilter probes pidFilterTarget with a link filtered to this process
// and calls it from a thread other than the main one: the tracer creates
// each link for one traced process (no other process on the host gets its
// breakpoints), which is right only where such a link fires in every thread
// of the process. It returns ErrPIDFilterByThread where nothing fired, and
// another error where the check itself could not be made (this program's
// file not found in its maps, a probe refused on its code).
func checkPIDFilter(objs *profilemateObjects) error {
	hits, err := pidFilterHits(objs)
	switch {
	case err != nil:
		return fmt.Errorf("check the kernel's uprobe_multi process filter: %w", err)
	case hits == 0:
		return ErrPIDFilterByThread
	}
	return nil
}

// pidFilterHits is how many times the check's link fired for the one call
// made on another thread.
func pidFilterHits(objs *profilemateObjects) (uint64, error) {
	off, err := selfFileOffset(reflect.ValueOf(pidFilterTarget).Pointer())
	if err != nil {
		return 0, err
	}
	ex, err := link.OpenExecutable("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	if err := objs.PidFilterHits.Set(uint64(0)); err != nil {
		return 0, err
	}
	l, err := ex.UprobeMulti(nil, objs.PidFilterProbe, &link.UprobeMultiOptions{
		Addresses: []uint64{off}, PID: uint32(os.Getpid())})
	if err != nil {
		return 0, err
	}
	defer l.Close()
	if err := onOtherThread(func() { pidFilterTarget(1) }); err != nil {
		return 0, err
	}
	var hits uint64
	err = objs.PidFilterHits.Get(&hits)
	return hits, err
}

// onOtherThread runs f on an OS thread of this process that is not its main
// one. A goroutine locked to the main thread keeps it taken while the next
// one tries, so that one runs elsewhere.
func onOtherThread(f func()) error {
	release := make(chan struct{})
	defer close(release)
	for try := 0; try < 4; try++ {
		ran := make(chan bool)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if unix.Gettid() == os.Getpid() {
				ran <- false
				<-release
				return
			}
			f()
			ran <- true
		}()
		if <-ran {
			return nil
		}
	}
	return errors.New("no thread but the main one to call from")
}

// selfFileOffset is the offset in this program's file of the code at addr,
// as /proc/self/maps maps it.
func selfFileOffset(addr uintptr) (uint64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	maps, err := ParseMaps(f)
	if err != nil {
		return 0, err
	}
	for _, m := range maps {
		if m.Path == exe && uint64(addr) >= m.Start && uint64(addr) < m.End {
			return uint64(addr) - m.Start + m.Offset, nil
		}
	}
	return 0, fmt.Errorf("%#x is in no mapping of %s", addr, exe)
}

// CheckPIDFilter loads the programs and runs the check Start runs: nil when
// a link filtered to one process fires in all its threads.
func CheckPIDFilter() error {
	objs, err := loadObjects()
	if err != nil {
		return err
	}
	defer objs.Close()
	return checkPIDFilter(objs)
}
