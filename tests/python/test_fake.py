"""The client against a hostile stand-in server (a small socket server in
this file): it floods events, sends malformed frames, stops answering,
refuses the handshake, sends fds where none belong. The client raises an
exception with the right errno within its deadline; it never hangs and
never queues without bound."""
import array
import errno
import os
import socket
import tempfile
import threading
import time
import unittest

import vmtest  # noqa: F401  (sys.path)
import vmsig
from vmsig import _core, wire as W


def welcome(features=0, **kw):
    w = dict(major=1, minor=0, principal=1000, endpoint_mask=1, caps=W.VMSIG_CAP_ALL_1_0,
             sub_source_mask=7, sub_endpoint_mask=1, max_payload=W.VMSIG_WIRE_MAX_PAYLOAD,
             max_fds=16, queue_limit=256, features=features)
    w.update(kw)
    p = W.WELCOME.pack(**w)
    return W.HDR.pack(kind=W.VMSIG_MSG_WELCOME, len=len(p)) + p


def frame(kind, payload=b"", **hdr):
    return W.HDR.pack(kind=kind, len=len(payload), **hdr) + payload


def seam(seq, state=W.VMSIG_RS_RUNNING):
    return frame(W.VMSIG_EV_RUNSTATE, W.SEAM.pack(state=state, running=1), id=seq)


def recv_frame(conn):
    h = b""
    while len(h) < 32:
        d = conn.recv(32 - len(h))
        if not d:
            return None, b""
        h += d
    hdr = W.HDR.unpack(h)
    p = b""
    while len(p) < hdr["len"]:
        d = conn.recv(hdr["len"] - len(p))
        if not d:
            break
        p += d
    return hdr, p


class Fake:
    """Accepts one connection and runs script(conn) in a thread."""

    def __init__(self, script):
        self.dir = tempfile.mkdtemp(prefix="vmsig-fake.")
        self.path = os.path.join(self.dir, "s")
        self.ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ls.bind(self.path)
        self.ls.listen(4)
        self.stop = threading.Event()
        self.error = None
        self.t = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.t.start()

    def _run(self, script):
        try:
            conn, _ = self.ls.accept()
            with conn:
                script(conn, self)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # reported by the test
            self.error = e

    def close(self):
        self.stop.set()
        self.t.join(10)
        self.ls.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


def handshake(conn):
    hdr, p = recv_frame(conn)
    h = W.HELLO.unpack(p)
    conn.sendall(welcome(features=h["features"]))
    return h


class FakeServer(unittest.TestCase):
    def run_fake(self, script):
        f = Fake(script)
        self.addCleanup(f.close)
        return f

    def test_flood_while_waiting_for_reply(self):
        """an event flood during a call ends in QueueFull (ENOBUFS), bounded, not a hang"""
        def script(conn, f):
            handshake(conn)
            recv_frame(conn)  # the command
            seq = 1
            try:
                while not f.stop.is_set() and seq < 100000:
                    conn.sendall(b"".join(seam(seq + i) for i in range(100)))
                    seq += 100
            except OSError:
                pass
        f = self.run_fake(script)
        vm = vmsig.connect(f.path, timeout=10)
        t = time.monotonic()
        with self.assertRaises(vmsig.QueueFull) as cm:
            vm.nop()
        self.assertEqual(cm.exception.errno, errno.ENOBUFS)
        self.assertLess(time.monotonic() - t, 10)
        self.assertLessEqual(len(vm._core.queue), _core.QUEUE_MAX)
        # the queued events are still readable, then the connection is gone
        n = 0
        with self.assertRaises(vmsig.VMGone):
            while True:
                vm.next_event(1)
                n += 1
        self.assertEqual(n, _core.QUEUE_MAX)
        vm.close()

    def test_endless_events_do_not_extend_a_deadline(self):
        """a server that keeps sending events but never the REPLY: Timeout at the deadline"""
        def script(conn, f):
            handshake(conn)
            seq = 1
            while not f.stop.is_set():
                try:
                    conn.sendall(seam(seq))
                except OSError:
                    return
                seq += 1
                time.sleep(0.01)
        f = self.run_fake(script)
        vm = vmsig.connect(f.path, timeout=5)
        t = time.monotonic()
        with self.assertRaises(vmsig.Timeout) as cm:
            vm.stop(timeout=0.5)
        self.assertEqual(cm.exception.errno, errno.ETIMEDOUT)
        self.assertLess(time.monotonic() - t, 2)
        vm.close()

    def test_silent_server_handshake_times_out(self):
        """a server that never answers HELLO: connect raises Timeout in time"""
        def script(conn, f):
            f.stop.wait(10)
        f = self.run_fake(script)
        t = time.monotonic()
        with self.assertRaises(vmsig.Timeout):
            vmsig.connect(f.path, timeout=0.5)
        self.assertLess(time.monotonic() - t, 2)

    def test_silent_server_after_command(self):
        """a server that stops answering: the command raises Timeout, ETIMEDOUT"""
        def script(conn, f):
            handshake(conn)
            f.stop.wait(10)
        f = self.run_fake(script)
        vm = vmsig.connect(f.path)
        with self.assertRaises(vmsig.Timeout):
            vm.status(timeout=0.3)
        with self.assertRaises(vmsig.Timeout):
            vm.next_event(0.2)
        vm.close()

    def test_malformed_frame(self):
        """a frame with a wrong payload size: ProtocolError (EPROTO), then VMGone"""
        def script(conn, f):
            handshake(conn)
            conn.sendall(frame(W.VMSIG_EV_RUNSTATE, b"\0" * 15, id=1))
            f.stop.wait(10)
        f = self.run_fake(script)
        vm = vmsig.connect(f.path)
        with self.assertRaises(vmsig.ProtocolError) as cm:
            vm.next_event(2)
        self.assertEqual(cm.exception.errno, errno.EPROTO)
        with self.assertRaises(vmsig.VMGone):
            vm.nop()
        vm.close()

    def test_unknown_kind_and_flags(self):
        """an unknown kind or an unknown header flag from the server is EPROTO"""
        for bad in (frame(0x0999, id=1), frame(W.VMSIG_EV_RUNSTATE, W.SEAM.pack(), id=1, flags=2),
                    frame(W.VMSIG_CMD_NOP, id=1), W.HDR.pack(kind=3, len=(1 << 20) + 5000)):
            def script(conn, f, bad=bad):
                handshake(conn)
                conn.sendall(bad)
                f.stop.wait(10)
            f = Fake(script)
            try:
                vm = vmsig.connect(f.path)
                with self.assertRaises(vmsig.ProtocolError):
                    vm.next_event(2)
                vm.close()
            finally:
                f.close()

    def test_fds_on_a_frame_that_declares_none(self):
        """descriptors on a RUNSTATE: EPROTO, and the descriptors are closed"""
        r, w = os.pipe()
        self.addCleanup(os.close, w)

        def script(conn, f):
            handshake(conn)
            conn.sendmsg([seam(1)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r]))])
            f.stop.wait(10)
        f = self.run_fake(script)
        vm = vmsig.connect(f.path)
        before = len(os.listdir("/proc/self/fd"))
        with self.assertRaises(vmsig.ProtocolError):
            vm.next_event(2)
        self.assertLessEqual(len(os.listdir("/proc/self/fd")), before)
        vm.close()
        os.close(r)

    def test_handshake_refused(self):
        """REPLY(-EPERM) + BYE: PermissionDenied with errno EPERM and the BYE text"""
        def script(conn, f):
            recv_frame(conn)
            conn.sendall(frame(W.VMSIG_MSG_REPLY, status=-errno.EPERM) +
                         frame(W.VMSIG_MSG_BYE, W.BYE.pack(text=b"no grant for uid 1"),
                               status=-errno.EPERM))
        f = self.run_fake(script)
        with self.assertRaises(vmsig.PermissionDenied) as cm:
            vmsig.connect(f.path)
        self.assertEqual(cm.exception.errno, errno.EPERM)
        self.assertIn("no grant for uid 1", str(cm.exception))

    def test_welcome_with_features_not_offered(self):
        """a WELCOME with a feature bit we did not offer is refused (EPROTO)"""
        def script(conn, f):
            recv_frame(conn)
            conn.sendall(welcome(features=1 << 5))
            f.stop.wait(5)
        f = self.run_fake(script)
        with self.assertRaises(vmsig.ProtocolError):
            vmsig.connect(f.path)

    def test_welcome_other_major_and_minor(self):
        """WELCOME major 2: NotSupported (EPROTONOSUPPORT); minor above ours: EPROTO"""
        for kw, exc, en in ((dict(major=2), vmsig.NotSupported, errno.EPROTONOSUPPORT),
                            (dict(minor=W.VMSIG_WIRE_MINOR + 1), vmsig.ProtocolError, errno.EPROTO),
                            (dict(reserved=1), vmsig.ProtocolError, errno.EPROTO)):
            def script(conn, f, kw=kw):
                recv_frame(conn)
                conn.sendall(welcome(**kw))
                f.stop.wait(5)
            f = Fake(script)
            try:
                with self.assertRaises(exc) as cm:
                    vmsig.connect(f.path)
                self.assertEqual(cm.exception.errno, en)
            finally:
                f.close()

    def test_features_negotiated_is_intersection(self):
        """HELLO offers the known features; features_off withholds them"""
        seen = []

        def script(conn, f):
            # record the offer before answering: connect() returns on WELCOME
            hdr, p = recv_frame(conn)
            h = W.HELLO.unpack(p)
            seen.append(h["features"])
            conn.sendall(welcome(features=h["features"]))
            f.stop.wait(5)
        f = self.run_fake(script)
        vm = vmsig.connect(f.path, features_off=W.VMSIG_FEAT_VMINFO_HOST)
        self.assertEqual(seen, [W.VMSIG_FEATURES_KNOWN & ~W.VMSIG_FEAT_VMINFO_HOST])
        self.assertEqual(vm.features, W.VMSIG_FEATURES_KNOWN & ~W.VMSIG_FEAT_VMINFO_HOST)
        vm.close()

    def test_lost_counts_from_seq_gaps(self):
        """a gap in the delivery seq is reported as lost events"""
        def script(conn, f):
            handshake(conn)
            conn.sendall(seam(1) + seam(2) + seam(7) + seam(8))
            f.stop.wait(5)
        f = self.run_fake(script)
        vm = vmsig.connect(f.path)
        lost = [vm.next_event(2).lost for _ in range(4)]
        self.assertEqual(lost, [0, 0, 4, 0])
        vm.close()

    def test_bye_is_vmgone_with_text(self):
        """a BYE: VMGone (EPIPE) carrying the BYE status and text"""
        def script(conn, f):
            handshake(conn)
            recv_frame(conn)
            conn.sendall(frame(W.VMSIG_MSG_BYE, W.BYE.pack(text=b"slow reader: event queue full"),
                               status=-errno.ENOBUFS))
        f = self.run_fake(script)
        vm = vmsig.connect(f.path)
        with self.assertRaises(vmsig.VMGone) as cm:
            vm.stop()
        self.assertEqual(cm.exception.errno, errno.EPIPE)
        self.assertEqual(cm.exception.bye_status, -errno.ENOBUFS)
        self.assertIn("slow reader", cm.exception.bye_text)
        vm.close()

    def test_late_reply_is_ignored(self):
        """a REPLY for a call that timed out does not answer the next call"""
        def script(conn, f):
            handshake(conn)
            h1, _ = recv_frame(conn)
            h2, _ = recv_frame(conn)
            conn.sendall(frame(W.VMSIG_MSG_REPLY, id=h1["id"], status=-errno.EBUSY) +
                         frame(W.VMSIG_MSG_REPLY, id=h2["id"]))
            f.stop.wait(5)
        f = self.run_fake(script)
        vm = vmsig.connect(f.path)
        with self.assertRaises(vmsig.Timeout):
            vm.stop(timeout=0.2)
        vm.stop(timeout=2)  # the second answer (status 0), not the late -EBUSY
        vm.close()

    def test_async_flood_and_silence(self):
        """asyncio: a silent server times out; BYE mid-call raises VMGone"""
        import asyncio

        def script(conn, f):
            handshake(conn)
            recv_frame(conn)  # first call: never answered
            recv_frame(conn)
            conn.sendall(frame(W.VMSIG_MSG_BYE, W.BYE.pack(text=b"going"), status=-errno.ESHUTDOWN))
        f = self.run_fake(script)

        async def main():
            vm = await vmsig.aconnect(f.path)
            with self.assertRaises(vmsig.Timeout):
                await vm.stop(timeout=0.3)
            with self.assertRaises(vmsig.VMGone) as cm:
                await vm.cont(timeout=3)
            self.assertEqual(cm.exception.bye_status, -errno.ESHUTDOWN)
            await vm.close()
        asyncio.run(asyncio.wait_for(main(), 10))


if __name__ == "__main__":
    unittest.main()
