package tracer

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// USDTProbe is one probe site read from an ELF file's .note.stapsdt.
type USDTProbe struct {
	Provider, Name string
	// Offset is the file offset of the probe's NOP: what a uprobe attaches to.
	Offset uint64
	// RefCtrOffset is the file offset of the semaphore (0: none). The kernel
	// raises it in every process that maps the file while the probe is attached.
	RefCtrOffset uint64
	Args         []USDTArg
	ArgSpec      string // as written in the note, for messages
}

// USDTArg says where one probe argument lives when the probe fires.
type USDTArg struct {
	Kind   uint8 // usdtArgConst, usdtArgReg, usdtArgRegDeref
	Size   uint8 // bytes: 1, 2, 4, 8
	Signed bool
	RegOff uint16 // offset of the register in struct pt_regs
	Val    int64  // constant, or displacement for a dereference
}

// Mirrors USDT_ARG_* in bpf/records.h.
const (
	usdtArgConst    = 0
	usdtArgReg      = 1
	usdtArgRegDeref = 2
)

// Bounds on what a note may claim; a note beyond them is malformed.
const (
	maxNoteStrings = 4096
	maxNoteSection = 1 << 20
	maxProbes      = 4096
	maxUSDTArgs    = 11 // USDT_MAX_ARGS in bpf/records.h: sched_step's
)

// x86-64 struct pt_regs offsets of the 64-bit registers (the kernel's layout,
// which the uprobe context is), keyed by every name an argument spec may use.
var x86RegOff = func() map[string]uint16 {
	order := []string{"r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10",
		"r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp"}
	alias := map[string][]string{
		"rax": {"eax", "ax", "al"}, "rbx": {"ebx", "bx", "bl"}, "rcx": {"ecx", "cx", "cl"},
		"rdx": {"edx", "dx", "dl"}, "rsi": {"esi", "si", "sil"}, "rdi": {"edi", "di", "dil"},
		"rbp": {"ebp", "bp", "bpl"}, "rsp": {"esp", "sp", "spl"},
	}
	m := map[string]uint16{}
	for i, r := range order {
		m[r] = uint16(8 * i)
		for _, a := range alias[r] {
			m[a] = uint16(8 * i)
		}
		if strings.HasPrefix(r, "r") && len(r) <= 3 && r[1] >= '0' && r[1] <= '9' {
			for _, suf := range []string{"d", "w", "b"} {
				m[r+suf] = uint16(8 * i)
			}
		}
	}
	return m
}()

// ParseUSDTArg parses one x86-64 USDT argument spec such as "-8@%rdi",
// "4@-20(%rbp)", "8@(%rax)" or "-4@$-9".
func ParseUSDTArg(s string) (USDTArg, error) {
	sz, loc, ok := strings.Cut(s, "@")
	if !ok {
		return USDTArg{}, fmt.Errorf("usdt arg %q: no '@'", s)
	}
	n, err := strconv.Atoi(sz)
	if err != nil {
		return USDTArg{}, fmt.Errorf("usdt arg %q: size: %w", s, err)
	}
	a := USDTArg{Signed: n < 0}
	if n < 0 {
		n = -n
	}
	switch n {
	case 1, 2, 4, 8:
		a.Size = uint8(n)
	default:
		return USDTArg{}, fmt.Errorf("usdt arg %q: size %d not 1, 2, 4 or 8", s, n)
	}
	switch {
	case strings.HasPrefix(loc, "$"):
		v, err := strconv.ParseInt(loc[1:], 0, 64)
		if err != nil {
			return USDTArg{}, fmt.Errorf("usdt arg %q: constant: %w", s, err)
		}
		a.Kind, a.Val = usdtArgConst, v
	case strings.HasPrefix(loc, "%"):
		off, ok := x86RegOff[loc[1:]]
		if !ok {
			return USDTArg{}, fmt.Errorf("usdt arg %q: unknown register", s)
		}
		a.Kind, a.RegOff = usdtArgReg, off
	case strings.HasSuffix(loc, ")"):
		disp, reg, ok := strings.Cut(strings.TrimSuffix(loc, ")"), "(")
		if !ok || !strings.HasPrefix(reg, "%") {
			return USDTArg{}, fmt.Errorf("usdt arg %q: unsupported memory operand", s)
		}
		off, ok := x86RegOff[reg[1:]]
		if !ok {
			return USDTArg{}, fmt.Errorf("usdt arg %q: unknown register", s)
		}
		var v int64
		if disp != "" {
			if v, err = strconv.ParseInt(disp, 0, 64); err != nil {
				return USDTArg{}, fmt.Errorf("usdt arg %q: displacement: %w", s, err)
			}
		}
		a.Kind, a.RegOff, a.Val = usdtArgRegDeref, off, v
	default:
		return USDTArg{}, fmt.Errorf("usdt arg %q: unsupported operand", s)
	}
	return a, nil
}

// ReadUSDTProbes returns the USDT probes described in an ELF file's
// .note.stapsdt section, with addresses turned into file offsets. A file
// without the section has no probes and no error. Everything read from the
// file is bounded: it belongs to another process and may be malformed.
func ReadUSDTProbes(r io.ReaderAt) (probes []USDTProbe, err error) {
	defer func() {
		// debug/elf can panic on some corrupt inputs; a bad file is an error.
		if p := recover(); p != nil {
			probes, err = nil, fmt.Errorf("malformed ELF: %v", p)
		}
	}()
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("not an x86-64 ELF file (%v, %v)", f.Class, f.Machine)
	}
	sec := f.Section(".note.stapsdt")
	if sec == nil {
		return nil, nil
	}
	if sec.Size > maxNoteSection {
		return nil, fmt.Errorf(".note.stapsdt of %d bytes: more than %d", sec.Size, maxNoteSection)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf(".note.stapsdt: %w", err)
	}
	// Prelink may have moved the file; .stapsdt.base records where the notes
	// thought the base was, the section where it is now.
	var baseAdj int64
	var haveBase bool
	var baseAddr uint64
	if b := f.Section(".stapsdt.base"); b != nil {
		haveBase, baseAddr = true, b.Addr
	}
	for len(data) > 0 {
		if len(probes) >= maxProbes {
			return nil, fmt.Errorf(".note.stapsdt: more than %d probes", maxProbes)
		}
		var n note
		n, data, err = nextNote(data, f.ByteOrder)
		if err != nil {
			return nil, err
		}
		if n.name != "stapsdt" || n.typ != 3 {
			continue
		}
		p, base, err := parseStapsdtDesc(n.desc, f.ByteOrder)
		if err != nil {
			return nil, err
		}
		if haveBase && base != 0 {
			baseAdj = int64(baseAddr) - int64(base)
		}
		pc := uint64(int64(p.Offset) + baseAdj)
		if p.Offset, err = fileOffset(f, pc, true); err != nil {
			return nil, fmt.Errorf("probe %s:%s: %w", p.Provider, p.Name, err)
		}
		if p.RefCtrOffset != 0 {
			sem := uint64(int64(p.RefCtrOffset) + baseAdj)
			if p.RefCtrOffset, err = fileOffset(f, sem, false); err != nil {
				return nil, fmt.Errorf("probe %s:%s semaphore: %w", p.Provider, p.Name, err)
			}
		}
		probes = append(probes, p)
	}
	return probes, nil
}

type note struct {
	name string
	typ  uint32
	desc []byte
}

func align4(n uint32) uint64 { return (uint64(n) + 3) &^ 3 }

func nextNote(b []byte, bo binary.ByteOrder) (note, []byte, error) {
	if len(b) < 12 {
		return note{}, nil, errors.New(".note.stapsdt: truncated note header")
	}
	namesz, descsz, typ := bo.Uint32(b), bo.Uint32(b[4:]), bo.Uint32(b[8:])
	b = b[12:]
	if align4(namesz) > uint64(len(b)) {
		return note{}, nil, errors.New(".note.stapsdt: note name past the section")
	}
	name := string(bytes.TrimRight(b[:namesz], "\x00"))
	b = b[align4(namesz):]
	if uint64(descsz) > uint64(len(b)) {
		return note{}, nil, errors.New(".note.stapsdt: note desc past the section")
	}
	n := note{name, typ, b[:descsz]}
	// The last note's padding may be cut off by the section's end.
	return n, b[min(align4(descsz), uint64(len(b))):], nil
}

// parseStapsdtDesc reads a stapsdt note body: pc, base, semaphore (each an
// address), then provider, name and argument strings, NUL-terminated.
func parseStapsdtDesc(d []byte, bo binary.ByteOrder) (USDTProbe, uint64, error) {
	if len(d) < 24 {
		return USDTProbe{}, 0, errors.New(".note.stapsdt: desc shorter than 3 addresses")
	}
	p := USDTProbe{Offset: bo.Uint64(d), RefCtrOffset: bo.Uint64(d[16:])}
	base := bo.Uint64(d[8:])
	strs := bytes.SplitN(d[24:], []byte{0}, 4)
	if len(strs) < 4 {
		return USDTProbe{}, 0, errors.New(".note.stapsdt: desc lacks provider, name or args")
	}
	p.Provider, p.Name, p.ArgSpec = string(strs[0]), string(strs[1]), string(strs[2])
	if p.Provider == "" || p.Name == "" || len(p.ArgSpec) > maxNoteStrings {
		return USDTProbe{}, 0, errors.New(".note.stapsdt: empty provider or name, or args too long")
	}
	for _, s := range strings.Fields(p.ArgSpec) {
		if len(p.Args) == maxUSDTArgs {
			return USDTProbe{}, 0, fmt.Errorf("probe %s:%s: more than %d args", p.Provider, p.Name, maxUSDTArgs)
		}
		a, err := ParseUSDTArg(s)
		if err != nil {
			return USDTProbe{}, 0, fmt.Errorf("probe %s:%s: %w", p.Provider, p.Name, err)
		}
		p.Args = append(p.Args, a)
	}
	return p, base, nil
}

// fileOffset maps a virtual address to its file offset through the PT_LOAD
// segment that holds it (an executable one for code, any for data).
func fileOffset(f *elf.File, addr uint64, exec bool) (uint64, error) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || (exec && p.Flags&elf.PF_X == 0) {
			continue
		}
		if addr >= p.Vaddr && addr < p.Vaddr+p.Filesz {
			return addr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x is in no loadable segment", addr)
}
