package tracer

import (
	"reflect"
	"testing"
	"unsafe"
)

// TestPIDFilterCheckCountsOtherThreads: the start-up check's link, filtered
// to this process, fires for a call on another of its threads (this
// kernel, 6.18, has the fix), and not for a call before it is attached or
// after it is closed.
func TestPIDFilterCheckCountsOtherThreads(t *testing.T) {
	requireRoot(t)
	objs, err := loadObjects()
	if err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	if err := checkPIDFilter(objs); err != nil {
		t.Fatalf("check on this kernel: %v", err)
	}
	var hits uint64
	if err := objs.PidFilterHits.Get(&hits); err != nil {
		t.Fatal(err)
	}
	pidFilterTarget(2) // the link is closed: not counted
	var after uint64
	if err := objs.PidFilterHits.Get(&after); err != nil {
		t.Fatal(err)
	}
	if hits != 1 || after != 1 {
		t.Errorf("hits %d during the check and %d after it, want 1 and 1: the call on the other thread alone", hits, after)
	}
}

// TestSelfFileOffsetOnlyForThisProgramsCode: the check finds its function
// in this program's file, and an address outside it (a heap address) is an
// error, which Start logs instead of stopping.
func TestSelfFileOffsetOnlyForThisProgramsCode(t *testing.T) {
	if off, err := selfFileOffset(reflect.ValueOf(pidFilterTarget).Pointer()); err != nil || off == 0 {
		t.Errorf("pidFilterTarget: offset %#x, %v; want its offset in the file", off, err)
	}
	heap := new([64]byte)
	if _, err := selfFileOffset(uintptr(unsafe.Pointer(heap))); err == nil {
		t.Error("a heap address: no error, want one")
	}
}
