"""drgn over vmsig: a ``drgn.Program`` whose memory is the live guest's RAM,
read through vmsig's read-only mapping (no copy through QEMU, no core dump).

    import vmsig, vmsig.drgn
    vm = vmsig.connect("/run/vm0.vmsig")
    prog = vmsig.drgn.program(vm)             # or program_from_memory(vm.memory())
    prog.read(0xffffffff82a00000, 64)         # kernel virtual address
    prog.read(0x1000, 16, True)               # guest-physical address

What it sets up (drgn 0.0.22 = Debian 12's python3-drgn, and later):

* physical segments: every MEMCTX segment, read from the mapping
  (``add_memory_segment(..., physical=True)``);
* a virtual segment over the kernel half of the address space (and, with
  ``user_cr3``, the user half of one process) whose reads are translated by
  vmsig's page-table walk (``vmsig.introspect.vread``) through the kernel's
  own root (swapper_pg_dir from VMCOREINFO);
* the program is marked a Linux kernel by handing drgn a tiny ELF core file
  that holds only the guest's VMCOREINFO note (no memory): drgn then knows
  the release, KASLR offset and page size, and ``load_debug_info`` relocates
  the kernel's symbols.

Symbols and types need the kernel's debug info (on a Debian guest the
package linux-image-<release>-dbg, whose vmlinux is in
/usr/lib/debug/boot/vmlinux-<release>): ``prog.load_debug_info([path])`` or
``program(vm, debug_info=[path])``; then ``prog["init_uts_ns"]``, the helpers
in ``drgn.helpers.linux`` and stack traces work as on a core dump. Without it,
reads by address work (``prog.read``, ``read_u64``, physical reads), and
``vmsig.LinuxInfo.symbol()`` gives addresses (VMCOREINFO and kallsyms).

Reads are of a running guest: stop it (``vm.stop()``) for a consistent view.
"""
from __future__ import annotations

import os
import struct
import tempfile
from typing import Iterable, Optional

import drgn as _drgn

from . import errors, introspect

KERNEL_HALF = 0xffff800000000000   # 4-level; 5-level kernels start at 0xff00000000000000


def _core_with_vmcoreinfo(text: str) -> str:
    """A minimal ELF64 core file: one PT_NOTE holding the VMCOREINFO note."""
    desc = text.encode()
    name = b"VMCOREINFO\0"
    note = struct.pack("<III", len(name), len(desc), 0) + name + b"\0" * (-len(name) % 4) \
        + desc + b"\0" * (-len(desc) % 4)
    ehsize, phsize = 64, 56
    off = ehsize + phsize
    eh = (b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
          + struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, ehsize, 0, 0, ehsize, phsize, 1, 64, 0, 0))
    ph = struct.pack("<IIQQQQQQ", 4, 0, off, 0, 0, len(note), 0, 4)
    fd, path = tempfile.mkstemp(prefix="vmsig-drgn.", suffix=".core")
    with os.fdopen(fd, "wb") as f:
        f.write(eh + ph + note)
    return path


def program_from_memory(mem, info: Optional[introspect.LinuxInfo] = None,
                        debug_info: Optional[Iterable[str]] = None,
                        user_cr3: Optional[int] = None) -> "_drgn.Program":
    """A drgn.Program over ``mem`` (a ``vmsig.Memory``; it follows new MEMCTX
    generations). ``info``: the guest's ``vmsig.LinuxInfo`` (found if not
    given). ``debug_info``: vmlinux paths to load. ``user_cr3``: also map
    the user half through this CR3 (one process's address space)."""
    li = info or introspect.linux(mem)
    prog = _drgn.Program()
    core = _core_with_vmcoreinfo(li.text)
    try:
        prog.set_core_dump(core)
    finally:
        os.unlink(core)

    def phys(address, count, offset, physical):
        try:
            return introspect._map_of(mem).read(address, count)
        except errors.BadAddress:
            raise _drgn.FaultError("not guest RAM", address) from None

    def kvirt(address, count, offset, physical):
        try:
            return introspect.vread(mem, li.root, address, count, li.mode)
        except errors.BadAddress:
            raise _drgn.FaultError("not mapped", address) from None

    for s in introspect._map_of(mem).segments:
        prog.add_memory_segment(s.gpa, s.size, phys, True)
    base = 0xff00000000000000 if li.mode == introspect.MODE_LA57 else KERNEL_HALF
    prog.add_memory_segment(base, (1 << 64) - base, kvirt, False)
    if user_cr3 is not None:
        def uvirt(address, count, offset, physical):
            try:
                return introspect.vread(mem, user_cr3, address, count, li.mode)
            except errors.BadAddress:
                raise _drgn.FaultError("not mapped", address) from None
        top = 1 << (56 if li.mode == introspect.MODE_LA57 else 47)
        prog.add_memory_segment(0, top, uvirt, False)
    if debug_info:
        prog.load_debug_info(list(debug_info))
    return prog


def program(vm, endpoint: Optional[int] = None, **kw) -> "_drgn.Program":
    """program_from_memory(vm.memory(endpoint), vm.linux(endpoint), **kw)."""
    mem = vm.memory(endpoint)
    return program_from_memory(mem, introspect.linux(mem), **kw)
