"""Inside the guest: vCPU registers (CMD_CPU REGS), guest-virtual memory
through the read-only mapping, and the Linux kernel's VMCOREINFO.

The same rules as the C library (lib/vmem.c, include/vmsig/vmsig_vmem.h,
docs/introspection.md):

* ``translate(mem, root, va, mode)`` walks the x86 page tables in guest RAM
  (4-level, 5-level, PAE, legacy 32-bit; 4 KiB, 2 MiB, 4 MiB, 1 GiB pages)
  and returns a ``Translation``; a VA that is not mapped raises
  ``NotMapped`` (a ``BadAddress``, errno EFAULT) with ``level`` and ``fault``.
* ``vread(mem, root, va, n, mode)`` copies across pages.
* ``linux(mem)`` finds the VMCOREINFO in guest RAM (data only, never a hole)
  and gives the release, KASLR offset, the kernel page-table root
  (swapper_pg_dir) and symbol lookup (VMCOREINFO, then kallsyms).

``mem`` is a ``vmsig.Memory`` or ``vmsig.MemMap``. Modes are the C
library's flags: ``MODE_4LEVEL`` (0), ``MODE_LA57``, ``MODE_PAE32``,
``MODE_LEGACY32`` (| ``PSE``), ``MODE_PHYS``; ``mode_of(regs)`` derives it.
"""
from __future__ import annotations

import errno as E
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from . import _wire, errors
from . import wire as W

MODE_4LEVEL, MODE_LA57, MODE_PAE32, MODE_LEGACY32, MODE_PHYS = 0, 1, 2, 3, 4
PSE = 0x8

# fault kinds (vmsig_vmem_xlat.fault)
NOT_PRESENT, NONCANONICAL, NOT_RAM, RESERVED = 1, 2, 3, 4
FAULT_NAMES = {NOT_PRESENT: "not present", NONCANONICAL: "not canonical",
               NOT_RAM: "not guest RAM", RESERVED: "reserved bit set"}

START_KERNEL_MAP = 0xffffffff80000000
_A52 = 0x000ffffffffff000
_LEVEL_NAMES = {1: "PT", 2: "PD", 3: "PDPT", 4: "PML4", 5: "PML5"}


class NotMapped(errors.BadAddress):
    """EFAULT from a page-table walk: ``va``, ``fault`` (NOT_PRESENT, ...),
    ``level`` (1 = PT .. 5 = PML5; 0 if no entry was read), ``entry`` and
    ``entry_gpa`` of the entry that stopped it."""

    def __init__(self, va: int, fault: int, level: int, entry: int = 0, entry_gpa: int = 0,
                 mode: int = 0) -> None:
        where = ("%s entry (level %d) " % (level_name(mode, level), level)) if level else ""
        super().__init__(E.EFAULT, "VA 0x%x: %s%s" % (va, where, FAULT_NAMES.get(fault, "?")))
        self.va, self.fault, self.level = va, fault, level
        self.entry, self.entry_gpa = entry, entry_gpa


def level_name(mode: int, level: int) -> str:
    top = {MODE_4LEVEL: 4, MODE_LA57: 5, MODE_PAE32: 3, MODE_LEGACY32: 2}.get(mode & 7, 0)
    return _LEVEL_NAMES.get(level, "?") if 1 <= level <= top else "?"


# ---------------------------------------------------------------- registers

@dataclass
class Segment:
    selector: int
    base: int
    limit: int
    attr: int


@dataclass
class Regs:
    """CMD_CPU REGS (``Client.regs()``): one vCPU's x86-64 state."""
    index: int
    arch: int
    flags: int
    gpr: List[int]
    rip: int
    rflags: int
    cr0: int
    cr2: int
    cr3: int
    cr4: int
    efer: int
    kernel_gs_base: int
    es: Segment
    cs: Segment
    ss: Segment
    ds: Segment
    fs: Segment
    gs: Segment
    ldt: Segment
    tr: Segment
    gdt: Tuple[int, int] = (0, 0)   # (base, limit)
    idt: Tuple[int, int] = (0, 0)

    NAMES = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")

    def __getattr__(self, name: str) -> int:
        names = type(self).NAMES
        if name in names:
            return self.gpr[names.index(name)]
        raise AttributeError(name)

    @property
    def halted(self) -> bool:
        return bool(self.flags & W.VMSIG_CPU_F_HALTED)

    @property
    def long_mode(self) -> bool:
        return bool(self.flags & W.VMSIG_CPU_F_LMA)

    @property
    def paging(self) -> bool:
        return bool(self.flags & W.VMSIG_CPU_F_PAGING)

    @property
    def mode(self) -> int:
        """The paging mode for translate/vread (from CR0, CR4, EFER)."""
        return mode_of(self.cr0, self.cr4, self.efer)

    @property
    def fs_base(self) -> int:
        return self.fs.base

    @property
    def gs_base(self) -> int:
        return self.gs.base


def mode_of(cr0: int, cr4: int, efer: int) -> int:
    if not cr0 & (1 << 31):
        return MODE_PHYS
    if efer & (1 << 10):
        return MODE_LA57 if cr4 & (1 << 12) else MODE_4LEVEL
    if cr4 & (1 << 5):
        return MODE_PAE32
    return MODE_LEGACY32 | (PSE if cr4 & (1 << 4) else 0)


def regs_from_body(body: bytes) -> Regs:
    L = W.CPU_REGS
    if len(body) < L.size:
        raise errors.ProtocolError(E.EPROTO, "CMD_CPU REGS REPLY body of %d bytes" % len(body))
    # by the generated offsets and sizes (gpr is an array: one field, 128 bytes)
    sizes = {f.replace(".", "_"): n for f, _, n in _wire.STRUCTS["vmsig_wire_cpu_regs"][2]}

    def u(name: str) -> int:
        o, n = L.offsets[name], sizes[name]
        return int.from_bytes(body[o:o + n], "little")

    def seg(n: str) -> Segment:
        return Segment(u(n + "_selector"), u(n + "_base"), u(n + "_limit"), u(n + "_attr"))

    g = L.offsets["gpr"]
    return Regs(index=u("index"), arch=u("arch"), flags=u("flags"),
                gpr=[int.from_bytes(body[g + 8 * i:g + 8 * i + 8], "little") for i in range(16)],
                rip=u("rip"), rflags=u("rflags"), cr0=u("cr0"), cr2=u("cr2"), cr3=u("cr3"),
                cr4=u("cr4"), efer=u("efer"), kernel_gs_base=u("kernel_gs_base"), es=seg("es"),
                cs=seg("cs"), ss=seg("ss"), ds=seg("ds"), fs=seg("fs"), gs=seg("gs"),
                ldt=seg("ldt"), tr=seg("tr"), gdt=(u("gdt_base"), u("gdt_limit")),
                idt=(u("idt_base"), u("idt_limit")))


def regs_payload(index: int) -> bytes:
    return W.CPU.pack(op=W.VMSIG_CPU_REGS, index=index)


# ---------------------------------------------------------------- translation

@dataclass
class Translation:
    va: int
    pa: int
    page_size: int
    level: int
    entry: int
    entry_gpa: int
    writable: bool
    user: bool
    nx: bool


def _map_of(mem):
    """The MemMap of a Memory (its current generation), or the MemMap itself."""
    from .memory import Memory
    return mem.map if isinstance(mem, Memory) else mem


def _entry(m, gpa: int, size: int, sparse: bool) -> Optional[int]:
    """A table entry, None if not guest RAM; 0 for a hole with sparse."""
    s = m._seg(gpa)
    if s is None or gpa + size > s.gpa + s.size:
        return None
    if sparse and not m.data_ranges(gpa, size):
        return 0
    return int.from_bytes(m.view(gpa, size), "little")


def translate(mem, root: int, va: int, mode: int = MODE_4LEVEL, sparse: bool = False) -> Translation:
    """Translate va through the page tables at root (a CR3 value: its low 12
    bits and bit 63 are ignored). Raises NotMapped (EFAULT)."""
    m = _map_of(mem)
    md = mode & 7
    if md == MODE_PHYS:
        t = Translation(va, va, 4096, 0, 0, 0, True, True, False)
    elif md in (MODE_4LEVEL, MODE_LA57):
        t = _walk64(m, root, va, 5 if md == MODE_LA57 else 4, sparse, mode)
    elif md == MODE_PAE32:
        t = _walk_pae(m, root, va, sparse, mode)
    elif md == MODE_LEGACY32:
        t = _walk_legacy(m, root, va, bool(mode & PSE), sparse, mode)
    else:
        raise errors.InvalidArgument(E.EINVAL, "unknown paging mode %d" % mode)
    if m._seg(t.pa) is None:
        raise NotMapped(va, NOT_RAM, t.level, t.entry, t.entry_gpa, mode)
    return t


def _walk64(m, root, va, top, sparse, mode) -> Translation:
    bits = 12 + 9 * top
    sx = va & ((1 << bits) - 1)
    if sx >> (bits - 1):
        sx -= 1 << bits
    if sx & ((1 << 64) - 1) != va:
        raise NotMapped(va, NONCANONICAL, 0, mode=mode)
    table, w, u, nx = root & _A52, True, True, False
    for level in range(top, 0, -1):
        shift = 12 + 9 * (level - 1)
        egpa = table + ((va >> shift) & 511) * 8
        e = _entry(m, egpa, 8, sparse)
        if e is None:
            raise NotMapped(va, NOT_RAM, level, 0, egpa, mode)
        if not e & 1:
            raise NotMapped(va, NOT_PRESENT, level, e, egpa, mode)
        w, u, nx = w and bool(e & 2), u and bool(e & 4), nx or bool(e >> 63)
        if level == 1 or e & 0x80:
            if level > 3:
                raise NotMapped(va, RESERVED, level, e, egpa, mode)
            size = 1 << shift
            return Translation(va, (e & _A52 & ~(size - 1)) | (va & (size - 1)), size, level, e,
                               egpa, w, u, nx)
        table = e & _A52
    raise AssertionError("unreachable")


def _walk_pae(m, root, va, sparse, mode) -> Translation:
    if va >> 32:
        raise NotMapped(va, NONCANONICAL, 0, mode=mode)
    egpa = (root & 0xffffffe0) + (va >> 30) * 8
    e = _entry(m, egpa, 8, sparse)
    if e is None:
        raise NotMapped(va, NOT_RAM, 3, 0, egpa, mode)
    if not e & 1:
        raise NotMapped(va, NOT_PRESENT, 3, e, egpa, mode)
    w = u = True
    nx = False
    for level in (2, 1):
        shift = 12 + 9 * (level - 1)
        egpa = (e & _A52) + ((va >> shift) & 511) * 8
        e = _entry(m, egpa, 8, sparse)
        if e is None:
            raise NotMapped(va, NOT_RAM, level, 0, egpa, mode)
        if not e & 1:
            raise NotMapped(va, NOT_PRESENT, level, e, egpa, mode)
        w, u, nx = w and bool(e & 2), u and bool(e & 4), nx or bool(e >> 63)
        if level == 1 or e & 0x80:
            size = 1 << shift
            return Translation(va, (e & _A52 & ~(size - 1)) | (va & (size - 1)), size, level, e,
                               egpa, w, u, nx)
    raise AssertionError("unreachable")


def _walk_legacy(m, root, va, pse, sparse, mode) -> Translation:
    if va >> 32:
        raise NotMapped(va, NONCANONICAL, 0, mode=mode)
    egpa = (root & 0xfffff000) + (va >> 22) * 4
    e = _entry(m, egpa, 4, sparse)
    if e is None:
        raise NotMapped(va, NOT_RAM, 2, 0, egpa, mode)
    if not e & 1:
        raise NotMapped(va, NOT_PRESENT, 2, e, egpa, mode)
    w, u = bool(e & 2), bool(e & 4)
    if e & 0x80 and pse:
        pa = (e & 0xffc00000) | (((e >> 13) & 0xff) << 32) | (va & 0x3fffff)
        return Translation(va, pa, 4 << 20, 2, e, egpa, w, u, False)
    egpa = (e & 0xfffff000) + ((va >> 12) & 1023) * 4
    e = _entry(m, egpa, 4, sparse)
    if e is None:
        raise NotMapped(va, NOT_RAM, 1, 0, egpa, mode)
    if not e & 1:
        raise NotMapped(va, NOT_PRESENT, 1, e, egpa, mode)
    return Translation(va, (e & 0xfffff000) | (va & 0xfff), 4096, 1, e, egpa,
                       w and bool(e & 2), u and bool(e & 4), False)


def vread(mem, root: int, va: int, n: int, mode: int = MODE_4LEVEL, sparse: bool = False) -> bytes:
    """n bytes at va, across pages (physically contiguous runs copied at
    once). NotMapped (EFAULT) names the first page that is not mapped; its
    ``done`` attribute is how many bytes came before it."""
    m = _map_of(mem)
    parts, got = [], 0
    run_pa, run_len = 0, 0
    while got + run_len < n:
        at = va + got + run_len
        try:
            t = translate(m, root, at, mode, sparse)
        except NotMapped as e:
            if run_len:
                parts.append(m.read(run_pa, run_len, sparse))
                got += run_len
            e.done = got
            e.data = b"".join(parts)
            raise
        k = min(t.page_size - (at & (t.page_size - 1)), n - got - run_len)
        if run_len and run_pa + run_len == t.pa:
            run_len += k
        else:
            if run_len:
                parts.append(m.read(run_pa, run_len, sparse))
                got += run_len
            run_pa, run_len = t.pa, k
    if run_len:
        parts.append(m.read(run_pa, run_len, sparse))
    return b"".join(parts)


# ---------------------------------------------------------------- Linux

@dataclass
class LinuxInfo:
    """The Linux guest's VMCOREINFO (``Client.linux()`` / ``linux(mem)``)."""
    release: str
    text: str
    text_gpa: int
    note: bool
    page_size: int
    kaslr_offset: int
    phys_base: int
    pgd_va: int
    root: int            # physical address of swapper_pg_dir: the kernel's page-table root
    mode: int            # MODE_LA57 if NUMBER(pgtable_l5_enabled)=1, else MODE_4LEVEL
    uts_va: int          # init_uts_ns.name
    verified: bool = False
    values: Dict[str, str] = field(default_factory=dict)
    _mem: object = None
    _kallsyms: Optional[Dict[str, int]] = None

    def symbol(self, name: str) -> int:
        """A symbol's virtual address: VMCOREINFO's SYMBOL(name), else the
        kernel's kallsyms tables (read through root). KeyError if none."""
        v = self.values.get("SYMBOL(%s)" % name)
        if v is not None:
            return int(v, 16)
        if self._kallsyms is None:
            self._kallsyms = _kallsyms(self)
        return self._kallsyms[name]

    def number(self, key: str) -> int:
        """NUMBER(x)/OFFSET(x)/SIZE(x)/LENGTH(x): ``info.number("NUMBER(phys_base)")``."""
        return int(self.values[key], 10)

    def read(self, va: int, n: int) -> bytes:
        """n bytes at a kernel virtual address, through root (holes as zeros)."""
        return vread(self._mem, self.root, va, n, self.mode, sparse=True)

    def translate(self, va: int) -> Translation:
        return translate(self._mem, self.root, va, self.mode, sparse=True)

    def uts_release(self) -> str:
        """init_uts_ns.name.release read through its virtual address."""
        return W.cstr(self.read(self.uts_va + 130, 65))


def parse_vmcoreinfo(text: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for line in text.split("\n"):
        k, sep, v = line.partition("=")
        if sep and k not in out:
            out[k] = v
    return out


def _info_from(text: str, gpa: int, note: bool, mem) -> Optional[LinuxInfo]:
    vals = parse_vmcoreinfo(text)
    rel = vals.get("OSRELEASE", "")
    if not rel or "%" in rel or "PAGESIZE" not in vals:
        return None
    phys_base = int(vals.get("NUMBER(phys_base)", "0"), 10)
    pgd = vals.get("SYMBOL(swapper_pg_dir)") or vals.get("SYMBOL(init_top_pgt)")
    pgd_va = int(pgd, 16) if pgd else 0
    root = (pgd_va - START_KERNEL_MAP + phys_base) & ((1 << 64) - 1) if pgd_va >= START_KERNEL_MAP else 0
    uts = vals.get("SYMBOL(init_uts_ns)")
    uts_va = int(uts, 16) + int(vals.get("OFFSET(uts_namespace.name)", "0")) if uts else 0
    li = LinuxInfo(release=rel, text=text, text_gpa=gpa, note=note,
                   page_size=int(vals["PAGESIZE"]), kaslr_offset=int(vals.get("KERNELOFFSET", "0"), 16),
                   phys_base=phys_base, pgd_va=pgd_va, root=root,
                   mode=MODE_LA57 if vals.get("NUMBER(pgtable_l5_enabled)") == "1" else MODE_4LEVEL,
                   uts_va=uts_va, values=vals, _mem=mem)
    if root and uts_va:
        try:
            li.verified = li.uts_release() == rel
        except errors.BadAddress:
            li.verified = False
    return li


def linux(mem) -> LinuxInfo:
    """Find the kernel's VMCOREINFO in guest RAM ("OSRELEASE=" in the data,
    holes never read; the ELF note "VMCOREINFO" preferred over the bare
    page-aligned copy). Raises ``errors.VmsigError`` with errno ENOENT if
    there is none (not Linux, no crash support, not booted yet)."""
    m = _map_of(mem)
    bare = None
    for gpa in m.find(b"OSRELEASE="):
        hdr = m.read(gpa - 24, 24, sparse=True) if gpa >= 24 and m._seg(gpa - 24) else b""
        note = (len(hdr) == 24 and int.from_bytes(hdr[0:4], "little") == 11 and
                int.from_bytes(hdr[8:12], "little") == 0 and hdr[12:24] == b"VMCOREINFO\0\0")
        if note:
            n = int.from_bytes(hdr[4:8], "little")
            if not 10 < n <= 4096:
                continue
        elif gpa & 0xfff == 0:
            n = 4096
        else:
            continue
        s = m._seg(gpa)
        n = min(n, s.gpa + s.size - gpa)
        raw = m.read(gpa, n, sparse=True).split(b"\0", 1)[0]
        li = _info_from(raw.decode("utf-8", "replace"), gpa, note, mem)
        if li is None:
            continue
        if note:
            return li
        bare = bare or li
    if bare is not None:
        return bare
    raise errors.VmsigError(E.ENOENT, "no VMCOREINFO in guest RAM (not a Linux guest, a kernel "
                            "without crash support, or not booted yet)")


def _kallsyms(li: LinuxInfo) -> Dict[str, int]:
    """Every kernel symbol from kallsyms (CONFIG_KALLSYMS_BASE_RELATIVE with
    ABSOLUTE_PERCPU, x86-64): name -> virtual address."""
    try:
        names = int(li.values["SYMBOL(kallsyms_names)"], 16)
        num = int(li.values["SYMBOL(kallsyms_num_syms)"], 16)
        ttab = int(li.values["SYMBOL(kallsyms_token_table)"], 16)
        tidx = int(li.values["SYMBOL(kallsyms_token_index)"], 16)
        offs = int(li.values["SYMBOL(kallsyms_offsets)"], 16)
        rbase = int(li.values["SYMBOL(kallsyms_relative_base)"], 16)
    except KeyError:
        return {}
    nsyms = int.from_bytes(li.read(num, 4), "little")
    base = int.from_bytes(li.read(rbase, 8), "little")
    index = [int.from_bytes(b, "little") for b in _chunks(li.read(tidx, 512), 2)]
    traw = li.read(ttab, index[255] + 64)
    tokens = [traw[i:traw.index(b"\0", i)].decode("latin-1") for i in index]
    offsets = li.read(offs, 4 * nsyms)
    # the names table is read in pieces as far as it goes
    out: Dict[str, int] = {}
    buf, bpos = b"", names
    pos = names
    for i in range(nsyms):
        if pos + 0x8002 > bpos + len(buf):
            try:
                buf = li.read(pos, 1 << 20)
            except errors.BadAddress as e:
                buf = getattr(e, "data", b"")
            bpos = pos
        o = pos - bpos
        ln, hdr = buf[o], 1
        if ln & 0x80:
            ln, hdr = (ln & 0x7f) | (buf[o + 1] << 7), 2
        name = "".join(tokens[t] for t in buf[o + hdr:o + hdr + ln])[1:]
        pos += hdr + ln
        off = int.from_bytes(offsets[4 * i:4 * i + 4], "little", signed=True)
        out.setdefault(name, off if off >= 0 else (base - 1 - off) & ((1 << 64) - 1))
    return out


def _chunks(b: bytes, k: int):
    return [b[i:i + k] for i in range(0, len(b), k)]
