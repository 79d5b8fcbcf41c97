"""Test support: boot the e2e test guest with -object vmsig, as
scripts/vm.sh does, and a unittest runner that prints TAP lines
("ok N - name" / "not ok N - name") for scripts/test's tap().

Environment (set by tests/python/run.sh from scripts/lib.sh):
  VMSIG_QEMU, QEMU_MODULE_DIR      the QEMU build with the vmsig module
  VMSIG_GUEST_KERNEL, VMSIG_GUEST_INITRD   the guest (scripts/build-guest)
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import unittest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))

MAILBOX = 0x0C800000
COUNTER = 0x0C800008
MAGIC = 0x0C800010
CMD = 0x0C800018


def have_qemu():
    """True if the QEMU build and the guest are there. With
    VMSIG_PY_REQUIRE_VM=1 (tests/python/run.sh, so scripts/test) always
    True: a missing build then fails the tests instead of skipping them."""
    if os.environ.get("VMSIG_PY_REQUIRE_VM") == "1":
        return True
    q = os.environ.get("VMSIG_QEMU")
    return bool(q and os.access(q, os.X_OK) and os.environ.get("VMSIG_GUEST_KERNEL"))


class VM:
    """One QEMU with the test guest. ``sock`` is the vmsig socket."""

    def __init__(self, grants=None, memfd=True, extra=(), kernel=True, policy=None, reboot=False,
                 options=""):
        self.dir = tempfile.mkdtemp(prefix="vmsig-py.")
        self.sock = os.path.join(self.dir, "vmsig.sock")
        self.qmp = os.path.join(self.dir, "qmp.sock")
        self.console = os.path.join(self.dir, "console.log")
        gpath = os.path.join(self.dir, "grants")
        with open(gpath, "w") as f:
            f.write(grants if grants is not None else "uid:%d endpoints=0 caps=all\n" % os.getuid())
        obj = "vmsig,id=vs0,path=%s,grants=%s" % (self.sock, gpath)
        if policy:
            obj += ",policy=" + policy
        if options:  # more -object vmsig options ("snapshot-limit=100M")
            obj += "," + options
        args = [os.environ["VMSIG_QEMU"], "-accel", "tcg", "-m", "256", "-smp", "1",
                "-display", "none", "-nodefaults", "-name", "vmsig-guest"]
        if not reboot:  # as scripts/vm.sh: a reset makes QEMU exit
            args.append("-no-reboot")
        if memfd:
            args += ["-object", "memory-backend-memfd,id=ram0,size=256M,share=on",
                     "-machine", "pc,memory-backend=ram0"]
        else:
            args += ["-machine", "pc"]
        if kernel:
            args += ["-kernel", os.environ["VMSIG_GUEST_KERNEL"],
                     "-initrd", os.environ["VMSIG_GUEST_INITRD"],
                     "-append", "console=ttyS0 mem=200M iomem=relaxed quiet panic=-1"]
        else:
            args += ["-S"]
        args += ["-serial", "file:" + self.console, "-qmp", "unix:%s,server=on,wait=off" % self.qmp,
                 "-object", obj] + list(extra)
        self.log = open(os.path.join(self.dir, "qemu.log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        for _ in range(200):
            if os.path.exists(self.sock):
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if not os.path.exists(self.sock):
            self.close()
            raise RuntimeError("QEMU did not start: " + self.qemu_log())

    def qemu_log(self):
        try:
            with open(os.path.join(self.dir, "qemu.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def wait_console(self, text, secs=120):
        end = time.monotonic() + secs
        while time.monotonic() < end:
            try:
                with open(self.console, errors="replace") as f:
                    if text in f.read():
                        return True
            except OSError:
                pass
            if self.proc.poll() is not None:
                return False
            time.sleep(0.1)
        return False

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class TapResult(unittest.TestResult):
    """Prints one TAP line per test as it ends."""

    def __init__(self):
        super().__init__()
        self.n = 0
        self.bad = 0

    def _line(self, test, ok, diag=None, skip=None):
        self.n += 1
        name = "%s.%s" % (type(test).__name__, getattr(test, "_testMethodName", str(test)))
        doc = test.shortDescription() if hasattr(test, "shortDescription") else None
        if doc:
            name += ": " + doc
        name = name.replace("#", "")
        line = "%s %d - %s" % ("ok" if ok else "not ok", self.n, name)
        if skip is not None:
            line += " # SKIP " + skip
        print(line, flush=True)
        if diag:
            for d in diag.rstrip().splitlines():
                print("# " + d)
            sys.stdout.flush()
        if not ok:
            self.bad += 1

    def addSuccess(self, test):
        self._line(test, True)

    def addFailure(self, test, err):
        self._line(test, False, "".join(traceback.format_exception(*err)))

    def addError(self, test, err):
        self._line(test, False, "".join(traceback.format_exception(*err)))

    def addSkip(self, test, reason):
        self._line(test, True, skip=reason)

    def addExpectedFailure(self, test, err):
        self._line(test, True)

    def addUnexpectedSuccess(self, test):
        self._line(test, False, "unexpected success")


def main(module_names):
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for m in module_names:
        suite.addTests(loader.loadTestsFromName(m))
    res = TapResult()
    suite.run(res)
    print("1..%d" % res.n)
    return 1 if res.bad else 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main(sys.argv[1:]))
