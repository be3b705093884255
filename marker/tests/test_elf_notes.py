"""The probes as a USDT consumer (the Go tracer, bpftrace) reads them from
the built library's ELF file."""
import re
import shutil
import subprocess

import pytest

from elf import SHF_ALLOC, SHF_WRITE, SHT_PROGBITS, Elf

EXPECTED_ARGS = {"step_begin": 6, "forward_end": 1, "sample_end": 1, "output_ready": 1,
                 "sched_step": 11, "step_end": 3}
NOP5 = bytes.fromhex("0f1f440000")
#: Signed 8-byte register argument, e.g. -8@%rdi.
REGISTER_ARG = re.compile(r"-8@%r[a-z0-9]+$")


@pytest.fixture(scope="module")
def elf(library):
    return Elf(library)


def test_one_note_per_probe(elf):
    notes = elf.stapsdt_notes()
    assert sorted(n.name for n in notes) == sorted(EXPECTED_ARGS)
    assert {n.provider for n in notes} == {"profilemate"}


def test_probe_sites_are_five_byte_nops_inside_their_functions(elf):
    symbols = elf.dynamic_symbols()
    for note in elf.stapsdt_notes():
        assert elf.read(note.pc, 5) == NOP5, note.name
        start, size = symbols["profilemate_" + note.name]
        assert start <= note.pc and note.pc + 5 <= start + size, note.name


def test_base_is_the_stapsdt_base_section(elf):
    base = elf.section(".stapsdt.base")
    assert {n.base for n in elf.stapsdt_notes()} == {base.addr}


def test_semaphores_are_exported_file_backed_and_zero(elf):
    symbols = elf.dynamic_symbols()
    for note in elf.stapsdt_notes():
        address, size = symbols["profilemate_%s_semaphore" % note.name]
        assert note.semaphore == address and size == 2, note.name
        section = elf.section_at(address)
        assert section.name == ".probes"
        # PROGBITS (not NOBITS like .bss): the kernel's ref_ctr_offset is a
        # file offset and must land on file contents.
        assert section.type == SHT_PROGBITS
        assert section.flags & (SHF_ALLOC | SHF_WRITE) == SHF_ALLOC | SHF_WRITE
        assert elf.read(address, 2) == b"\0\0"


def test_argument_specs(elf):
    for note in elf.stapsdt_notes():
        args = note.args.split()
        assert len(args) == EXPECTED_ARGS[note.name], note
        assert all(REGISTER_ARG.match(a) for a in args), note
    notes = {n.name: n for n in elf.stapsdt_notes()}
    # System V argument registers, in order: the arguments arrive untouched.
    assert notes["step_begin"].args == "-8@%rdi -8@%rsi -8@%rdx -8@%rcx -8@%r8 -8@%r9"
    assert notes["step_end"].args == "-8@%rdi -8@%rsi -8@%rdx"
    # sched_step: the six register arguments first, in order, then five
    # distinct registers the compiler loaded the stack arguments into.
    sched_args = notes["sched_step"].args.split()
    assert sched_args[:6] == notes["step_begin"].args.split()
    assert len(set(sched_args)) == 11
    assert not {"-8@%rsp", "-8@%rbp"} & set(sched_args)


def test_only_the_protocol_is_exported(elf):
    exported = {name for name in elf.dynamic_symbols() if name.startswith("profilemate")}
    assert exported == {"profilemate_" + n for n in EXPECTED_ARGS} | {
        "profilemate_%s_semaphore" % n for n in EXPECTED_ARGS}


def test_sched_step_stack_arguments_reach_the_noted_registers(elf, library):
    """Arguments 6..10 arrive on the stack: before the site, the function
    must load each into the register its note names (a consumer reads the
    register at the NOP).  After N pushes, stack argument 6 + i is at
    8 * (N + 1 + i)(%rsp)."""
    objdump = shutil.which("objdump")
    assert objdump, "objdump is not installed (apt-get install binutils)"
    start, size = elf.dynamic_symbols()["profilemate_sched_step"]
    note = next(n for n in elf.stapsdt_notes() if n.name == "sched_step")
    listing = subprocess.run(
        [objdump, "-d", "--no-show-raw-insn", "--start-address=%#x" % start,
         "--stop-address=%#x" % note.pc, library],
        capture_output=True, text=True, check=True).stdout
    pushes, loads = 0, {}
    for line in listing.splitlines():
        m = re.match(r"\s*[0-9a-f]+:\s+(push|mov)\s+(\S+)", line)
        if m and m.group(1) == "push":
            pushes += 1
        elif m and (load := re.fullmatch(r"(0x[0-9a-f]+)\(%rsp\),(%\w+)", m.group(2))):
            loads[load.group(2)] = int(load.group(1), 16) - 8 * pushes
    registers = [a.split("@")[1] for a in note.args.split()[6:]]
    assert [loads.get(r) for r in registers] == [8 * (1 + i) for i in range(5)], listing
