"""The Python client against the real QEMU (the e2e build) and the e2e
test guest (scripts/vm.sh's machine): every call, every refusal as an
exception with its errno, guest RAM through the read-only mapping."""
import errno
import os
import selectors
import tempfile
import time
import unittest

import vmtest
from vmtest import COUNTER, MAGIC, MAILBOX
import vmsig

WEAK = "weak-token-for-tests"


@unittest.skipUnless(vmtest.have_qemu(), "no QEMU build or guest (scripts/build-qemu, build-guest)")
class Guest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        uid = os.getuid()
        cls.vm = vmtest.VM(grants="uid:%d endpoints=0 caps=all\ntoken:%s endpoints=0 caps=OBSERVE\n"
                           % (uid, WEAK))
        if not cls.vm.wait_console("vmsig-guest: ready", 120):
            log = cls.vm.qemu_log()
            cls.vm.close()
            raise RuntimeError("the guest did not boot: " + log)
        cls.c = vmsig.connect(cls.vm.sock, timeout=10)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.vm.close()

    def setUp(self):
        self.c.poll()  # start each test with no stale events

    def counter(self):
        return self.c.memory().u32(COUNTER)

    def test_a_welcome_and_status(self):
        """WELCOME names our uid and grant; status() is the running guest"""
        w = self.c.welcome
        self.assertEqual(w.principal, os.getuid())
        self.assertEqual(w.caps, vmsig.wire.VMSIG_CAP_ALL_1_0)
        self.assertEqual(w.endpoints, (0,))
        self.assertEqual(self.c.features, vmsig.wire.VMSIG_FEATURES_KNOWN)
        st = self.c.status()
        self.assertEqual(st.state_name, "running")
        self.assertTrue(st.running)
        self.assertEqual(st.ram_size, 256 << 20)
        self.assertEqual(st.name, "vmsig-guest")
        self.assertRegex(st.version, r"^\d+\.\d+\.\d+")  # the QEMU under test (7.2.22 or later)
        self.assertEqual(st.pid, self.vm.proc.pid)
        self.assertEqual(st.accel, "tcg")
        self.c.nop()

    def test_a_snapshot_first(self):
        """a new control gets the RUNSTATE snapshot (seq 1) then the MEMCTX"""
        with vmsig.connect(self.vm.sock) as c2:
            ev = c2.next_event(5)
            self.assertIsInstance(ev, vmsig.RunState)
            self.assertTrue(ev.snapshot)
            self.assertEqual((ev.seq, ev.lost, ev.state_name), (1, 0, "running"))
            ev = c2.next_event(5)
            self.assertIsInstance(ev, vmsig.MemCtx)
            self.assertEqual(ev.name, "memctx")
            self.assertTrue(ev.available and ev.fds)

    def test_features_off(self):
        """without VMINFO_HOST the status has no pid"""
        with vmsig.connect(self.vm.sock, features_off=vmsig.wire.VMSIG_FEAT_VMINFO_HOST) as c2:
            self.assertEqual(c2.features & vmsig.wire.VMSIG_FEAT_VMINFO_HOST, 0)
            self.assertIsNone(c2.status().pid)

    def test_stop_cont_events_and_counter(self):
        """stop: RUNSTATE paused before the REPLY, the counter stops; cont: it moves"""
        self.c.stop()
        evs = self.c.poll()
        self.assertTrue(any(isinstance(e, vmsig.RunState) and e.state_name == "paused" for e in evs),
                        evs)
        self.assertEqual(self.c.status().state_name, "paused")
        c1 = self.counter()
        time.sleep(1.0)
        self.assertEqual(self.counter(), c1)
        self.c.cont()
        ev = self.c.wait_for(lambda e: isinstance(e, vmsig.RunState), 5)
        self.assertEqual(ev.state_name, "running")
        time.sleep(1.0)
        self.assertNotEqual(self.counter(), c1)

    def test_pause_resume(self):
        """pause/resume (CMD_LIFECYCLE)"""
        self.c.pause()
        self.assertFalse(self.c.status().running)
        self.c.resume()
        self.assertTrue(self.c.status().running)

    def test_wakeup_not_suspended(self):
        """wakeup of a running guest: InvalidArgument (EINVAL) with QEMU's text"""
        with self.assertRaises(vmsig.InvalidArgument) as cm:
            self.c.wakeup()
        self.assertEqual(cm.exception.errno, errno.EINVAL)
        self.assertIn("suspend", cm.exception.server_text)

    def test_memory_find_read_view(self):
        """find the kernel banner, read the guest's magic, view is live and zero-copy"""
        mem = self.c.memory()
        hits = mem.find(b"Linux version 6", max=1)
        self.assertEqual(len(hits), 1)
        self.assertTrue(mem.read(hits[0], 20).startswith(b"Linux version 6"))
        self.assertEqual(mem.read(MAGIC, 4), b"GISV")
        v = mem.view(COUNTER, 4)
        self.assertIsInstance(v, memoryview)
        self.assertTrue(v.readonly)
        a = int.from_bytes(v, "little")
        time.sleep(0.5)
        self.assertNotEqual(int.from_bytes(v, "little"), a, "the view is live (no copy)")
        with self.assertRaises(vmsig.BadAddress):
            mem.read(0xFFFF_0000_0000, 4)
        with self.assertRaises(TypeError):
            v[0] = 1  # read-only

    def test_memory_read_into(self):
        """read_into a page-aligned mmap equals read(); a read-only buffer and RAM's end are refused"""
        import mmap
        mem = self.c.memory()
        buf = mmap.mmap(-1, 1 << 20)
        self.assertEqual(mem.read_into(MAGIC & ~0xFFF, buf), 1 << 20)
        self.assertEqual(buf[MAGIC & 0xFFF:(MAGIC & 0xFFF) + 4], b"GISV")
        self.assertEqual(bytes(buf[:4096]), mem.read(MAGIC & ~0xFFF, 4096))
        small = bytearray(8)
        self.assertEqual(mem.read_into(MAGIC, small), 8)
        self.assertEqual(bytes(small[:4]), b"GISV")
        with self.assertRaises(TypeError):
            mem.read_into(MAGIC, b"12345678")
        last = max(s.gpa + s.size for s in mem.segments)
        with self.assertRaises(vmsig.BadAddress) as cm:
            mem.read_into(last - 4, bytearray(8))
        self.assertEqual(cm.exception.errno, errno.EFAULT)
        buf.close()

    def test_memwrite_and_done_event(self):
        """MEMWRITE the mailbox: MEMWRITE_DONE before the REPLY, the guest prints it"""
        val = 0x1122334455667788
        self.c.memwrite(MAILBOX, val.to_bytes(8, "little"))
        evs = self.c.poll()
        done = [e for e in evs if isinstance(e, vmsig.MemWriteDone)]
        self.assertEqual(len(done), 1, evs)
        self.assertEqual((done[0].gpa, done[0].len, done[0].writer), (MAILBOX, 8, os.getuid()))
        self.assertEqual(self.c.memory().u64(MAILBOX), val)
        self.assertTrue(self.vm.wait_console("vmsig-mailbox: 0x%016x" % val, 30))

    def test_memwrite_outside_ram(self):
        """MEMWRITE outside RAM: BadAddress, errno EFAULT"""
        with self.assertRaises(vmsig.BadAddress) as cm:
            self.c.memwrite(0xFFF0_0000_00, b"x")
        self.assertEqual(cm.exception.errno, errno.EFAULT)

    def test_weak_token(self):
        """a token with OBSERVE only: stop is PermissionDenied (EPERM); a wrong token too"""
        with vmsig.connect(self.vm.sock, token=WEAK) as weak:
            self.assertEqual(weak.welcome.principal, vmsig.wire.fnv1a32_principal(WEAK))
            for call in (weak.stop, weak.status, weak.quit, lambda: weak.memwrite(MAILBOX, b"1"),
                         lambda: weak.type("x")):
                with self.assertRaises(vmsig.PermissionDenied) as cm:
                    call()
                self.assertEqual(cm.exception.errno, errno.EPERM)
            with self.assertRaises(vmsig.PermissionDenied):
                weak.memory()
        with self.assertRaises(vmsig.PermissionDenied) as cm:
            vmsig.connect(self.vm.sock, token="not-in-the-file")
        self.assertEqual(cm.exception.errno, errno.EPERM)

    def test_acquire_busy_release(self):
        """acquire: a non-owner gets Busy (EBUSY); release by a non-owner NotOwner (ENOENT)"""
        with vmsig.connect(self.vm.sock) as other:
            with self.c.acquire("run"):
                evs = self.c.poll()
                self.assertTrue(any(isinstance(e, vmsig.Arb) and e.what_name == "granted"
                                    and e.cls_name == "run" for e in evs), evs)
                with self.assertRaises(vmsig.Busy) as cm:
                    other.stop()
                self.assertEqual(cm.exception.errno, errno.EBUSY)
                with self.assertRaises(vmsig.Busy):
                    other.acquire("run")
                with self.assertRaises(vmsig.NotOwner) as cm:
                    other.release("run")
                self.assertEqual(cm.exception.errno, errno.ENOENT)
            other.stop()   # released by the with block
            other.cont()
        self.assertTrue(any(isinstance(e, vmsig.Arb) and e.what_name == "released"
                            for e in self.c.poll()))

    def test_input(self):
        """key, combo, type (in pieces), mouse: accepted by QEMU"""
        with self.c.acquire("input"):
            self.c.key("ret")
            self.c.key("a", down=True)
            self.c.key("a", down=False)
            self.c.combo("shift", "a")
            self.c.type("echo hello from python\n" * 10)  # > 192 chars: several pieces
            self.c.mouse_move(10, -5)
            self.c.mouse_abs(16000, 16000)
            self.c.mouse_button("left")
        with self.assertRaises(ValueError):
            self.c.key("no-such-key")
        with self.assertRaises(vmsig.InvalidArgument):
            self.c.input(vmsig.wire.VMSIG_INPUT_ABS, 0, 40000)

    def test_subscribe(self):
        """subscribe narrows what arrives; the REPLY is the effective subscription"""
        with vmsig.connect(self.vm.sock, subscription=["arb"]) as c2:
            self.assertEqual(c2.welcome.source_mask, vmsig.wire.SOURCES["arb"])
            self.c.stop()
            self.c.cont()
            with self.assertRaises(vmsig.Timeout):
                c2.next_event(0.3)
            src, eps = c2.subscribe(["seam"])
            self.assertEqual((src, eps), (vmsig.wire.SOURCES["seam"], 1))
            ev = c2.next_event(2)
            self.assertTrue(ev.snapshot and isinstance(ev, vmsig.RunState))

    def test_fileno_selectors(self):
        """fileno() works with selectors: readable after a stop from another control"""
        with vmsig.connect(self.vm.sock, subscription=["seam"]) as c2:
            c2.next_event(2)  # snapshot
            sel = selectors.DefaultSelector()
            sel.register(c2, selectors.EVENT_READ)
            self.assertEqual(sel.select(0.2), [])
            self.c.stop()
            self.assertTrue(sel.select(2))
            self.assertEqual(c2.next_event(1).state_name, "paused")
            self.c.cont()
            sel.close()

    def test_dump(self):
        """dump writes all RAM (holes as file holes) and equals read(); progress is called"""
        mem = self.c.memory()
        self.c.stop()
        try:
            with tempfile.TemporaryDirectory() as d:
                p = os.path.join(d, "ram.bin")
                calls = []
                n = mem.dump(p, progress=lambda done, total: calls.append((done, total)))
                self.assertEqual(n, sum(s.size for s in mem.segments))
                self.assertEqual(os.path.getsize(p), n)
                self.assertEqual(calls[-1], (n, n))
                seg = mem.segments[-1]
                off = sum(s.size for s in mem.segments[:-1])
                with open(p, "rb") as f:
                    f.seek(off + (MAGIC - seg.gpa))
                    self.assertEqual(f.read(4), b"GISV")
                    f.seek(off + 0x100000)
                    self.assertEqual(f.read(4096), mem.read(seg.gpa + 0x100000, 4096, sparse=True))
                self.assertLess(os.stat(p).st_blocks * 512, n, "holes stayed holes")
        finally:
            self.c.cont()

    def test_holes_are_not_allocated(self):
        """find/dump/sparse read skip holes: the memfd's st_blocks do not grow;
        a plain read of a hole does grow it (so the check can fail)"""
        mem = self.c.memory()
        m = mem.map
        fd = m.fds[0]
        before = os.fstat(fd).st_blocks
        self.assertEqual(mem.find(b"no such pattern \x01\x02\x03 anywhere"), [])
        mem.read(0x100000, 32 << 20, sparse=True)
        after = os.fstat(fd).st_blocks
        self.assertLessEqual(after - before, 64, "find grew the memfd by %d blocks" % (after - before))
        # a hole, read the plain way, is allocated by the host
        data = mem.data_ranges()
        hole = None
        prev = 0
        for g, n in data:
            if g - prev >= (2 << 20) and g > 0x100000:
                hole = (prev, g - prev)
                break
            prev = g + n
        self.assertIsNotNone(hole, "no 2 MiB hole in the guest's RAM")
        b1 = os.fstat(fd).st_blocks
        bytes(mem.view(hole[0], 1 << 20))
        self.assertGreater(os.fstat(fd).st_blocks, b1 + 1000, "reading a hole allocates it")

    def test_example_agent_loop(self):
        """examples/agent_loop.py runs against the guest and sees its events"""
        import subprocess
        import sys
        r = subprocess.run([sys.executable, os.path.join(vmtest.ROOT, "examples", "agent_loop.py"),
                            self.vm.sock], capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, PYTHONPATH=os.path.join(vmtest.ROOT, "python")))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("event: memwrite-done", r.stdout)
        self.assertIn("runstate ep0", r.stdout)

    def test_zz_powerdown_and_quit(self):
        """powerdown: POWERDOWN event; quit: SHUTDOWN event, then VMGone with the BYE"""
        self.c.powerdown()
        ev = self.c.wait_for(lambda e: isinstance(e, vmsig.PowerDown), 10)
        self.assertEqual(ev.name, "powerdown")
        self.c.quit()
        ev = self.c.wait_for(lambda e: isinstance(e, vmsig.Shutdown), 10)
        self.assertEqual(ev.cause_name, "host-qmp-quit")
        with self.assertRaises(vmsig.VMGone) as cm:
            for _ in range(100):
                self.c.next_event(10)
        self.assertEqual(cm.exception.bye_status, -errno.ESHUTDOWN)
        self.assertEqual(cm.exception.errno, errno.EPIPE)


@unittest.skipUnless(vmtest.have_qemu(), "no QEMU build")
class ResetVM(unittest.TestCase):
    def test_reset_follows_generation(self):
        """reset: RESET event, new MEMCTX generations; Memory follows them"""
        vm = vmtest.VM(kernel=False, reboot=True)
        self.addCleanup(vm.close)
        self.c = vmsig.connect(vm.sock)
        self.addCleanup(self.c.close)
        self.c.cont()   # SeaBIOS runs and changes the map (PAM)
        time.sleep(1)
        mem = self.c.memory()
        g0 = mem.generation
        self.c.reset()
        ev = self.c.wait_for(lambda e: isinstance(e, vmsig.Reset), 10)
        self.assertEqual(ev.cause_name, "host-qmp-system-reset")
        self.c.wait_for(lambda e: isinstance(e, vmsig.MemCtx) and e.generation > g0, 10)
        deadline = time.monotonic() + 10
        while mem.generation == g0 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertGreater(mem.generation, g0)
        # The firmware goes on changing the map for a moment after a reset:
        # once it holds still, Memory is at the server's current generation.
        deadline = time.monotonic() + 10
        while True:
            gen = self.c.status().memctx_gen
            self.c.poll()  # take the MEMCTX frames that came with the reply
            if mem.generation == gen or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(gen, mem.generation)



@unittest.skipUnless(vmtest.have_qemu(), "no QEMU build")
class AnonymousRam(unittest.TestCase):
    def test_memory_unavailable(self):
        """guest RAM not in a shared memfd: memory() raises Unavailable (ENODEV) naming the fix"""
        vm = vmtest.VM(memfd=False, kernel=False)
        try:
            with vmsig.connect(vm.sock) as c:
                with self.assertRaises(vmsig.Unavailable) as cm:
                    c.memory()
                self.assertEqual(cm.exception.errno, errno.ENODEV)
                self.assertIn("share=on", str(cm.exception))
        finally:
            vm.close()


if __name__ == "__main__":
    unittest.main()
