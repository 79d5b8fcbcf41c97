"""numpy.frombuffer over Memory.view(): zero-copy (a MEMWRITE shows in the
array without reading again). Runs under /usr/bin/python3 (Debian's
python3-numpy); skipped with the reason when numpy cannot be imported."""
import unittest

import vmtest
import vmsig

try:
    import numpy
except ImportError as e:  # pragma: no cover
    numpy = None
    why = "numpy is not importable by this python (%s): apt-get install python3-numpy" % e


@unittest.skipUnless(numpy is not None, why if numpy is None else "")
@unittest.skipUnless(vmtest.have_qemu(), "no QEMU build")
class Numpy(unittest.TestCase):
    def test_frombuffer_is_zero_copy(self):
        """numpy.frombuffer(view) shares the mapping: MEMWRITE shows up in the array"""
        vm = vmtest.VM(kernel=False)
        try:
            c = vmsig.connect(vm.sock)
            mem = c.memory()
            a = numpy.frombuffer(mem.view(0x0C800000, 4096), dtype=numpy.uint64)
            self.assertFalse(a.flags.writeable)
            self.assertFalse(a.flags.owndata)
            c.memwrite(0x0C800000, (0xDEADBEEF12345678).to_bytes(8, "little"))
            self.assertEqual(int(a[0]), 0xDEADBEEF12345678)
            c.memwrite(0x0C800000 + 8 * 511, (7).to_bytes(8, "little"))
            self.assertEqual(int(a[511]), 7)
            big = numpy.frombuffer(mem.view(0x100000, 64 << 20), dtype=numpy.uint8)
            self.assertEqual(big.size, 64 << 20)
            c.close()
        finally:
            vm.close()


if __name__ == "__main__":
    unittest.main()
