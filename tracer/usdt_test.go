package tracer

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestParseUSDTArg(t *testing.T) {
	for _, c := range []struct {
		in   string
		want USDTArg
	}{
		{"-8@%rdi", USDTArg{Kind: usdtArgReg, Size: 8, Signed: true, RegOff: 112}},
		{"8@%rax", USDTArg{Kind: usdtArgReg, Size: 8, RegOff: 80}},
		{"4@%edx", USDTArg{Kind: usdtArgReg, Size: 4, RegOff: 96}},
		{"-4@%r8d", USDTArg{Kind: usdtArgReg, Size: 4, Signed: true, RegOff: 72}},
		{"-8@-16(%rbp)", USDTArg{Kind: usdtArgRegDeref, Size: 8, Signed: true, RegOff: 32, Val: -16}},
		{"2@(%rsp)", USDTArg{Kind: usdtArgRegDeref, Size: 2, RegOff: 152}},
		{"-4@$-9", USDTArg{Kind: usdtArgConst, Size: 4, Signed: true, Val: -9}},
		{"1@$0x10", USDTArg{Kind: usdtArgConst, Size: 1, Val: 16}},
		// Every general register a compiler may pick for an argument,
		// at its struct pt_regs offset (arch/x86/include/asm/ptrace.h).
		{"-8@%r15", USDTArg{Kind: usdtArgReg, Size: 8, Signed: true, RegOff: 0}},
		{"-8@%r14", USDTArg{Kind: usdtArgReg, Size: 8, Signed: true, RegOff: 8}},
		{"-8@%r13", USDTArg{Kind: usdtArgReg, Size: 8, Signed: true, RegOff: 16}},
		{"-8@%r12", USDTArg{Kind: usdtArgReg, Size: 8, Signed: true, RegOff: 24}},
		{"-8@%rbp", USDTArg{Kind: usdtArgReg, Size: 8, Signed: true, RegOff: 32}},
		{"-8@%rbx", USDTArg{Kind: usdtArgReg, Size: 8, Signed: true, RegOff: 40}},
		{"-8@%r11", USDTArg{Kind: usdtArgReg, Size: 8, Signed: true, RegOff: 48}},
		{"-8@%r10", USDTArg{Kind: usdtArgReg, Size: 8, Signed: true, RegOff: 56}},
		{"-8@%r9", USDTArg{Kind: usdtArgReg, Size: 8, Signed: true, RegOff: 64}},
		{"-8@%rcx", USDTArg{Kind: usdtArgReg, Size: 8, Signed: true, RegOff: 88}},
		{"-8@%rsi", USDTArg{Kind: usdtArgReg, Size: 8, Signed: true, RegOff: 104}},
		{"-4@%r10d", USDTArg{Kind: usdtArgReg, Size: 4, Signed: true, RegOff: 56}},
		{"2@%r15w", USDTArg{Kind: usdtArgReg, Size: 2, RegOff: 0}},
		{"1@%r12b", USDTArg{Kind: usdtArgReg, Size: 1, RegOff: 24}},
		{"4@%ebx", USDTArg{Kind: usdtArgReg, Size: 4, RegOff: 40}},
		{"4@%ebp", USDTArg{Kind: usdtArgReg, Size: 4, RegOff: 32}},
	} {
		got, err := ParseUSDTArg(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseUSDTArg(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "8", "3@%rdi", "x@%rdi", "8@%xmm0", "8@rdi", "8@8(%rdi,%rax,2)", "8@$x", "8@(%zz)", "8@q(%rdi)"} {
		if _, err := ParseUSDTArg(bad); err == nil {
			t.Errorf("ParseUSDTArg(%q): no error", bad)
		}
	}
}

// markerLib builds the marker's probe library, the real file the tracer
// reads in production.
func markerLib(t testing.TB) string {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("the marker's probe notes are x86-64")
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("make", "-s", "-C", filepath.Join(repo, "marker")).CombinedOutput(); err != nil {
		t.Fatalf("make -C marker: %v\n%s", err, out)
	}
	return filepath.Join(repo, "marker", "profilemate_marker", "libprofilemate_marker.so")
}

// TestReadUSDTProbesOfMarker reads the real marker's notes: an older one
// (step_begin with 5 arguments, no sched_step) or one with the scheduler
// probe (step_begin with sched_key, sched_step with 11), and step_end (3).
func TestReadUSDTProbesOfMarker(t *testing.T) {
	path := markerLib(t)
	probes := checkMarkerNotes(t, path, nil)
	want := map[string]int{"step_begin": 5, "forward_end": 1, "sample_end": 1, "output_ready": 1}
	for _, p := range probes {
		switch p.Name {
		case "sched_step":
			want["step_begin"], want["sched_step"] = 6, schedStepArgs
		case "step_end":
			want["step_end"] = 3
		}
	}
	checkMarkerNotes(t, path, want)
}

// TestReadUSDTProbesOfFixtureMarker: the tests' stand-in for the marker has
// its layout, and sched_step's arguments in registers beyond the argument
// registers.
func TestReadUSDTProbesOfFixtureMarker(t *testing.T) {
	probes := checkMarkerNotes(t, fixtureMarker(t, false),
		map[string]int{"step_begin": 6, "forward_end": 1, "sample_end": 1, "output_ready": 1, "sched_step": schedStepArgs})
	checkMarkerNotes(t, fixtureMarker(t, true),
		map[string]int{"step_begin": 5, "forward_end": 1, "sample_end": 1, "output_ready": 1})
	for _, p := range probes {
		if p.Name != "sched_step" {
			continue
		}
		// rbx, rbp, r10-r15, rax, rcx, rdx at their struct pt_regs offsets.
		offs := []uint16{40, 32, 56, 48, 24, 16, 8, 0, 80, 88, 96}
		for i, a := range p.Args {
			if a.Kind != usdtArgReg || a.RegOff != offs[i] {
				t.Errorf("sched_step arg %d: %+v, want the register at pt_regs offset %d (note %q)", i, a, offs[i], p.ArgSpec)
			}
		}
	}
}

// checkMarkerNotes reads the probes of the marker library at path and checks
// what every marker has: provider, semaphores, NOP sites inside their
// functions, signed 8-byte arguments; and, unless want is nil, exactly the
// probes of want with those argument counts.
func checkMarkerNotes(t *testing.T, path string, want map[string]int) []USDTProbe {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	probes, err := ReadUSDTProbes(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	syms, err := f.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	symOff := map[string]uint64{}
	for _, s := range syms {
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && s.Value >= p.Vaddr && s.Value < p.Vaddr+p.Filesz {
				symOff[s.Name] = s.Value - p.Vaddr + p.Off
			}
		}
	}
	if want != nil && len(probes) != len(want) {
		t.Fatalf("%s: %d probes, want %d: %+v", path, len(probes), len(want), probes)
	}
	for _, p := range probes {
		if n, ok := want[p.Name]; p.Provider != MarkerProvider || want != nil && (!ok || len(p.Args) != n) {
			t.Errorf("probe %s:%s with %d args", p.Provider, p.Name, len(p.Args))
		}
		// The semaphore's file offset is the exported semaphore symbol's,
		// and the probe site is a 5-byte NOP inside the probe function.
		if sem := symOff["profilemate_"+p.Name+"_semaphore"]; p.RefCtrOffset == 0 || p.RefCtrOffset != sem {
			t.Errorf("%s: semaphore at file offset %#x, symbol at %#x", p.Name, p.RefCtrOffset, sem)
		}
		if nop := raw[p.Offset : p.Offset+5]; !bytes.Equal(nop, []byte{0x0f, 0x1f, 0x44, 0x00, 0x00}) {
			t.Errorf("%s: probe site %x is not a 5-byte NOP", p.Name, nop)
		}
		if fn := symOff["profilemate_"+p.Name]; p.Offset < fn || p.Offset > fn+64 {
			t.Errorf("%s: probe at %#x, function at %#x", p.Name, p.Offset, fn)
		}
		for _, a := range p.Args {
			if a.Size != 8 || !a.Signed {
				t.Errorf("%s: arg %+v is not a signed 8-byte value", p.Name, a)
			}
		}
	}
	return probes
}

func TestReadUSDTProbesWithoutNotes(t *testing.T) {
	exe, err := os.Executable() // a Go test binary has no stapsdt notes
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	probes, err := ReadUSDTProbes(f)
	if err != nil || len(probes) != 0 {
		t.Fatalf("probes %v, err %v", probes, err)
	}
}

// stapsdtNote builds one note as the assembler lays it out.
func stapsdtNote(pc, base, sem uint64, strs ...string) []byte {
	var desc bytes.Buffer
	binary.Write(&desc, binary.LittleEndian, [3]uint64{pc, base, sem})
	for _, s := range strs {
		desc.WriteString(s)
		desc.WriteByte(0)
	}
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, [3]uint32{8, uint32(desc.Len()), 3})
	b.WriteString("stapsdt\x00")
	b.Write(desc.Bytes())
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	return b.Bytes()
}

func TestNoteParsingRejectsMalformed(t *testing.T) {
	good := stapsdtNote(1, 2, 3, "profilemate", "step_begin", "-8@%rdi")
	if n, rest, err := nextNote(good, binary.LittleEndian); err != nil || len(rest) != 0 || n.name != "stapsdt" {
		t.Fatalf("good note: %+v %v %v", n, rest, err)
	}
	p, base, err := parseStapsdtDesc(good[20:], binary.LittleEndian)
	if err != nil || base != 2 || p.Name != "step_begin" || len(p.Args) != 1 {
		t.Fatalf("good desc: %+v %d %v", p, base, err)
	}
	for name, b := range map[string][]byte{
		"short header":  good[:8],
		"name past end": append([]byte{0xff, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0}, 'x'),
		"desc past end": good[:len(good)-12],
	} {
		if _, _, err := nextNote(b, binary.LittleEndian); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for name, d := range map[string][]byte{
		"short desc":    make([]byte, 10),
		"no strings":    make([]byte, 24),
		"empty name":    stapsdtNote(1, 2, 3, "p", "", "")[20:],
		"bad arg":       stapsdtNote(1, 2, 3, "p", "n", "9@%rdi")[20:],
		"too many args": stapsdtNote(1, 2, 3, "p", "n", strings.TrimSpace(strings.Repeat("8@%rdi ", maxUSDTArgs+1)))[20:],
	} {
		if _, _, err := parseStapsdtDesc(d, binary.LittleEndian); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzReadUSDTProbes(f *testing.F) {
	if raw, err := os.ReadFile(markerLib(f)); err == nil {
		f.Add(raw)
	}
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, b []byte) {
		probes, err := ReadUSDTProbes(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, p := range probes {
			if p.Provider == "" || p.Name == "" || len(p.Args) > maxUSDTArgs {
				t.Fatalf("accepted a bad probe %+v", p)
			}
		}
	})
}

// TestParseStapsdtDescTakesElevenArgs: sched_step's 11 arguments are the
// most a note may have.
func TestParseStapsdtDescTakesElevenArgs(t *testing.T) {
	spec := "-8@%rbx -8@%rbp -8@%r10 -8@%r11 -8@%r12 -8@%r13 -8@%r14 -8@%r15 -8@%rax -8@%rcx -8@%rdx"
	p, _, err := parseStapsdtDesc(stapsdtNote(1, 2, 3, "profilemate", "sched_step", spec)[20:], binary.LittleEndian)
	if err != nil || len(p.Args) != schedStepArgs {
		t.Fatalf("%d args, err %v; want %d", len(p.Args), err, schedStepArgs)
	}
}
