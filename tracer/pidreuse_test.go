package tracer

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// fixtureProc writes process pid into the fixture /proc at root: a stat
// line with its parent and start time (the 22nd field, after state, ppid
// and 17 others), its title as cmdline, and no maps.
func fixtureProc(t *testing.T, root string, pid, ppid int, title string, start uint64) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stat := strconv.Itoa(pid) + " (w) S " + strconv.Itoa(ppid) + strings.Repeat(" 0", 17) + " " +
		strconv.FormatUint(start, 10)
	for name, s := range map[string]string{"stat": stat, "cmdline": title, "maps": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// launchesByTitle is each traced process's launch total, by its title.
func launchesByTitle(tr *Tracer) map[string]uint64 {
	launches := map[string]uint64{}
	for _, a := range tr.Activity() {
		launches[a.Process.Title] = a.Launches
	}
	return launches
}

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
	fixtureProc(t, root, pid, 1, "old", 200)
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
	if err := os.RemoveAll(filepath.Join(root, strconv.Itoa(pid))); err != nil {
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
	fixtureProc(t, root, pid, 1, "new", 300)
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
	if launches := launchesByTitle(tr); launches["old"] != 7 || launches["new"] != 0 || len(launches) != 2 {
		t.Errorf("launches by process %v, want old 7 and new 0", launches)
	}
}

// TestPIDReusedBeforeTheExitIsSeen: a traced process exits and another
// takes its PID before the tracer's next look, so /proc shows the PID alive
// all along. Its start time tells the two apart: the old one is kept as
// exited with its counts, and the new one is traced as new where its parent
// is traced, and left alone (its entry gone, so no program counts it)
// where it is not. The processes are a fixture /proc, their PIDs above any
// the kernel gives.
func TestPIDReusedBeforeTheExitIsSeen(t *testing.T) {
	requireRoot(t)
	const parent, child = 5_000_000, 5_000_001
	for _, c := range []struct {
		name    string
		ppid    int
		adopted bool
	}{
		{"child of the tree", parent, true},
		{"outside the tree", 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			fixtureProc(t, root, parent, 1, "server", 100)
			fixtureProc(t, root, child, parent, "old", 200)
			tr := startTracer(t, Options{PID: parent, Proc: Proc{Root: root}, Logf: t.Logf})
			if err := tr.objs.Procs.Put(uint32(child), &profilemateProcState{Launches: 7}); err != nil {
				t.Fatal(err)
			}

			// The child exits and a new process takes its PID at once.
			fixtureProc(t, root, child, c.ppid, "new", 300)
			tr.scan(time.Now().Add(time.Second))

			byTitle := map[string]ProcInfo{}
			for _, p := range tr.Processes() {
				byTitle[p.Title] = p
			}
			if old, ok := byTitle["old"]; !ok || !old.Exited {
				t.Errorf("processes %+v, want the old child kept, exited", byTitle)
			}
			if launches := launchesByTitle(tr); launches["old"] != 7 || launches["new"] != 0 {
				t.Errorf("launches by process %v, want old 7 and new 0", launches)
			}
			var st profilemateProcState
			traced := tr.objs.Procs.Lookup(uint32(child), &st) == nil
			if cur, ok := byTitle["new"]; ok != c.adopted || ok && (cur.Exited || cur.PID != child) || traced != c.adopted {
				t.Errorf("new process %+v (listed %v, in the programs' map %v), want traced: %v", cur, ok, traced, c.adopted)
			}
		})
	}
}
