"""Inside the guest from Python, against the real QEMU and the e2e guest:
CMD_CPU REGS (typed registers, refusals with their errno: EPERM without
CAP_CPU, EINVAL for a missing vCPU, EOPNOTSUPP without the feature),
guest-virtual reads through CR3 and through the kernel's swapper_pg_dir
(VMCOREINFO), equal to the C helper's, and the drgn reader where drgn is
installed (python3-drgn, /usr/bin/python3)."""
import errno
import os
import subprocess
import sys
import unittest

import vmtest
import vmsig
from vmsig import introspect

HELPER = os.path.join(vmtest.ROOT, "build", "native", "helper", "vmsig-helper")
NOCPU = "token-without-cpu"


def in_kernel(rip):
    return 0xffffffff80000000 <= rip < 0xffffffffc0000000


@unittest.skipUnless(vmtest.have_qemu(), "no QEMU build or guest (scripts/build-qemu, build-guest)")
class Introspect(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        uid = os.getuid()
        cls.vm = vmtest.VM(grants="uid:%d endpoints=0 caps=OBSERVE,VM,MEMCTX,CPU\n"
                           "token:%s endpoints=0 caps=OBSERVE,VM,MEMCTX\n" % (uid, NOCPU))
        if not cls.vm.wait_console("vmsig-guest: ready", 120):
            log = cls.vm.qemu_log()
            cls.vm.close()
            raise RuntimeError("the guest did not boot: " + log)
        cls.c = vmsig.connect(cls.vm.sock, timeout=10)
        cls.release = None
        with open(cls.vm.console, errors="replace") as f:
            for line in f:
                if "init on " in line:
                    cls.release = line.split("init on ", 1)[1].split()[0]

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.vm.close()

    def kernel_regs(self, tries=50):
        for _ in range(tries):
            r = self.c.regs(0)
            if in_kernel(r.rip):
                return r
        return r

    def test_a_regs_running(self):
        """regs() of the running guest: typed, CR3 nonzero, RIP in the kernel, CR4.PAE, long mode"""
        self.assertTrue(self.c.features & vmsig.wire.VMSIG_FEAT_CPU)
        r = self.kernel_regs()
        self.assertIsInstance(r, vmsig.Regs)
        self.assertEqual(r.index, 0)
        self.assertEqual(r.arch, vmsig.wire.VMSIG_ARCH_X86_64)
        self.assertNotEqual(r.cr3, 0)
        self.assertTrue(in_kernel(r.rip), hex(r.rip))
        self.assertTrue(r.cr4 & 0x20)
        self.assertTrue(r.long_mode and r.paging)
        self.assertEqual(r.mode, introspect.MODE_4LEVEL)
        self.assertEqual(r.cs.selector & 3, 0)  # ring 0 while in the kernel
        self.assertEqual(r.rsp, r.gpr[4])
        self.assertEqual(len(r.gpr), 16)

    def test_b_regs_paused_same(self):
        """regs() of a paused guest do not change; the asyncio client gets the same"""
        import asyncio
        self.c.stop()
        try:
            a, b = self.c.regs(), self.c.regs()
            self.assertEqual(a, b)

            async def go():
                async with await vmsig.aconnect(self.vm.sock) as ac:
                    return await ac.regs(0)
            self.assertEqual(asyncio.run(go()), a)
        finally:
            self.c.cont()

    def test_c_refusals(self):
        """EINVAL for a missing vCPU, EPERM without CAP_CPU, EOPNOTSUPP without the feature (client and server)"""
        with self.assertRaises(vmsig.InvalidArgument) as cm:
            self.c.regs(1)
        self.assertEqual(cm.exception.errno, errno.EINVAL)
        payload = introspect.regs_payload(0)
        with vmsig.connect(self.vm.sock, token=NOCPU) as nc:
            with self.assertRaises(vmsig.PermissionDenied):
                nc.regs()
            with self.assertRaises(vmsig.PermissionDenied) as cm:  # the server's own refusal
                nc.call(vmsig.wire.VMSIG_CMD_CPU, payload)
            self.assertEqual(cm.exception.errno, errno.EPERM)
        with vmsig.connect(self.vm.sock, features_off=vmsig.wire.VMSIG_FEAT_CPU) as old:
            self.assertFalse(old.features & vmsig.wire.VMSIG_FEAT_CPU)
            with self.assertRaises(vmsig.NotSupported):
                old.regs()
            with self.assertRaises(vmsig.NotSupported) as cm:
                old.call(vmsig.wire.VMSIG_CMD_CPU, payload)
            self.assertEqual(cm.exception.errno, errno.EOPNOTSUPP)

    def test_d_linux(self):
        """linux(): VMCOREINFO's release is the console's; the kernel root verified; banner via kallsyms"""
        li = self.c.linux()
        self.assertEqual(li.release, self.release)
        self.assertTrue(li.note)
        self.assertTrue(li.verified)
        self.assertEqual(li.uts_release(), self.release)
        self.assertEqual(li.root & 0xfff, 0)
        banner = li.read(li.symbol("linux_banner"), 200).split(b"\0")[0].decode()
        self.assertTrue(banner.startswith("Linux version %s (" % self.release), banner)
        self.assertEqual(li.symbol("init_uts_ns"), int(li.values["SYMBOL(init_uts_ns)"], 16))
        with self.assertRaises(KeyError):
            li.symbol("no_such_symbol_here")

    def test_e_cr3_and_swapper_agree(self):
        """CR3 from REGS and swapper_pg_dir translate init_uts_ns to the same GPA and bytes"""
        li = self.c.linux()
        mem = self.c.memory()
        self.c.stop()
        try:
            r = self.kernel_regs(1)
            t1 = mem.translate(r.cr3, li.uts_va + 130, r.mode)
            t2 = mem.translate(li.root, li.uts_va + 130, li.mode)
            self.assertEqual(t1.pa, t2.pa)
            rel = self.release.encode()
            self.assertEqual(mem.vread(r.cr3, li.uts_va + 130, len(rel), r.mode), rel)
            self.assertEqual(mem.read(t2.pa, len(rel)), rel)
        finally:
            self.c.cont()

    def test_f_not_mapped_and_crossing(self):
        """a VA that is not mapped raises NotMapped (EFAULT) with its level; a read across pages"""
        li = self.c.linux()
        mem = self.c.memory()
        with self.assertRaises(vmsig.NotMapped) as cm:
            mem.vread(li.root, 0x1000, 16)
        self.assertEqual(cm.exception.errno, errno.EFAULT)
        self.assertEqual(cm.exception.level, 4)
        self.assertEqual(cm.exception.fault, introspect.NOT_PRESENT)
        with self.assertRaises(vmsig.BadAddress):
            mem.translate(li.root, 0xffffffffc0000000)
        with self.assertRaises(vmsig.NotMapped) as cm:
            mem.translate(li.root, 0x0000800000000000)
        self.assertEqual(cm.exception.fault, introspect.NONCANONICAL)
        self.c.stop()
        try:
            va = 0xfffffe0000001000  # cpu_entry_area: 4 KiB pages
            a, b = mem.translate(li.root, va - 8), mem.translate(li.root, va)
            self.assertEqual((a.page_size, b.page_size), (4096, 4096))
            self.assertEqual(mem.vread(li.root, va - 8, 16), mem.read(a.pa, 8) + mem.read(b.pa, 8))
            # 1 MiB of kernel text, as the C helper reads it
            stext = li.symbol("_stext")
            mine = mem.vread(li.root, stext, 1 << 20)
            theirs = subprocess.run([HELPER, "-s", self.vm.sock, "vread", "--raw", hex(stext), "1M"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
            self.assertEqual(mine, theirs)
        finally:
            self.c.cont()

    def test_g_drgn(self):
        """the drgn reader (python3-drgn under /usr/bin/python3): physical and virtual reads equal vmsig's"""
        probe = subprocess.run(["/usr/bin/python3", "-c", "import drgn"], stderr=subprocess.DEVNULL)
        if probe.returncode != 0:
            self.skipTest("python3-drgn is not installed for /usr/bin/python3")
        script = os.path.join(vmtest.ROOT, "tests", "python", "drgn_check.py")
        p = subprocess.run(["/usr/bin/python3", script, self.vm.sock], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120,
                           env=dict(os.environ, PYTHONPATH=os.path.join(vmtest.ROOT, "python")))
        out = p.stdout.decode(errors="replace")
        self.assertEqual(p.returncode, 0, out)
        self.assertIn("drgn reads match vmsig", out)


if __name__ == "__main__":
    unittest.main()
