"""The Python page-table walk (vmsig.introspect) over synthetic tables in a
memfd, no QEMU: 4- and 5-level, 2 MiB / 1 GiB pages, not-present at each
level, non-canonical VAs, reserved PS, PAE and legacy 32-bit, a read that
crosses into a page that is not physically next, VMCOREINFO parsing."""
import errno
import mmap
import os
import unittest

import vmtest  # noqa: F401  (sys.path)
import vmsig
from vmsig import introspect as I
from vmsig.events import MemCtx, Segment

RAM = 64 << 20
P, W, U, PS, NX = 1, 2, 4, 0x80, 1 << 63


class Ram:
    def __init__(self):
        self.fd = os.memfd_create("vmem", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, RAM)
        self.w = mmap.mmap(self.fd, RAM)
        self.next = 1 << 20
        ev = MemCtx(kind=vmsig.wire.VMSIG_EV_MEMCTX, endpoint=0, seq=1, ts_ns=0, snapshot=False,
                    generation=1, ram_size=RAM, segments=[Segment(0, RAM, 0, 0)],
                    fds=[os.dup(self.fd)])
        self.m = vmsig.MemMap(ev)  # keeps its own dup
        ev.close()

    def page(self):
        pa, self.next = self.next, self.next + 4096
        self.w[pa:pa + 4096] = bytes(4096)
        return pa

    def set64(self, gpa, v):
        self.w[gpa:gpa + 8] = v.to_bytes(8, "little")

    def get64(self, gpa):
        return int.from_bytes(self.w[gpa:gpa + 8], "little")

    def map64(self, root, levels, va, pa, leaf=1, bits=P | W):
        table = root
        for lvl in range(levels, leaf, -1):
            eg = table + ((va >> (12 + 9 * (lvl - 1))) & 511) * 8
            e = self.get64(eg)
            if not e & P:
                e = self.page() | P | W | U
                self.set64(eg, e)
            table = e & 0x000ffffffffff000
        self.set64(table + ((va >> (12 + 9 * (leaf - 1))) & 511) * 8,
                   pa | bits | (PS if leaf > 1 else 0))

    def close(self):
        self.m.close()
        self.w.close()
        os.close(self.fd)


class Walk(unittest.TestCase):
    def setUp(self):
        self.r = Ram()

    def tearDown(self):
        self.r.close()

    def test_4level_and_crossing(self):
        """4 KiB pages, CR3 with PCID bits, a read crossing into a page that is not next"""
        r = self.r
        root, va = r.page(), 0x7f1234560000
        d0, _, d1 = r.page(), r.page(), r.page()  # not physically next
        r.w[d0:d0 + 4096] = b"\xa5" * 4096
        r.w[d1:d1 + 4096] = b"\x5a" * 4096
        r.map64(root, 4, va, d0, bits=P | W | U)
        r.map64(root, 4, va + 4096, d1, bits=P | NX)
        t = I.translate(r.m, root | 5 | (1 << 63), va + 100)
        self.assertEqual((t.pa, t.page_size, t.level, t.writable, t.user, t.nx),
                         (d0 + 100, 4096, 1, True, True, False))
        self.assertTrue(I.translate(r.m, root, va + 4096).nx)
        self.assertEqual(I.vread(r.m, root, va + 4096 - 32, 64), b"\xa5" * 32 + b"\x5a" * 32)
        with self.assertRaises(vmsig.NotMapped) as cm:
            I.vread(r.m, root, va + 4000, 3 * 4096)
        self.assertEqual((cm.exception.errno, cm.exception.level, cm.exception.done),
                         (errno.EFAULT, 1, 96 + 4096))

    def test_not_present_each_level(self):
        """not present at every level of 4- and 5-level paging names that level"""
        for levels, mode, va in ((4, I.MODE_4LEVEL, 0x7f1234567000),
                                 (5, I.MODE_LA57, 0x00ff123456789000)):
            r = Ram()
            try:
                root, d = r.page(), r.page()
                r.map64(root, levels, va, d)
                self.assertEqual(I.translate(r.m, root, va, mode).pa, d)
                for lvl in range(1, levels + 1):
                    table = root
                    for k in range(levels, lvl, -1):
                        table = r.get64(table + ((va >> (12 + 9 * (k - 1))) & 511) * 8) & 0x000ffffffffff000
                    eg = table + ((va >> (12 + 9 * (lvl - 1))) & 511) * 8
                    e = r.get64(eg)
                    r.set64(eg, e & ~P)
                    with self.assertRaises(vmsig.NotMapped) as cm:
                        I.translate(r.m, root, va, mode)
                    self.assertEqual((cm.exception.level, cm.exception.fault, cm.exception.entry_gpa),
                                     (lvl, I.NOT_PRESENT, eg))
                    r.set64(eg, e)
            finally:
                r.close()

    def test_large_pages_reserved_noncanonical(self):
        """2 MiB and 1 GiB pages; PS in a PML4E is reserved; non-canonical VAs"""
        r = self.r
        root = r.page()
        r.map64(root, 4, 0xffffffff81000000, 16 << 20, leaf=2, bits=P | W | (1 << 12))
        r.map64(root, 4, 0xffff888000000000, 0, leaf=3)
        t = I.translate(r.m, root, 0xffffffff81012345)
        self.assertEqual((t.pa, t.page_size, t.level), ((16 << 20) + 0x12345, 2 << 20, 2))
        t = I.translate(r.m, root, 0xffff888000000000 + (40 << 20) + 16)
        self.assertEqual((t.pa, t.page_size, t.level), ((40 << 20) + 16, 1 << 30, 3))
        r.w[(8 << 20):(8 << 20) + 8] = b"one-gig!"
        self.assertEqual(r.m.read(8 << 20, 8), I.vread(r.m, root, 0xffff888000000000 + (8 << 20), 8))
        with self.assertRaises(vmsig.NotMapped) as cm:
            I.translate(r.m, root, 0xffff888000000000 + (100 << 20))
        self.assertEqual(cm.exception.fault, I.NOT_RAM)
        r.set64(root + ((0x100000000000 >> 39) & 511) * 8, P | PS)
        with self.assertRaises(vmsig.NotMapped) as cm:
            I.translate(r.m, root, 0x100000000000)
        self.assertEqual((cm.exception.fault, cm.exception.level), (I.RESERVED, 4))
        with self.assertRaises(vmsig.NotMapped) as cm:
            I.translate(r.m, root, 0x0000800000000000)
        self.assertEqual(cm.exception.fault, I.NONCANONICAL)

    def test_32bit(self):
        """PAE (2 MiB and 4 KiB) and legacy 32-bit (4 MiB with PSE, 4 KiB); mode_of"""
        r = self.r
        pdpt, pd, pt, d = r.page() + 0x20, r.page(), r.page(), r.page()
        r.set64(pdpt + 3 * 8, pd | P)
        r.set64(pd + 0x10 * 8, (20 << 20) | P | W | PS)
        r.set64(pd + 0x11 * 8, pt | P | W | U)
        r.set64(pt + 5 * 8, d | P | W | U | NX)
        self.assertEqual(I.translate(r.m, pdpt, 0xc2000123, I.MODE_PAE32).pa, (20 << 20) + 0x123)
        self.assertEqual(I.translate(r.m, pdpt, 0xc2205008, I.MODE_PAE32).pa, d + 8)
        with self.assertRaises(vmsig.NotMapped) as cm:
            I.translate(r.m, pdpt, 0x40000000, I.MODE_PAE32)
        self.assertEqual(cm.exception.level, 3)
        pgd, pt2, d2 = r.page(), r.page(), r.page()
        r.w[pgd + 0x300 * 4:pgd + 0x300 * 4 + 4] = ((8 << 20) | P | W | PS).to_bytes(4, "little")
        r.w[pgd + 0x301 * 4:pgd + 0x301 * 4 + 4] = (pt2 | P | W).to_bytes(4, "little")
        r.w[pt2 + 7 * 4:pt2 + 7 * 4 + 4] = (d2 | P).to_bytes(4, "little")
        lf = I.MODE_LEGACY32 | I.PSE
        t = I.translate(r.m, pgd, 0xc0123456, lf)
        self.assertEqual((t.pa, t.page_size), ((8 << 20) + 0x123456, 4 << 20))
        self.assertEqual(I.translate(r.m, pgd, 0xc0407001, lf).pa, d2 + 1)
        self.assertEqual(I.mode_of(0x80050033, 0x3406f0, 0xd01), I.MODE_4LEVEL)
        self.assertEqual(I.mode_of(0x80050033, 0x1000, 0xd01), I.MODE_LA57)
        self.assertEqual(I.mode_of(0x80000011, 0x20, 0), I.MODE_PAE32)
        self.assertEqual(I.mode_of(0x80000011, 0x10, 0), lf)
        self.assertEqual(I.mode_of(0x11, 0, 0), I.MODE_PHYS)

    def test_vmcoreinfo(self):
        """VMCOREINFO found as a note behind a decoy; the root derived and verified"""
        r = self.r
        text = ("OSRELEASE=6.1.0-99-test\nPAGESIZE=4096\nSYMBOL(init_uts_ns)=ffffffff82a00000\n"
                "OFFSET(uts_namespace.name)=0\nSYMBOL(swapper_pg_dir)=ffffffff8240a000\n"
                "NUMBER(phys_base)=-16777216\nKERNELOFFSET=1000000\n").encode()
        r.w[0x200010:0x200010 + 24] = b"VMCOREINFO\0OSRELEASE=%s\n"
        note = 0x300000
        r.w[note:note + 24] = (11).to_bytes(4, "little") + len(text).to_bytes(4, "little") + \
            bytes(4) + b"VMCOREINFO\0\0"
        r.w[note + 24:note + 24 + len(text)] = text
        root = 0x140a000
        r.next = 0x1500000
        for off in range(0, 12 << 20, 2 << 20):
            r.map64(root, 4, 0xffffffff82000000 + off, 0x1000000 + off, leaf=2)
        r.w[0x1a00000 + 130:0x1a00000 + 144] = b"6.1.0-99-test\0"
        li = I.linux(r.m)
        self.assertEqual((li.release, li.root, li.kaslr_offset, li.phys_base, li.text_gpa),
                         ("6.1.0-99-test", root, 0x1000000, -16777216, note + 24))
        self.assertTrue(li.note and li.verified)
        self.assertEqual(li.symbol("init_uts_ns"), 0xffffffff82a00000)
        self.assertEqual(li.number("NUMBER(phys_base)"), -16777216)


if __name__ == "__main__":
    unittest.main()
