package tracer

import "testing"

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
