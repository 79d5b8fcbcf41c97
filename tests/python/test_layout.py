"""The Python wire layouts against the C header: python/vmsig/_wire.py is
what python/tools/gen_wire.py makes of include/vmsig/ now, and every struct
size, field offset and field size, and every constant, is what a C
compiler says (offsetof/sizeof in a program compiled here)."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from vmtest import ROOT

from vmsig import _wire, wire


class Layout(unittest.TestCase):
    def test_generated_file_is_current(self):
        """_wire.py is exactly what the generator makes of the headers now"""
        r = subprocess.run([sys.executable, os.path.join(ROOT, "python", "tools", "gen_wire.py"),
                            "--check"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    @unittest.skipUnless(shutil.which("cc"), "no C compiler")
    def test_offsets_sizes_constants_match_c(self):
        """every struct size, field offset/size and constant equals the C compiler's"""
        lines = ['#include <stdio.h>', '#include <stddef.h>', '#include "vmsig/vmsig_event.h"',
                 '#include "vmsig/vmsig_keys.h"', 'int main(void) {']
        want = {}
        for name, (fmt, size, fields) in _wire.STRUCTS.items():
            lines.append('printf("S %s %%zu\\n", sizeof(%s));' % (name, name))
            want["S %s" % name] = size
            for f, off, fsize in fields:
                lines.append('printf("O %s.%s %%zu %%zu\\n", offsetof(%s, %s), sizeof(((%s *)0)->%s));'
                             % (name, f, name, f, name, f))
                want["O %s.%s" % (name, f)] = "%d %d" % (off, fsize)
        for n in dir(_wire):
            if n.startswith("VMSIG_"):
                lines.append('printf("C %s %%llu\\n", (unsigned long long)(%s));' % (n, n))
                want["C " + n] = getattr(_wire, n) & ((1 << 64) - 1)
        for k, code in _wire.KEYS.items():
            want["K " + k] = code
        lines.append('#define K(name, code) printf("K %s %u\\n", #name, (unsigned)(code));')
        lines.append("VMSIG_KEYS(K)")
        lines.append("return 0; }")
        d = tempfile.mkdtemp()
        try:
            src = os.path.join(d, "l.c")
            with open(src, "w") as f:
                f.write("\n".join(lines) + "\n")
            exe = os.path.join(d, "l")
            subprocess.run(["cc", "-std=c11", "-I", os.path.join(ROOT, "include"), src, "-o", exe],
                           check=True)
            out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
        finally:
            shutil.rmtree(d)
        got = {}
        for line in out.splitlines():
            t, name, rest = line.split(" ", 2)
            got["%s %s" % (t, name)] = rest
        self.assertEqual(set(got), set(want))
        for k, v in want.items():
            self.assertEqual(got[k], str(v), k)
        # and the struct module agrees with every size
        self.assertGreater(len(_wire.STRUCTS), 14)

    def test_struct_formats(self):
        """each struct's format has the header's size and field offsets"""
        import struct
        for name, (fmt, size, fields) in _wire.STRUCTS.items():
            self.assertEqual(struct.calcsize(fmt), size, name)
            L = wire.Layout(name)
            self.assertEqual(len(L.fields), len(fields), name)

    def test_hello_matches_spec_example(self):
        """the HELLO of docs/protocol.rst's example session, byte for byte"""
        from vmsig import _core
        p = _core.hello_payload(0x7, (1 << 64) - 1, None, 1)
        hdr = wire.HDR.pack(kind=1, len=len(p))
        hexs = (hdr + p).hex()
        # The spec's example is a 1.0 client's HELLO (minor 0); ours says
        # the minor we speak, the rest is byte for byte the same.
        minor = "%02x00" % wire.VMSIG_WIRE_MINOR
        want = ("0100000060000000" + "00" * 24 + "0100" + minor + "00000000" + "0100000000000000"
                + "0700000000000000" + "ff" * 8 + "00" * 64)
        self.assertEqual(hexs, want)
        self.assertEqual(len(hdr + p), 128)

    def test_token_principal(self):
        """FNV-1a principal of the spec's example token"""
        self.assertEqual(wire.fnv1a32_principal("s3cret"), 0xD5D1B367)


class Install(unittest.TestCase):
    @unittest.skipUnless(os.path.exists("/usr/bin/python3"), "no /usr/bin/python3")
    def test_offline_pip_install(self):
        """pip install --no-build-isolation ./python works offline (Debian's setuptools)"""
        d = tempfile.mkdtemp()
        try:
            src = os.path.join(d, "src")
            shutil.copytree(os.path.join(ROOT, "python"), src,
                            ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
            r = subprocess.run(["/usr/bin/python3", "-m", "pip", "install", "--no-build-isolation",
                                "--no-deps", "--no-index", "--target", os.path.join(d, "t"), src],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            r = subprocess.run(["/usr/bin/python3", "-c", "import vmsig; print(vmsig.__file__)"],
                               capture_output=True, text=True, cwd=d,
                               env=dict(os.environ, PYTHONPATH=os.path.join(d, "t")))
            self.assertIn(os.path.join(d, "t"), r.stdout, r.stderr)
        finally:
            shutil.rmtree(d)


if __name__ == "__main__":
    unittest.main()
