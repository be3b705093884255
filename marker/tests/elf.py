"""Just enough ELF64 little-endian reading to check the probe library:
sections, dynamic symbols and SystemTap notes."""
import struct
from dataclasses import dataclass


@dataclass
class Section:
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int


@dataclass
class StapsdtNote:
    pc: int
    base: int
    semaphore: int
    provider: str
    name: str
    args: str


SHT_PROGBITS, SHT_NOTE, SHT_NOBITS, SHT_DYNSYM = 1, 7, 8, 11
SHF_WRITE, SHF_ALLOC = 0x1, 0x2
NT_STAPSDT = 3


class Elf:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = f.read()
        assert self.data[:6] == b"\x7fELF\x02\x01", "not ELF64 little-endian"
        shoff, = struct.unpack_from("<Q", self.data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", self.data, 0x3A)
        raw = [struct.unpack_from("<IIQQQQIIQQ", self.data, shoff + i * shentsize)
               for i in range(shnum)]
        names = raw[shstrndx][4]
        self.sections = [Section(self._cstr(names + r[0]), r[1], r[2], r[3], r[4], r[5])
                         for r in raw]
        self._raw = raw

    def _cstr(self, offset):
        return self.data[offset:self.data.index(b"\0", offset)].decode()

    def section(self, name):
        return next(s for s in self.sections if s.name == name)

    def section_at(self, addr):
        """The allocated section holding virtual address addr."""
        return next(s for s in self.sections
                    if s.flags & SHF_ALLOC and s.addr <= addr < s.addr + s.size)

    def read(self, addr, size):
        """File bytes at virtual address addr (in a PROGBITS section)."""
        s = self.section_at(addr)
        assert s.type == SHT_PROGBITS
        start = s.offset + addr - s.addr
        return self.data[start:start + size]

    def dynamic_symbols(self):
        """name -> (value, size)."""
        index = next(i for i, s in enumerate(self.sections) if s.type == SHT_DYNSYM)
        dynsym, strtab = self.sections[index], self.sections[self._raw[index][6]]
        symbols = {}
        for off in range(dynsym.offset, dynsym.offset + dynsym.size, 24):
            name, _info, _other, _shndx, value, size = struct.unpack_from("<IBBHQQ", self.data, off)
            if name:
                symbols[self._cstr(strtab.offset + name)] = (value, size)
        return symbols

    def stapsdt_notes(self):
        s = self.section(".note.stapsdt")
        assert s.type == SHT_NOTE
        notes, pos, end = [], s.offset, s.offset + s.size
        while pos < end:
            namesz, descsz, ntype = struct.unpack_from("<III", self.data, pos)
            owner = self.data[pos + 12:pos + 12 + namesz]
            desc = pos + 12 + _align4(namesz)
            if owner == b"stapsdt\0" and ntype == NT_STAPSDT:
                pc, base, sem = struct.unpack_from("<QQQ", self.data, desc)
                strings = self.data[desc + 24:desc + descsz].split(b"\0")
                notes.append(StapsdtNote(pc, base, sem, *(x.decode() for x in strings[:3])))
            pos = desc + _align4(descsz)
        return notes


def _align4(n):
    return (n + 3) & ~3
