package tracer

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// TestReusedPIDIsTracedAsNew: a traced process exits and a new process of
// the traced tree later gets its PID (PIDs wrap at pid_max, 32768 on many
// hosts). The fork hook gives the new one a fresh entry only where none is,
// so the old one's is gone with it, and the tracer takes the new process as
// a new one, its own title and its own counts, keeping the old one's for
// the report. The processes are a fixture /proc; the PID is above any the
// kernel gives, so no program runs for it.
func TestReusedPIDIsTracedAsNew(t *testing.T) {
	requireRoot(t)
	const pid = 5_000_000 // above PID_MAX_LIMIT
	root := t.TempDir()
	dir := filepath.Join(root, strconv.Itoa(pid))
	spawn := func(title string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, s := range map[string]string{"stat": strconv.Itoa(pid) + " (w) S 1 1", "cmdline": title, "maps": ""} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	spawn("old")
	tr := startTracer(t, Options{PID: pid, Proc: Proc{Root: root}, Logf: t.Logf})
	// The old process's counts, and its arming by the tracer.
	st := profilemateProcState{Launches: 7, Armed: 1}
	if err := tr.objs.Procs.Put(uint32(pid), &st); err != nil {
		t.Fatal(err)
	}
	if err := tr.objs.ArmedProcs.Put(uint32(pid), uint32(1)); err != nil {
		t.Fatal(err)
	}

	// It exits; the tracer's next look at the maps sees it.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tr.scan(now.Add(time.Second))
	if ps := tr.Processes(); len(ps) != 1 || !ps[0].Exited {
		t.Fatalf("processes %+v, want the old one, exited", ps)
	}
	var gen uint32
	if err := tr.objs.ArmedProcs.Lookup(uint32(pid), &gen); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("the exited process's arming is kept (%v): a new process with its PID would be armed at once", err)
	}

	// A child of a traced process takes the PID: the fork hook adds it
	// (on_fork: BPF_NOEXIST).
	spawn("new")
	var zero profilemateProcState
	if err := tr.objs.Procs.Update(uint32(pid), &zero, ebpf.UpdateNoExist); err != nil {
		t.Errorf("the fork hook cannot add the new process: %v", err)
	}
	tr.scan(now.Add(2 * time.Second))

	ps := tr.Processes()
	if len(ps) != 2 {
		t.Fatalf("processes %+v, want the old one, exited, and the new one", ps)
	}
	var old, cur ProcInfo
	for _, p := range ps {
		if p.Exited {
			old = p
		} else {
			cur = p
		}
	}
	if old.Title != "old" || cur.Title != "new" || cur.PID != pid {
		t.Errorf("processes %+v, want %d old (exited) and %d new (traced)", ps, pid, pid)
	}
	tr.mu.Lock()
	p := tr.procs[pid]
	tr.mu.Unlock()
	if p == nil || p.Exited || p.Title != "new" {
		t.Errorf("pid %d is traced as %+v, want the new process", pid, p)
	}
	launches := map[string]uint64{}
	for _, a := range tr.Activity() {
		launches[a.Process.Title] = a.Launches
	}
	if launches["old"] != 7 || launches["new"] != 0 || len(launches) != 2 {
		t.Errorf("launches by process %v, want old 7 and new 0", launches)
	}
}
