"""In-memory snapshots from Python (protocol 1.2, CMD_SNAPSHOT, EV_SNAPSHOT).

Offline: the client against a stand-in server (test_fake.Fake): payloads,
REPLY bodies, refusals as exceptions, EV_SNAPSHOT decoding, and a RESTORE
whose new MEMCTX comes after the REPLY.

Guest: the real QEMU and the e2e guest (as test_guest): save with the
guest's counter at N, MEMWRITE after the save, restore, and read through
the mapping that the counter is N again and the write is undone; the new
MEMCTX generation is followed; EV_SNAPSHOT; list, delete; every refusal
with its errno (ENOENT, EPERM, EBUSY, EINVAL, EOPNOTSUPP, ENOSPC)."""
import array
import errno
import os
import socket
import time
import unittest

import vmtest
from vmtest import COUNTER, MAILBOX
from test_fake import Fake, frame, handshake, recv_frame, welcome
import vmsig
from vmsig import wire as W

NOSNAP = "token-without-snapshot"
MiB = 1 << 20


def reply(rid, body=b"", status=0):
    return frame(W.VMSIG_MSG_REPLY, body, id=rid, status=status)


def result_body(name=b"s0", generation=1, pages=0, full=0, restores=0):
    return W.SNAP_RESULT.pack(info_name=name, info_ram_bytes=256 * MiB, info_age_ms=5,
                              info_state_bytes=13000, info_restores=restores,
                              generation=generation, pages=pages, stopped_ns=1234, full=full)


def memctx_frame(seq, gen, fd, size):
    p = (W.MEMCTX.pack(generation=gen, ram_size=size, nseg=1)
         + W.MEMSEG.pack(gpa=0, size=size, offset=0, fd_index=0))
    return frame(W.VMSIG_EV_MEMCTX, p, id=seq, nfds=1), fd


def send_fd_frame(conn, data, fd):
    conn.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


def memfd_with(data, size=MiB):
    fd = os.memfd_create("vmsig-test", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    os.pwrite(fd, data, 0)
    return fd


class Offline(unittest.TestCase):
    def fake(self, script):
        f = Fake(script)
        self.addCleanup(f.close)
        return f

    def test_payloads_and_results(self):
        """save/restore/delete/list send the C struct's fields and return its fields"""
        seen = []

        def script(conn, f):
            handshake(conn)
            for body in (result_body(generation=3, pages=65536),
                         result_body(generation=4, pages=12, full=1, restores=1),
                         result_body(generation=4, restores=1),
                         W.SNAP_LIST.pack(count=2, max=16, used=512 * MiB, limit=1 << 30)
                         + W.SNAP_INFO.pack(name=b"a", ram_bytes=256 * MiB, age_ms=9,
                                            state_bytes=13000, restores=2)
                         + W.SNAP_INFO.pack(name=b"b.c_d-1", ram_bytes=256 * MiB, age_ms=1,
                                            state_bytes=13001, restores=0)):
                h, p = recv_frame(conn)
                seen.append((h["kind"], W.SNAPSHOT.unpack(p)))
                conn.sendall(reply(h["id"], body))
            f.stop.wait(10)
        vm = vmsig.connect(self.fake(script).path, auto_map=False)
        self.addCleanup(vm.close)
        self.assertTrue(vm.features & W.VMSIG_FEAT_SNAPSHOT)
        r = vm.snapshot_save("s0", then="pause")
        self.assertEqual((r.name, r.info.ram_bytes, r.info.state_bytes, r.generation, r.pages,
                          r.stopped_ns, r.full), ("s0", 256 * MiB, 13000, 3, 65536, 1234, False))
        r = vm.snapshot_restore("s0", then="run", full=True)
        self.assertEqual((r.generation, r.pages, r.full, r.info.restores), (4, 12, True, 1))
        r = vm.snapshot_delete("s0")
        self.assertIsInstance(r, vmsig.SnapResult)
        ls = vm.snapshot_list()
        self.assertIsInstance(ls, vmsig.SnapList)
        self.assertEqual((ls.count, ls.max, ls.used, ls.limit), (2, 16, 512 * MiB, 1 << 30))
        self.assertEqual(ls.names, ["a", "b.c_d-1"])
        self.assertEqual(ls["a"], vmsig.SnapInfo("a", 256 * MiB, 9, 13000, 2))
        self.assertIn("b.c_d-1", ls)
        self.assertEqual([s.restores for s in ls], [2, 0])
        name0 = b"s0" + bytes(30)
        self.assertEqual(seen, [
            (W.VMSIG_CMD_SNAPSHOT, dict(op=W.VMSIG_SNAP_SAVE, then=W.VMSIG_SNAP_THEN_PAUSE,
                                        flags=0, reserved=0, name=name0)),
            (W.VMSIG_CMD_SNAPSHOT, dict(op=W.VMSIG_SNAP_RESTORE, then=W.VMSIG_SNAP_THEN_RUN,
                                        flags=W.VMSIG_SNAP_F_FULL, reserved=0, name=name0)),
            (W.VMSIG_CMD_SNAPSHOT, dict(op=W.VMSIG_SNAP_DELETE, then=0, flags=0, reserved=0,
                                        name=name0)),
            (W.VMSIG_CMD_SNAPSHOT, dict(op=W.VMSIG_SNAP_LIST, then=0, flags=0, reserved=0,
                                        name=bytes(32))),
        ])

    def test_refusals_carry_errno_and_text(self):
        """each refusal is its exception with the errno and the server's text"""
        cases = [(errno.ENOENT, vmsig.NoSnapshot), (errno.ESTALE, vmsig.Stale),
                 (errno.ENOSPC, vmsig.NoSpace), (errno.EOPNOTSUPP, vmsig.NotSupported),
                 (errno.EINVAL, vmsig.InvalidArgument), (errno.EPERM, vmsig.PermissionDenied),
                 (errno.EBUSY, vmsig.Busy), (errno.EIO, vmsig.VmsigError)]

        def script(conn, f):
            handshake(conn)
            for e, _ in cases:
                h, _ = recv_frame(conn)
                conn.sendall(reply(h["id"], b"because %d\0" % e, -e))
            f.stop.wait(10)
        vm = vmsig.connect(self.fake(script).path, auto_map=False)
        self.addCleanup(vm.close)
        for e, cls in cases:
            with self.assertRaises(cls) as cm:
                vm.snapshot_restore("s0")
            self.assertEqual((cm.exception.errno, cm.exception.status), (e, -e))
            self.assertEqual(cm.exception.server_text, "because %d" % e)
            self.assertIn("snapshot restore 's0'", str(cm.exception))
        self.assertTrue(issubclass(vmsig.NoSnapshot, FileNotFoundError))
        self.assertFalse(issubclass(vmsig.NoSnapshot, vmsig.NotOwner))

    def test_bad_arguments_are_refused_before_sending(self):
        """a bad name or then: InvalidArgument/ValueError, nothing sent; no feature: NotSupported"""
        kinds = []

        def script(conn, f):
            h, p = recv_frame(conn)
            hello = W.HELLO.unpack(p)
            self.assertTrue(hello["features"] & W.VMSIG_FEAT_SNAPSHOT)
            conn.sendall(welcome(features=hello["features"] & ~W.VMSIG_FEAT_SNAPSHOT))
            while True:
                h, _ = recv_frame(conn)
                if h is None:
                    return
                kinds.append(h["kind"])
                conn.sendall(reply(h["id"]))
        vm = vmsig.connect(self.fake(script).path, auto_map=False)
        self.addCleanup(vm.close)
        with self.assertRaises(vmsig.NotSupported) as cm:
            vm.snapshot_list()
        self.assertEqual(cm.exception.errno, errno.EOPNOTSUPP)
        vm._core.welcome.features |= W.VMSIG_FEAT_SNAPSHOT  # only to reach the argument checks
        for bad in ("", "a b", "x" * 32, "caf\u00e9", "a/b", None):
            with self.assertRaises(vmsig.InvalidArgument) as cm:
                vm.snapshot_save(bad)
            self.assertEqual(cm.exception.errno, errno.EINVAL)
        with self.assertRaises(ValueError):
            vm.snapshot_restore("s0", then="later")
        vm.nop()
        self.assertEqual(kinds, [W.VMSIG_CMD_NOP])

    def test_short_bodies_are_protocol_errors(self):
        """a REPLY body shorter than the struct (or than LIST's count says) is EPROTO"""
        def script(conn, f):
            handshake(conn)
            for body in (result_body()[:87],
                         W.SNAP_LIST.pack(count=2, max=16) + W.SNAP_INFO.pack(name=b"a")):
                h, _ = recv_frame(conn)
                conn.sendall(reply(h["id"], body))
            f.stop.wait(10)
        vm = vmsig.connect(self.fake(script).path, auto_map=False)
        self.addCleanup(vm.close)
        with self.assertRaises(vmsig.ProtocolError):
            vm.snapshot_save("s0")
        with self.assertRaises(vmsig.ProtocolError):
            vm.snapshot_list()

    def test_ev_snapshot_decoded(self):
        """EV_SNAPSHOT is a SnapshotEvent with what, by, generation and the name"""
        def script(conn, f):
            handshake(conn)
            conn.sendall(frame(W.VMSIG_EV_SNAPSHOT, W.SNAP_EVENT.pack(
                what=W.VMSIG_SNAP_RESTORE, by=1000, generation=7, name=b"ep-1"), id=1, ts_ns=5)
                + frame(W.VMSIG_EV_SNAPSHOT, W.SNAP_EVENT.pack(what=9, name=b"x"), id=3))
            f.stop.wait(10)
        vm = vmsig.connect(self.fake(script).path, auto_map=False)
        self.addCleanup(vm.close)
        ev = vm.next_event(5)
        self.assertIsInstance(ev, vmsig.SnapshotEvent)
        self.assertEqual((ev.name, ev.what_name, ev.by, ev.generation, ev.snap_name, ev.seq,
                          ev.ts_ns, ev.snapshot, ev.lost),
                         ("snapshot", "restored", 1000, 7, "ep-1", 1, 5, False, 0))
        self.assertEqual(str(ev), "snapshot ep0 seq 1: restored 'ep-1' by 0x3e8 (gen 7)")
        ev = vm.next_event(5)
        self.assertEqual((ev.what_name, ev.lost), ("unknown", 1))

    def test_restore_waits_for_the_new_map(self):
        """a RESTORE whose MEMCTX comes after the REPLY returns with memory() at the new map"""
        fd1, fd2 = memfd_with(b"AAAAAAAA"), memfd_with(b"BBBBBBBB")
        self.addCleanup(os.close, fd1)
        self.addCleanup(os.close, fd2)

        def script(conn, f):
            handshake(conn)
            send_fd_frame(conn, *memctx_frame(1, 1, fd1, MiB))
            h, _ = recv_frame(conn)
            conn.sendall(reply(h["id"], result_body(generation=2, pages=3)))
            time.sleep(0.3)
            conn.sendall(frame(W.VMSIG_EV_SNAPSHOT, W.SNAP_EVENT.pack(
                what=W.VMSIG_SNAP_RESTORE, by=1000, generation=2, name=b"s0"), id=2))
            send_fd_frame(conn, *memctx_frame(3, 2, fd2, MiB))
            f.stop.wait(10)
        vm = vmsig.connect(self.fake(script).path)
        self.addCleanup(vm.close)
        mem = vm.memory()
        self.assertEqual((mem.generation, mem.read(0, 8)), (1, b"AAAAAAAA"))
        t = time.monotonic()
        r = vm.snapshot_restore("s0")
        self.assertGreater(time.monotonic() - t, 0.25)
        self.assertEqual(r.generation, 2)
        self.assertEqual((mem.generation, mem.read(0, 8)), (2, b"BBBBBBBB"))
        evs = vm.poll()  # the queued gen-1 MEMCTX was replaced by gen 2
        self.assertEqual([(type(e), e.generation) for e in evs],
                         [(vmsig.SnapshotEvent, 2), (vmsig.MemCtx, 2)], evs)


@unittest.skipUnless(vmtest.have_qemu(), "no QEMU build or guest (scripts/build-qemu, build-guest)")
class Guest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.vm = vmtest.VM(grants="uid:%d endpoints=0 caps=all,SNAPSHOT\n"
                           "token:%s endpoints=0 caps=all\n" % (os.getuid(), NOSNAP))
        if not cls.vm.wait_console("vmsig-guest: ready", 120):
            log = cls.vm.qemu_log()
            cls.vm.close()
            raise RuntimeError("the guest did not boot: " + log)
        cls.c = vmsig.connect(cls.vm.sock, timeout=30)
        cls.mem = cls.c.memory()

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.vm.close()

    def setUp(self):
        self.c.poll()

    def tearDown(self):
        if self.c.status().state_name == "paused":
            self.c.cont()

    def counter(self):
        return self.mem.u32(COUNTER)

    def mailbox(self):
        return self.mem.u64(MAILBOX)

    def wait_counter_moves(self, n, secs=10):
        end = time.monotonic() + secs
        while time.monotonic() < end:
            if self.counter() != n:
                return True
            time.sleep(0.1)
        return False

    def test_a_negotiated_and_granted(self):
        """the feature is negotiated and SNAPSHOT is granted by name (caps=all lacks it)"""
        self.assertTrue(self.c.features & W.VMSIG_FEAT_SNAPSHOT)
        self.assertEqual(self.c.welcome.caps, W.VMSIG_CAP_ALL_1_0 | W.VMSIG_CAP_SNAPSHOT)
        self.assertIn("SNAPSHOT", self.c.welcome.caps_names)

    def test_b_save_write_restore(self):
        """save at counter N, MEMWRITE and run on, restore: N and the old mailbox through the
        mapping, a new generation followed, EV_SNAPSHOT to us and to another control"""
        other = vmsig.connect(self.vm.sock, subscription=["seam"], timeout=30)
        self.addCleanup(other.close)
        other.poll()
        r = self.c.snapshot_save("s0", then="pause")
        self.assertEqual(self.c.status().state_name, "paused")
        n, m0 = self.counter(), self.mailbox()
        self.assertEqual((r.name, r.info.ram_bytes, r.info.restores, r.full),
                         ("s0", 256 * MiB, 0, False))
        self.assertGreater(r.info.state_bytes, 1000)
        self.assertEqual(r.generation, self.mem.generation)
        ev = self.c.wait_for(lambda e: isinstance(e, vmsig.SnapshotEvent), 5)
        self.assertEqual((ev.what_name, ev.snap_name, ev.by, ev.generation),
                         ("saved", "s0", os.getuid(), r.generation))

        val = 0x0123456789ABCDEF ^ m0
        self.c.memwrite(MAILBOX, val.to_bytes(8, "little"))
        self.assertEqual(self.mailbox(), val)
        self.c.cont()
        self.assertTrue(self.vm.wait_console("vmsig-mailbox: 0x%016x" % val, 30))
        self.assertTrue(self.wait_counter_moves(n), "the guest runs on after the save")

        g0 = self.mem.generation
        self.c.poll()
        t = time.monotonic()
        r = self.c.snapshot_restore("s0", then="pause")
        took = time.monotonic() - t
        self.assertEqual(self.c.status().state_name, "paused")
        self.assertGreater(r.generation, g0, "restore publishes a new MEMCTX generation")
        self.assertEqual(self.mem.generation, r.generation, "memory() follows it at once")
        self.assertEqual(self.c.status().memctx_gen, r.generation)
        self.assertEqual(self.counter(), n, "the counter is back at N")
        self.assertEqual(self.mailbox(), m0, "the MEMWRITE after the save is undone")
        self.assertGreater(r.pages, 0)
        self.assertLess(r.pages, 65536, "only the pages written since the save")
        self.assertEqual((r.full, r.info.restores), (False, 1))
        self.assertLess(r.stopped_ns / 1e9, took + 0.01)
        evs = self.c.poll()
        snaps = [e for e in evs if isinstance(e, vmsig.SnapshotEvent)]
        self.assertEqual([(e.what_name, e.snap_name, e.generation) for e in snaps],
                         [("restored", "s0", r.generation)], evs)
        self.assertTrue(any(isinstance(e, vmsig.MemCtx) and e.generation == r.generation
                            for e in evs), evs)
        oevs = [e for e in other.poll() if isinstance(e, vmsig.SnapshotEvent)]
        self.assertEqual([(e.what_name, e.by) for e in oevs],
                         [("saved", os.getuid()), ("restored", os.getuid())])

        # the restored guest goes on: it counts and answers its mailbox
        self.c.cont()
        self.assertTrue(self.wait_counter_moves(n), "the restored guest counts")
        val2 = val ^ 0xFF00FF00
        self.c.memwrite(MAILBOX, val2.to_bytes(8, "little"))
        self.assertTrue(self.vm.wait_console("vmsig-mailbox: 0x%016x" % val2, 30))

    def test_c_reset_loop(self):
        """an RL-style loop: restore(then="run") 20 times, each episode starts at N"""
        self.c.snapshot_save("ep0", then="pause")
        n, m0 = self.counter(), self.mailbox()
        for i in range(20):
            r = self.c.snapshot_restore("ep0", then="pause")
            self.assertEqual((self.counter(), self.mailbox()), (n, m0), "episode %d" % i)
            self.assertEqual(self.mem.generation, r.generation)
            self.c.cont()
            self.c.memwrite(MAILBOX, (0x7700 + i).to_bytes(8, "little"))  # the agent acts
            self.c.poll()  # keep the event queue short
        r = self.c.snapshot_restore("ep0", then="run")
        self.assertEqual(self.c.status().state_name, "running")
        self.assertEqual(r.info.restores, 21)
        self.assertTrue(self.wait_counter_moves(n))
        self.c.snapshot_delete("ep0")

    def test_d_full_restore(self):
        """restore full=True copies every page back"""
        self.c.snapshot_save("full")
        r = self.c.snapshot_restore("full", full=True)
        self.assertEqual((r.full, r.pages), (True, 65536))
        self.assertEqual(self.c.status().state_name, "running", "then=None keeps the run state")
        self.c.snapshot_delete("full")

    def test_e_list_and_delete(self):
        """list: oldest first with sizes and restores; delete frees; delete again is ENOENT"""
        self.c.snapshot_save("s1")
        ls = self.c.snapshot_list()
        self.assertEqual(ls.names, ["s0", "s1"])
        self.assertEqual((ls.max, ls.limit), (16, 1 << 30))
        self.assertEqual(ls["s0"].restores, 1)
        self.assertEqual(ls["s1"].ram_bytes, 256 * MiB)
        self.assertGreaterEqual(ls.used, 2 * 256 * MiB + ls["s0"].state_bytes)
        self.assertLess(ls["s1"].age_ms, ls["s0"].age_ms)
        r = self.c.snapshot_delete("s1")
        self.assertEqual(r.name, "s1")
        self.assertEqual(self.c.snapshot_list().names, ["s0"])
        ev = self.c.wait_for(lambda e: isinstance(e, vmsig.SnapshotEvent)
                             and e.what_name == "deleted", 5)
        self.assertEqual(ev.snap_name, "s1")
        with self.assertRaises(vmsig.NoSnapshot) as cm:
            self.c.snapshot_delete("s1")
        self.assertEqual(cm.exception.errno, errno.ENOENT)

    def test_f_unknown_name_is_enoent(self):
        """restore of an unknown name: NoSnapshot, errno ENOENT, the server's text names it"""
        with self.assertRaises(vmsig.NoSnapshot) as cm:
            self.c.snapshot_restore("nosuch")
        self.assertEqual((cm.exception.errno, cm.exception.status), (errno.ENOENT, -errno.ENOENT))
        self.assertIsInstance(cm.exception, FileNotFoundError)
        self.assertIn("nosuch", cm.exception.server_text)
        self.assertEqual(self.c.status().state_name, "running")

    def test_g_no_capability_is_eperm(self):
        """a control without CAP_SNAPSHOT: every op is PermissionDenied (EPERM), nothing changes"""
        with vmsig.connect(self.vm.sock, token=NOSNAP, timeout=30) as weak:
            self.assertTrue(weak.features & W.VMSIG_FEAT_SNAPSHOT)
            self.assertFalse(weak.welcome.caps & W.VMSIG_CAP_SNAPSHOT)
            for call in (weak.snapshot_list, lambda: weak.snapshot_save("w"),
                         lambda: weak.snapshot_restore("s0"), lambda: weak.snapshot_delete("s0")):
                with self.assertRaises(vmsig.PermissionDenied) as cm:
                    call()
                self.assertEqual(cm.exception.errno, errno.EPERM)
                self.assertIn("lacks CAP_SNAPSHOT", str(cm.exception))
            with self.assertRaises(vmsig.PermissionDenied) as cm:
                weak.call(W.VMSIG_CMD_SNAPSHOT, W.SNAPSHOT.pack(op=W.VMSIG_SNAP_LIST))
            self.assertEqual(cm.exception.errno, errno.EPERM)  # the server's own answer
            with self.assertRaises(vmsig.PermissionDenied):
                weak.acquire("snapshot")
        self.assertEqual(self.c.snapshot_list().names, ["s0"])

    def test_h_class_snapshot_is_exclusive(self):
        """another control owning class snapshot: save/restore/delete are Busy (EBUSY), list is not"""
        with vmsig.connect(self.vm.sock, timeout=30) as owner:
            with owner.acquire("snapshot"):
                for call in (lambda: self.c.snapshot_save("b"),
                             lambda: self.c.snapshot_restore("s0"),
                             lambda: self.c.snapshot_delete("s0")):
                    with self.assertRaises(vmsig.Busy) as cm:
                        call()
                    self.assertEqual(cm.exception.errno, errno.EBUSY)
                self.assertEqual(self.c.snapshot_list().names, ["s0"])
                owner.snapshot_list()

    def test_i_server_checks_the_shape(self):
        """a raw CMD_SNAPSHOT with a bad name or field: EINVAL from the server"""
        for p in (W.SNAPSHOT.pack(op=W.VMSIG_SNAP_SAVE, name=b"bad name"),
                  W.SNAPSHOT.pack(op=W.VMSIG_SNAP_SAVE, name=b""),
                  W.SNAPSHOT.pack(op=W.VMSIG_SNAP_DELETE, then=1, name=b"s0"),
                  W.SNAPSHOT.pack(op=W.VMSIG_SNAP_SAVE, flags=W.VMSIG_SNAP_F_FULL, name=b"s0"),
                  W.SNAPSHOT.pack(op=9, name=b"s0"),
                  W.SNAPSHOT.pack(op=W.VMSIG_SNAP_LIST, reserved=1)):
            with self.assertRaises(vmsig.InvalidArgument) as cm:
                self.c.call(W.VMSIG_CMD_SNAPSHOT, p)
            self.assertEqual(cm.exception.errno, errno.EINVAL)
        self.assertEqual(self.c.snapshot_list().names, ["s0"])

    def test_j_without_the_feature(self):
        """features_off=SNAPSHOT: NotSupported here, EOPNOTSUPP from the server, no EV_SNAPSHOT"""
        with vmsig.connect(self.vm.sock, features_off=W.VMSIG_FEAT_SNAPSHOT,
                           subscription=["seam"], timeout=30) as old:
            self.assertFalse(old.features & W.VMSIG_FEAT_SNAPSHOT)
            with self.assertRaises(vmsig.NotSupported):
                old.snapshot_list()
            with self.assertRaises(vmsig.NotSupported) as cm:
                old.call(W.VMSIG_CMD_SNAPSHOT, W.SNAPSHOT.pack(op=W.VMSIG_SNAP_LIST))
            self.assertEqual(cm.exception.errno, errno.EOPNOTSUPP)
            old.poll()
            self.c.snapshot_save("s2")
            self.c.snapshot_delete("s2")
            old.nop()
            self.assertEqual([e for e in old.poll() if e.kind == W.VMSIG_EV_SNAPSHOT], [])

    def test_k_async(self):
        """the asyncio client: save, restore (at the new generation), list, delete"""
        import asyncio

        async def go():
            async with await vmsig.aconnect(self.vm.sock, timeout=30) as a:
                mem = await a.memory()
                await a.snapshot_save("as", then="pause")
                n = mem.u32(COUNTER)
                await a.cont()
                await asyncio.sleep(0.5)
                r = await a.snapshot_restore("as", then="pause")
                self.assertEqual((mem.generation, mem.u32(COUNTER)), (r.generation, n))
                self.assertIn("as", await a.snapshot_list())
                with self.assertRaises(vmsig.NoSnapshot):
                    await a.snapshot_restore("nosuch")
                await a.snapshot_delete("as")
                await a.cont()
        asyncio.run(go())


@unittest.skipUnless(vmtest.have_qemu(), "no QEMU build")
class Limit(unittest.TestCase):
    def test_over_snapshot_limit_is_enospc(self):
        """snapshot-limit=100M with 256 MiB of RAM: save is NoSpace (ENOSPC), saying how much"""
        vm = vmtest.VM(grants="uid:%d endpoints=0 caps=all,SNAPSHOT\n" % os.getuid(),
                       kernel=False, options="snapshot-limit=100M")
        self.addCleanup(vm.close)
        with vmsig.connect(vm.sock, timeout=30) as c:
            self.assertEqual(c.snapshot_list().limit, 100 * MiB)
            with self.assertRaises(vmsig.NoSpace) as cm:
                c.snapshot_save("big")
            self.assertEqual(cm.exception.errno, errno.ENOSPC)
            self.assertIn("snapshot-limit", cm.exception.server_text)
            self.assertEqual(len(c.snapshot_list()), 0)


if __name__ == "__main__":
    unittest.main()
