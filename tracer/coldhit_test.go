package tracer

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf/link"
)

// BenchmarkColdHitCost prints what the tracer's probes add to one driver
// call of each class (kernel launch, graph launch, synchronization) when the
// caches are overwritten before every call, as they are inside a running
// server between two hits, against the same calls with warm caches; and how
// much of that the kernel's uprobe path costs by itself, with empty programs
// on the same addresses. On a real vLLM the servers' extra kernel time came
// to about 4.5 µs per isolated hit against 0.7-1 µs per hit in a tight loop
// (gpu/results/README.md): that gap is the caches, and most of it is the
// trap path, not the programs.
func BenchmarkColdHitCost(b *testing.B) {
	requireRoot(b)
	repo, _ := filepath.Abs("..")
	drvDir := filepath.Join(buildSimLibs(b), "sim", "driver")
	bin := filepath.Join(b.TempDir(), "coldhit")
	cmd := exec.Command("gcc", "-O2", "-o", bin, "testdata/coldhit.c",
		"-I"+filepath.Join(repo, "simserver", "csrc"),
		"-L"+drvDir, "-l:libcuda.so.1", "-Wl,-rpath,"+drvDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build coldhit: %v\n%s", err, out)
	}
	driver := filepath.Join(drvDir, "libcuda.so.1")
	// The driver's functions, probed by the tracer as in a server; and
	// two sites of the coldhit program itself, probed by empty programs
	// only: the marker's kind of USDT site (a 5-byte NOP) and a 1-byte NOP.
	classes := []struct {
		name, what string
		tracer     bool
	}{
		{"launch", "one entry probe", true},
		{"graph", "one entry probe", true},
		{"sync", "an entry and a return probe", true},
		{"nop5", "a 5-byte NOP probe site", false},
		{"nop1", "a 1-byte NOP probe site", false},
	}
	empty := emptyProgram(b)
	ex, err := link.OpenExecutable(driver)
	if err != nil {
		b.Fatal(err)
	}
	self, err := link.OpenExecutable(bin)
	if err != nil {
		b.Fatal(err)
	}
	offsets, err := symbolOffsets(driver)
	if err != nil {
		b.Fatal(err)
	}
	// Where the tracer probes each function (past an endbr64).
	at := func(symbols ...string) []uint64 {
		var addrs []uint64
		for _, s := range symbols {
			addrs = append(addrs, offsets[s])
		}
		return addrs
	}

	// run makes n calls of each class with evictKiB overwritten before
	// each, probed by attach (none when nil), and returns ns per call.
	run := func(evictKiB, n int, attach func(pid int) (detach func())) map[string]float64 {
		got := timedCalls(b, attach, bin, fmt.Sprint(evictKiB), fmt.Sprint(n))
		if len(got) != len(classes) {
			b.Fatalf("coldhit printed %d classes, want %d", len(got), len(classes))
		}
		return got
	}
	tracer := func(pid int) func() {
		tr, err := Start(Options{PID: pid})
		if err != nil {
			b.Fatal(err)
		}
		return func() { tr.Close() }
	}
	emptyPrograms := func(pid int) func() {
		opts := &link.UprobeMultiOptions{PID: uint32(pid), Addresses: at("cuLaunchKernelEx", "cuGraphLaunch", "cuEventSynchronize")}
		entry, err := ex.UprobeMulti(nil, empty, opts)
		if err != nil {
			b.Fatal(err)
		}
		ret, err := ex.UretprobeMulti(nil, empty, &link.UprobeMultiOptions{PID: uint32(pid), Addresses: at("cuEventSynchronize")})
		if err != nil {
			b.Fatal(err)
		}
		sites, err := self.UprobeMulti([]string{"ch_nop5", "ch_nop1"}, empty, &link.UprobeMultiOptions{PID: uint32(pid)})
		if err != nil {
			b.Fatal(err)
		}
		return func() { entry.Close(); ret.Close(); sites.Close() }
	}

	for i := 0; i < b.N; i++ {
		for _, c := range []struct {
			label    string
			evictKiB int
			n        int
		}{
			{"warm caches", 0, 200000},
			{"caches overwritten (4 MiB) before each call", 4096, 4000},
		} {
			before := run(c.evictKiB, c.n, nil)
			traced := run(c.evictKiB, c.n, tracer)
			bare := run(c.evictKiB, c.n, emptyPrograms)
			after := run(c.evictKiB, c.n, nil)
			for _, cl := range classes {
				base := (before[cl.name] + after[cl.name]) / 2
				if !cl.tracer {
					b.Logf("cold hits: %-6s (%s), %s: %.0f ns unprobed; an empty program +%.2f us",
						cl.name, cl.what, c.label, base, (bare[cl.name]-base)/1000)
					continue
				}
				b.Logf("cold hits: %-6s (%s), %s: %.0f ns unprobed; tracer +%.2f us, of which the uprobe path (empty programs) +%.2f us",
					cl.name, cl.what, c.label, base, (traced[cl.name]-base)/1000, (bare[cl.name]-base)/1000)
			}
		}
	}
}
