package tracer

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// BenchmarkProbeCostByFirstInstruction prints what a uprobe with an empty
// program costs a call, by the probed function's first instruction, against
// the same calls unprobed: the kernel emulates a push or a jmp (one trap)
// and single-steps the others (a second trap, several µs in a VM). The
// endbr64 function is also probed where the tracer probes it (symbolOffsets:
// past the endbr64, on the push). Issue 11 found the simulated runtime
// single-stepped where the real one is emulated (gpu/results/README.md).
func BenchmarkProbeCostByFirstInstruction(b *testing.B) {
	requireRoot(b)
	bin := filepath.Join(b.TempDir(), "firstinsn")
	if out, err := exec.Command("gcc", "-O1", "-rdynamic", "-o", bin, "testdata/firstinsn.c").CombinedOutput(); err != nil {
		b.Fatalf("build firstinsn: %v\n%s", err, out)
	}
	names := []string{"fi_push", "fi_jmp", "fi_endbr64", "fi_mov", "fi_sub"}
	prog := emptyProgram(b)
	ex, err := link.OpenExecutable(bin)
	if err != nil {
		b.Fatal(err)
	}
	offsets, err := symbolOffsets(bin)
	if err != nil {
		b.Fatal(err)
	}
	const n = 100000
	// run calls each function n times, the symbols (or with none, the
	// addresses of opts) probed, opts nil: none, and returns the ns per
	// call of each.
	run := func(symbols []string, opts *link.UprobeMultiOptions) map[string]float64 {
		var attach func(pid int) func()
		if opts != nil {
			attach = func(pid int) func() {
				opts.PID = uint32(pid)
				l, err := ex.UprobeMulti(symbols, prog, opts)
				if err != nil {
					b.Fatal(err)
				}
				return func() { l.Close() }
			}
		}
		return timedCalls(b, attach, bin, fmt.Sprint(n))
	}
	for i := 0; i < b.N; i++ {
		base := run(nil, nil)
		raw := run(names, &link.UprobeMultiOptions{})
		// Only the endbr64 function's probe moves (onto its push).
		tracerWay := run(nil, &link.UprobeMultiOptions{Addresses: []uint64{offsets["fi_endbr64"]}})
		for _, name := range names {
			b.Logf("%-10s +%.2f us per probed call (%.0f ns unprobed)", name, (raw[name]-base[name])/1000, base[name])
		}
		b.Logf("fi_endbr64 probed past the endbr64, as the tracer does: +%.2f us per call",
			(tracerWay["fi_endbr64"]-base["fi_endbr64"])/1000)
	}
}

// timedCalls runs bin with args, a program that prints "ready", waits for a
// line on stdin, then times its calls and prints "NAME NS" per kind of call
// (ns per call). attach, unless nil, probes the process before that line
// and returns what detaches the probes once the program is done.
func timedCalls(b *testing.B, attach func(pid int) (detach func()), bin string, args ...string) map[string]float64 {
	b.Helper()
	cmd := exec.Command(bin, args...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		b.Fatalf("%s said %q", filepath.Base(bin), lines.Text())
	}
	if attach != nil {
		defer attach(cmd.Process.Pid)()
	}
	fmt.Fprintln(stdin, "go")
	got := map[string]float64{}
	for lines.Scan() {
		var name string
		var ns float64
		if _, err := fmt.Sscanf(lines.Text(), "%s %f", &name, &ns); err != nil {
			b.Fatalf("%s said %q", filepath.Base(bin), lines.Text())
		}
		got[name] = ns
	}
	return got
}

// emptyProgram loads a uprobe program that does nothing, closed with the
// benchmark or test: what the kernel's uprobe path costs by itself.
func emptyProgram(b testing.TB) *ebpf.Program {
	b.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.Kprobe, AttachType: ebpf.AttachTraceUprobeMulti, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { prog.Close() })
	return prog
}
