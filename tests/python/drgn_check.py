"""Run under /usr/bin/python3 (Debian's python3-drgn): a drgn.Program over
vmsig (python/vmsig/drgn.py) reads the live guest; its physical and virtual
reads must equal vmsig's own. Prints "drgn reads match vmsig" on success.

    PYTHONPATH=python /usr/bin/python3 tests/python/drgn_check.py SOCKET
"""
import sys

import drgn

import vmsig
import vmsig.drgn

vm = vmsig.connect(sys.argv[1], timeout=10)
li = vm.linux()
mem = vm.memory()
vm.stop()
try:
    prog = vmsig.drgn.program_from_memory(mem, li)
    assert prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL, prog.flags
    # virtual: init_uts_ns's release and the banner, through drgn
    rel = prog.read(li.uts_va + 130, 65).split(b"\0")[0].decode()
    assert rel == li.release, (rel, li.release)
    banner_va = li.symbol("linux_banner")
    assert prog.read(banner_va, 256) == li.read(banner_va, 256)
    # 1 MiB of kernel text
    stext = li.symbol("_stext")
    assert prog.read(stext, 1 << 20) == mem.vread(li.root, stext, 1 << 20, li.mode)
    # physical: the guest's magic and a page of the kernel's page tables
    assert prog.read(0x0C800010, 4, True) == mem.read(0x0C800010, 4) == bytes.fromhex("47495356")
    assert prog.read(li.root, 4096, True) == mem.read(li.root, 4096)
    assert prog.read_u64(li.uts_va) == int.from_bytes(mem.vread(li.root, li.uts_va, 8), "little")
    # not mapped: drgn's FaultError
    try:
        prog.read(0xffffffffc0000000, 8)
        raise AssertionError("no FaultError")
    except drgn.FaultError:
        pass
    # a user VA through vCPU 0's CR3 (the process running or last run)
    if vm.welcome.caps & vmsig.wire.VMSIG_CAP_CPU:
        r = vm.regs(0)
        p2 = vmsig.drgn.program_from_memory(mem, li, user_cr3=r.cr3)
        assert p2.read(li.uts_va + 130, 8) == li.release.encode()[:8]
    print("drgn %s: %s; drgn reads match vmsig" % (drgn.__version__, rel))
finally:
    vm.cont()
    vm.close()
