"""The blocking client: ``vmsig.connect(path)`` returns a ``Client``.

One thread at a time. Every call that waits takes ``timeout`` in seconds
(None: the connection's default, given to ``connect``); every wait ends at
its deadline however many frames keep arriving.
"""
from __future__ import annotations

import errno as E
import os
import select
import socket
import time
from contextlib import contextmanager
from typing import Iterator, List, Optional, Union

from . import _core
from . import errors
from . import wire as W
from .events import Event, MemCtx, VMInfo, Welcome
from .memory import MemMap, Memory
from . import introspect
from . import snapshot
from .snapshot import SnapList, SnapResult

DEFAULT_TIMEOUT = 5.0


def _deadline(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None or timeout < 0 else time.monotonic() + timeout


def _left(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class _Base:
    """What the blocking and the asyncio client share."""

    _core: _core.Core
    endpoint: int

    def _setup(self, sock: socket.socket, endpoint: int, auto_map: bool) -> None:
        self._core = _core.Core(sock, endpoint)
        self.endpoint = endpoint
        self._maps: dict = {}
        self._sub: Optional[tuple] = None  # effective (source_mask, endpoint_mask) after subscribe()
        if auto_map:
            self._core.memctx_listeners.append(self._on_memctx)

    def _on_memctx(self, ev: MemCtx) -> None:
        old = self._maps.get(ev.endpoint)
        try:
            self._maps[ev.endpoint] = MemMap(ev)
        except errors.VmsigError as e:
            self._maps[ev.endpoint] = e
        except OSError as e:
            self._maps[ev.endpoint] = errors.error_for(e.errno or E.EIO, "cannot map MEMCTX: %s" % e)
        if isinstance(old, MemMap):
            old.close()

    @property
    def welcome(self) -> Welcome:
        """The server's WELCOME: principal, grant, effective subscription, features."""
        assert self._core.welcome is not None
        return self._core.welcome

    @property
    def features(self) -> int:
        """The negotiated VMSIG_FEAT_* bits."""
        return self.welcome.features

    def fileno(self) -> int:
        """The socket, for select/selectors/poll: readable means frames came."""
        return self._core.sock.fileno()

    @property
    def closed(self) -> bool:
        return self._core.sock.fileno() < 0

    @property
    def bye(self):
        """(status, text) of the server's BYE, or None."""
        return self._core.bye

    def _ep(self, endpoint: Optional[int]) -> int:
        return self.endpoint if endpoint is None else endpoint

    def _check_status(self, st: int, body: bytes, what: str, kinds=None) -> None:
        if st < 0:
            text = W.cstr(body) if body else ""
            raise errors.error_for(st, what, text, kinds)

    def _snap_check(self, what: str) -> None:
        if not self.features & W.VMSIG_FEAT_SNAPSHOT:
            raise errors.NotSupported(E.EOPNOTSUPP, "%s: the server does not offer snapshots "
                                      "(protocol feature SNAPSHOT not negotiated: a vmsig module "
                                      "older than 1.2, or features_off)" % what)

    def _snap_refused(self, e: errors.PermissionDenied, what: str) -> errors.VmsigError:
        """The server's EPERM has no text; say which capability is missing."""
        if self.welcome.caps & W.VMSIG_CAP_SNAPSHOT:
            return e
        return errors.PermissionDenied(E.EPERM, "%s: the grant lacks CAP_SNAPSHOT (granted by "
                                       "name only: caps=...,SNAPSHOT)" % what, e.server_text)

    def _behind(self, ep: int, generation: int) -> bool:
        """True while this client maps MEMCTX for ep and its map is older
        than ``generation`` (a RESTORE's new one)."""
        src, eps = self._sub if self._sub is not None else (self.welcome.source_mask,
                                                             self.welcome.sub_endpoint_mask)
        if not self._core.memctx_listeners or not src & W.SOURCES["memctx"] or not eps >> ep & 1:
            return False
        m = self._maps.get(ep)
        return not isinstance(m, errors.VmsigError) and (m is None or m.generation < generation)

    def _release_maps(self) -> None:
        for m in self._maps.values():
            if isinstance(m, MemMap):
                m.close()
        self._maps.clear()
        while self._core.queue:
            ev = self._core.queue.popleft()
            if isinstance(ev, MemCtx):
                ev.close()
        for ev in self._core.latest_memctx.values():
            ev.close()
        self._core.latest_memctx.clear()


def _check_cpu(c) -> None:
    if not c.welcome.caps & W.VMSIG_CAP_CPU:
        raise errors.PermissionDenied(E.EPERM, "regs: the grant lacks CAP_CPU")
    if not c.features & W.VMSIG_FEAT_CPU:
        raise errors.NotSupported(E.EOPNOTSUPP, "regs: the server does not support CMD_CPU "
                                  "(protocol feature CPU not negotiated)")


def _make_socket(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.setblocking(False)
    return s


class Client(_Base):
    """A connection to a vmsig server (one control). Use ``vmsig.connect``.

    Commands raise a ``vmsig.VmsigError`` subclass with the server's errno
    and text when refused; ``events()`` yields typed events. A context
    manager: ``with vmsig.connect(path) as vm: ...`` closes it.
    """

    # one poll object for the socket, made at the first wait
    _poll_in: Optional["select.poll"] = None
    _poll_sock: Optional[socket.socket] = None

    def __init__(self, path: str, token: Optional[str] = None, subscription=None,
                 timeout: Optional[float] = DEFAULT_TIMEOUT, endpoint: int = 0,
                 features_off: int = 0, auto_map: bool = True) -> None:
        self.path = path
        self.timeout = timeout
        self._setup(_make_socket(path), endpoint, auto_map)
        try:
            self._connect(token, subscription, features_off)
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- plumbing
    def _connect(self, token, subscription, features_off) -> None:
        dl = _deadline(self.timeout)
        s = self._core.sock
        while True:
            try:
                s.connect(self.path)
                break
            except BlockingIOError:  # backlog full (EAGAIN on AF_UNIX): retry
                if dl is not None and time.monotonic() >= dl:
                    raise errors.Timeout(E.ETIMEDOUT, "connect %s" % self.path)
                time.sleep(0.005)
            except InterruptedError:
                continue
            except OSError as e:
                raise errors.ConnectFailed(e.errno, "connect %s: %s" % (self.path, e.strerror))
        src, eps = _core.parse_sub(subscription)
        feats = W.VMSIG_FEATURES_KNOWN & ~features_off
        self._core.offered = feats
        _, fr = self._core.frame(W.VMSIG_MSG_HELLO,
                                 _core.hello_payload(src, eps, token, feats), req_id=0)
        try:
            self._send(fr, dl)
        except errors.VMGone:
            pass  # the server's answer (a REPLY/BYE) is what counts
        while self._core.welcome is None:
            err = self._core.handshake_error()
            if err is not None:
                # wait a little for the BYE that says why
                if self._core.bye is None and not self._core.gone:
                    try:
                        self._wait(lambda: self._core.bye is not None, _deadline(0.5))
                    except errors.VmsigError:
                        pass
                    err = self._core.handshake_error() or err
                raise err
            if self._core.gone:
                if self._core.gone_exc is not None:
                    raise self._core.gone_exc
                raise errors.ConnectFailed(E.ECONNRESET, "connect %s: the server closed the "
                                           "connection before WELCOME" % self.path)
            self._wait_io(dl, "handshake with %s" % self.path)

    def _wait_io(self, dl: Optional[float], what: str) -> None:
        """Wait until readable (or the deadline), then read and sort frames."""
        left = _left(dl)
        if left == 0.0:
            raise errors.Timeout(E.ETIMEDOUT, "%s: no answer in time" % what)
        p = self._poll_in
        if p is None or self._poll_sock is not self._core.sock:
            p = self._poll_in = select.poll()
            p.register(self._core.sock, select.POLLIN)
            self._poll_sock = self._core.sock
        if not p.poll(None if left is None else max(1, int(left * 1000 + 0.999))):
            if dl is not None and time.monotonic() >= dl:
                raise errors.Timeout(E.ETIMEDOUT, "%s: no answer in time" % what)
            return
        self._core.receive()

    def _pump(self) -> None:
        """Read and sort what has arrived, without waiting (not past the queue bound)."""
        c = self._core
        while not c.gone and len(c.queue) < _core.QUEUE_MAX:
            if not c.receive():
                break

    def _wait(self, pred, dl: Optional[float], what: str = "wait") -> None:
        while not pred():
            if self._core.gone:
                raise self._core.gone_error()
            self._wait_io(dl, what)

    def _send(self, data: bytes, dl: Optional[float]) -> None:
        c = self._core
        if c.gone:
            raise c.gone_error()
        try:  # the usual case: the whole frame at once
            sent = c.sock.send(data, socket.MSG_NOSIGNAL)
            if sent == len(data):
                return
        except OSError:  # would block, or an error the loop below meets again
            sent = 0
        view = memoryview(data)[sent:]
        while view:
            try:
                n = c.sock.send(view, socket.MSG_NOSIGNAL)
                view = view[n:]
                continue
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                # keep reading: the BYE that says why is usually there
                end = _deadline(0.2)
                while not c.gone and time.monotonic() < end:
                    try:
                        self._wait_io(end, "send")
                    except errors.Timeout:
                        break
                c.gone = True
                raise c.gone_error()
            # The server may wait for us to read (it stops reading while its
            # queue is full): read while we write.
            left = _left(dl)
            if left == 0.0:
                raise errors.Timeout(E.ETIMEDOUT, "send: the server does not read")
            p = select.poll()
            p.register(c.sock, select.POLLIN | select.POLLOUT)
            for _, ev in p.poll(None if left is None else max(1, int(left * 1000))):
                if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    self._core.receive()
                    if c.gone:
                        raise c.gone_error()

    def call(self, kind: int, payload: bytes = b"", endpoint: Optional[int] = None,
             timeout: Optional[float] = None, what: str = "", kinds=None) -> bytes:
        """Send one DOWN command and wait for its REPLY. Returns the REPLY
        body; raises the errno's exception (with the server's text) if the
        status is negative (``kinds``: {errno: exception class} of this
        command, looked up before the general table)."""
        c = self._core
        dl = _deadline(self.timeout if timeout is None else timeout)
        rid, fr = c.frame(kind, payload, self.endpoint if endpoint is None else endpoint)
        c.waiting.add(rid)
        try:
            self._send(fr, dl)
            replies = c.replies
            while rid not in replies:
                if c.gone:
                    raise c.gone_error()
                self._wait_io(dl, what or W.kind_name(kind))
        finally:
            c.waiting.discard(rid)
        st, body = c.replies.pop(rid)
        self._check_status(st, body, what or W.kind_name(kind), kinds)
        return body

    # ---------------------------------------------------------------- commands
    def nop(self, endpoint: Optional[int] = None, timeout: Optional[float] = None) -> None:
        """CMD_NOP: a round trip (everything sent before it was handled)."""
        self.call(W.VMSIG_CMD_NOP, b"", endpoint, timeout, "nop")

    def status(self, endpoint: Optional[int] = None, timeout: Optional[float] = None) -> VMInfo:
        """CMD_VM query: run state, vCPUs, RAM, QEMU version, name (and with
        the VMINFO_HOST feature: QEMU's pid, accelerator, uuid). Needs CAP_VM."""
        body = self.call(W.VMSIG_CMD_VM, _core.cmd_payload(W.VMSIG_VM_QUERY), endpoint,
                         timeout, "status")
        return _core.vminfo(body)

    def stop(self, endpoint: Optional[int] = None, timeout: Optional[float] = None) -> None:
        """CMD_VM stop: stop the vCPUs (QMP stop). The RUNSTATE paused comes
        before this returns (QEMU). Needs CAP_VM; class RUN."""
        self.call(W.VMSIG_CMD_VM, _core.cmd_payload(W.VMSIG_VM_STOP), endpoint, timeout, "stop")

    def cont(self, endpoint: Optional[int] = None, timeout: Optional[float] = None) -> None:
        """CMD_VM cont: start the vCPUs (QMP cont). Needs CAP_VM; class RUN."""
        self.call(W.VMSIG_CMD_VM, _core.cmd_payload(W.VMSIG_VM_CONT), endpoint, timeout, "cont")

    def pause(self, endpoint: Optional[int] = None, timeout: Optional[float] = None) -> None:
        """CMD_LIFECYCLE pause (QMP stop). Needs CAP_LIFECYCLE; class RUN."""
        self.call(W.VMSIG_CMD_LIFECYCLE, _core.cmd_payload(W.VMSIG_LC_PAUSE), endpoint, timeout,
                  "pause")

    def resume(self, endpoint: Optional[int] = None, timeout: Optional[float] = None) -> None:
        """CMD_LIFECYCLE resume (QMP cont). Needs CAP_LIFECYCLE; class RUN."""
        self.call(W.VMSIG_CMD_LIFECYCLE, _core.cmd_payload(W.VMSIG_LC_RESUME), endpoint, timeout,
                  "resume")

    def wakeup(self, endpoint: Optional[int] = None, timeout: Optional[float] = None) -> None:
        """CMD_LIFECYCLE wakeup (QMP system_wakeup): InvalidArgument if the
        guest is not suspended. Needs CAP_LIFECYCLE."""
        self.call(W.VMSIG_CMD_LIFECYCLE, _core.cmd_payload(W.VMSIG_LC_WAKEUP), endpoint, timeout,
                  "wakeup")

    def powerdown(self, endpoint: Optional[int] = None, timeout: Optional[float] = None) -> None:
        """CMD_POWER powerdown: the ACPI power button. Needs CAP_POWER."""
        self.call(W.VMSIG_CMD_POWER, _core.cmd_payload(W.VMSIG_PWR_POWERDOWN), endpoint, timeout,
                  "powerdown")

    def reset(self, endpoint: Optional[int] = None, timeout: Optional[float] = None) -> None:
        """CMD_POWER reset (QMP system_reset); the RESET event comes after. Needs CAP_POWER."""
        self.call(W.VMSIG_CMD_POWER, _core.cmd_payload(W.VMSIG_PWR_RESET), endpoint, timeout,
                  "reset")

    def quit(self, endpoint: Optional[int] = None, timeout: Optional[float] = None) -> None:
        """CMD_POWER quit: QEMU exits (SHUTDOWN, then BYE). Needs CAP_POWER."""
        self.call(W.VMSIG_CMD_POWER, _core.cmd_payload(W.VMSIG_PWR_QUIT), endpoint, timeout,
                  "quit")

    def input(self, op: int, code: int = 0, value: int = 0, text: bytes = b"",
              endpoint: Optional[int] = None, timeout: Optional[float] = None) -> None:
        """One raw CMD_INPUT (VMSIG_INPUT_*). Needs CAP_INPUT; class INPUT."""
        p = W.INPUT.pack(op=op, code=code, value=value, len=len(text)) + text
        self.call(W.VMSIG_CMD_INPUT, p, endpoint, timeout, "input")

    def key(self, key: Union[str, int], down: Optional[bool] = None,
            endpoint: Optional[int] = None, hold: float = 0.0) -> None:
        """Press and release a key ("ret", "a", "shift" or a code; see
        vmsig.KEYS); ``down=True``/``False`` sends only the press/release."""
        code = _core.key_code(key)
        if down is None or down:
            self.input(W.VMSIG_INPUT_KEY, code, 1, endpoint=endpoint)
        if hold:
            time.sleep(hold)
        if down is None or not down:
            self.input(W.VMSIG_INPUT_KEY, code, 0, endpoint=endpoint)

    def combo(self, *keys: Union[str, int], endpoint: Optional[int] = None) -> None:
        """Press keys in order, release in reverse: ``vm.combo("ctrl", "alt", "delete")``."""
        for k in keys:
            self.key(k, True, endpoint)
        for k in reversed(keys):
            self.key(k, False, endpoint)

    def type(self, text: str, endpoint: Optional[int] = None,
             timeout: Optional[float] = None) -> None:
        """Type US-ASCII text (printable, newline, tab). Long text goes in
        pieces that fit QEMU's key queue; while earlier text is still being
        typed (TryAgain) it waits, up to ``timeout``."""
        dl = _deadline(self.timeout if timeout is None else timeout)
        for piece in _core.text_pieces(text):
            while True:
                try:
                    self.input(W.VMSIG_INPUT_TEXT, text=piece, endpoint=endpoint, timeout=_left(dl))
                    break
                except errors.TryAgain:
                    if dl is not None and time.monotonic() >= dl:
                        raise
                    time.sleep(0.02)

    def mouse_move(self, dx: int, dy: int, endpoint: Optional[int] = None) -> None:
        """Relative pointer motion."""
        if dx:
            self.input(W.VMSIG_INPUT_REL, W.VMSIG_AXIS_X, dx, endpoint=endpoint)
        if dy:
            self.input(W.VMSIG_INPUT_REL, W.VMSIG_AXIS_Y, dy, endpoint=endpoint)

    def mouse_abs(self, x: int, y: int, endpoint: Optional[int] = None) -> None:
        """Absolute pointer position, 0..32767 on both axes (the whole screen)."""
        self.input(W.VMSIG_INPUT_ABS, W.VMSIG_AXIS_X, x, endpoint=endpoint)
        self.input(W.VMSIG_INPUT_ABS, W.VMSIG_AXIS_Y, y, endpoint=endpoint)

    def mouse_button(self, button: Union[str, int] = "left", down: Optional[bool] = None,
                     endpoint: Optional[int] = None) -> None:
        """Press and release (or only press/release) a pointer button:
        left, middle, right, wheel_up, wheel_down, side, extra."""
        b = button if isinstance(button, int) else getattr(W, "VMSIG_BTN_" + button.upper())
        if down is None or down:
            self.input(W.VMSIG_INPUT_BTN, b, 1, endpoint=endpoint)
        if down is None or not down:
            self.input(W.VMSIG_INPUT_BTN, b, 0, endpoint=endpoint)

    click = mouse_button

    def memwrite(self, gpa: int, data: bytes, endpoint: Optional[int] = None,
                 timeout: Optional[float] = None) -> None:
        """CMD_MEMWRITE: write guest RAM (atomic per 1 MiB piece; 1/2/4/8
        aligned bytes are one store). BadAddress (EFAULT) outside RAM,
        ReadOnlyMemory (EROFS) on ROM. Needs CAP_MEMWRITE; class MEMWRITE."""
        data = bytes(data)
        if not data:
            raise errors.InvalidArgument(E.EINVAL, "memwrite: no data")
        for off in range(0, len(data), W.VMSIG_MEMWRITE_MAX):
            piece = data[off:off + W.VMSIG_MEMWRITE_MAX]
            p = W.MEMWRITE.pack(gpa=(gpa + off) & ((1 << 64) - 1), len=len(piece)) + piece
            self.call(W.VMSIG_CMD_MEMWRITE, p, endpoint, timeout, "memwrite at 0x%x" % (gpa + off))

    def acquire(self, cls: Union[str, int], endpoint: Optional[int] = None,
                timeout: Optional[float] = None) -> "_Held":
        """Take the exclusive class ("input", "run", "power", "memwrite", "snapshot").
        Busy (EBUSY) if another control owns it and the policy denies. Also
        a context manager: ``with vm.acquire("input"): vm.type("hi")``."""
        c = _core.class_of(cls)
        self.call(W.VMSIG_CMD_ACQUIRE, _core.cmd_payload(c), endpoint, timeout,
                  "acquire %s" % W.CLASSES.get(c, c))
        return _Held(self, c, endpoint)

    def release(self, cls: Union[str, int], endpoint: Optional[int] = None,
                timeout: Optional[float] = None) -> None:
        """Give the class back. NotOwner (ENOENT) if we do not own it."""
        c = _core.class_of(cls)
        self.call(W.VMSIG_CMD_RELEASE, _core.cmd_payload(c), endpoint, timeout,
                  "release %s" % W.CLASSES.get(c, c))

    def subscribe(self, subscription=None, timeout: Optional[float] = None):
        """Replace the subscription: None (everything granted), names
        (["seam", "memctx", "arb"]) or (source_mask, endpoint_mask).
        Returns the effective (source_mask, endpoint_mask)."""
        src, eps = _core.parse_sub(subscription)
        body = self.call(W.VMSIG_MSG_SUBSCRIBE, W.SUB.pack(source_mask=src, endpoint_mask=eps),
                         0, timeout, "subscribe")
        if len(body) != W.SUB.size:
            raise self._core.proto("SUBSCRIBE REPLY body of %d bytes" % len(body))
        s = W.SUB.unpack(body)
        self._sub = (s["source_mask"], s["endpoint_mask"])
        return self._sub

    # ---------------------------------------------------------------- snapshots
    def _snap(self, op: int, name: Optional[str], then, full: bool, endpoint: Optional[int],
              timeout: Optional[float], what: str) -> bytes:
        self._snap_check(what)
        p = snapshot.payload(op, name, then, full)
        try:
            return self.call(W.VMSIG_CMD_SNAPSHOT, p, endpoint, timeout, what, snapshot.KINDS)
        except errors.PermissionDenied as e:
            raise self._snap_refused(e, what) from None

    def snapshot_save(self, name: str, then: Union[None, str, int] = None,
                      endpoint: Optional[int] = None, timeout: Optional[float] = None) -> SnapResult:
        """CMD_SNAPSHOT SAVE: keep guest RAM and device state in QEMU's memory
        under ``name`` (1..31 of A-Z a-z 0-9 . _ -; an existing one is
        replaced). ``then``: None (leave the run state as it was), "run" or
        "pause". Returns a ``SnapResult`` (info, generation, pages copied,
        stopped_ns). NoSpace (ENOSPC) over snapshot-limit or 16 snapshots,
        NotSupported (EOPNOTSUPP) with a writable disk, vfio or vhost-user,
        InvalidArgument (EINVAL) for a bad name or run state,
        PermissionDenied (EPERM) without CAP_SNAPSHOT; class SNAPSHOT."""
        what = "snapshot save %r" % (name,)
        return snapshot.result_from_body(
            self._snap(W.VMSIG_SNAP_SAVE, name, then, False, endpoint, timeout, what), what)

    def snapshot_restore(self, name: str, then: Union[None, str, int] = None, full: bool = False,
                         endpoint: Optional[int] = None,
                         timeout: Optional[float] = None) -> SnapResult:
        """CMD_SNAPSHOT RESTORE: put the VM back into snapshot ``name``'s
        state; ``then="run"`` is an episode reset. ``full``: copy every page
        back, not only those written since. The server publishes a new MEMCTX
        generation (``SnapResult.generation``); ``memory()`` is at it when
        this returns. NoSnapshot (ENOENT) for an unknown name, Stale (ESTALE)
        when RAM blocks changed since the SAVE, and the refusals of
        ``snapshot_save``; class SNAPSHOT."""
        what = "snapshot restore %r" % (name,)
        dl = _deadline(self.timeout if timeout is None else timeout)
        r = snapshot.result_from_body(
            self._snap(W.VMSIG_SNAP_RESTORE, name, then, full, endpoint, timeout, what), what)
        # The new map comes before the REPLY (docs/protocol.rst CMD_SNAPSHOT);
        # wait for it in case it did not, so the caller never reads the old one.
        ep = self._ep(endpoint)
        self._pump()
        while self._behind(ep, r.generation):
            if self._core.gone:
                raise self._core.gone_error()
            self._wait_io(dl, "%s: MEMCTX generation %d" % (what, r.generation))
        return r

    def snapshot_delete(self, name: str, endpoint: Optional[int] = None,
                        timeout: Optional[float] = None) -> SnapResult:
        """CMD_SNAPSHOT DELETE: free snapshot ``name`` at once. Returns its
        ``SnapResult`` as it was; NoSnapshot (ENOENT) if there is none."""
        what = "snapshot delete %r" % (name,)
        return snapshot.result_from_body(
            self._snap(W.VMSIG_SNAP_DELETE, name, None, False, endpoint, timeout, what), what)

    def snapshot_list(self, endpoint: Optional[int] = None,
                      timeout: Optional[float] = None) -> SnapList:
        """CMD_SNAPSHOT LIST: the VM's snapshots, oldest first (a ``SnapList``:
        iterable of ``SnapInfo``, ``names``, ``used``, ``limit``, ``max``).
        Needs CAP_SNAPSHOT; no class."""
        return snapshot.list_from_body(
            self._snap(W.VMSIG_SNAP_LIST, None, None, False, endpoint, timeout, "snapshot list"))

    # ---------------------------------------------------------------- events
    def next_event(self, timeout: Optional[float] = None) -> Event:
        """The next UP event (queued ones first). Timeout if none comes in
        ``timeout`` seconds (None: wait forever); VMGone when the server is
        gone (after the queued events)."""
        c = self._core
        dl = _deadline(timeout)
        while not c.queue:
            if c.gone:
                raise c.gone_error()
            self._wait_io(dl, "next event")
        return c.pop_event()

    def events(self, timeout: Optional[float] = None) -> Iterator[Event]:
        """Iterate over events. The iteration ends when no event arrives
        within ``timeout`` seconds of the last one (None: never); raises
        VMGone when the server goes away."""
        while True:
            try:
                yield self.next_event(timeout)
            except errors.Timeout:
                return

    def poll(self) -> List[Event]:
        """Every event that has arrived, without waiting."""
        self._pump()
        out = []
        while self._core.queue:
            out.append(self._core.pop_event())
        return out

    def wait_for(self, pred, timeout: Optional[float] = None) -> Event:
        """The first event for which ``pred(ev)`` is true (others are
        dropped); Timeout after ``timeout`` seconds in all."""
        dl = _deadline(self.timeout if timeout is None else timeout)
        while True:
            left = _left(dl)
            ev = self.next_event(left)
            if pred(ev):
                return ev
            if isinstance(ev, MemCtx) and ev is not self._core.latest_memctx.get(ev.endpoint):
                ev.close()

    # ---------------------------------------------------------------- inside the guest
    def regs(self, cpu: int = 0, endpoint: Optional[int] = None,
             timeout: Optional[float] = None) -> "introspect.Regs":
        """CMD_CPU REGS: vCPU ``cpu``'s registers (``vmsig.Regs``: rax.. r15,
        rip, rflags, cr0..cr4, efer, segments, gdt/idt, halted, mode), read on
        the vCPU's thread, from a running or paused VM. Needs CAP_CPU
        (PermissionDenied) and the CPU feature (NotSupported);
        InvalidArgument for an index past the last vCPU."""
        _check_cpu(self)
        body = self.call(W.VMSIG_CMD_CPU, introspect.regs_payload(cpu), endpoint, timeout,
                         "regs of vCPU %d" % cpu)
        return introspect.regs_from_body(body)

    def linux(self, endpoint: Optional[int] = None,
              timeout: Optional[float] = None) -> "introspect.LinuxInfo":
        """The Linux guest's VMCOREINFO, found in guest RAM (``vmsig.LinuxInfo``:
        release, kaslr_offset, root = the kernel page-table root, symbol(),
        read(va, n) through it). Needs CAP_MEMCTX."""
        return introspect.linux(self.memory(endpoint, timeout))

    # ---------------------------------------------------------------- memory
    def memory(self, endpoint: Optional[int] = None, timeout: Optional[float] = None) -> Memory:
        """Guest RAM of the endpoint, read-only and zero-copy, following new
        MEMCTX generations. Waits (up to ``timeout``) for the first map;
        Unavailable (ENODEV) when guest RAM is not shareable (``why`` in the
        text), PermissionDenied without CAP_MEMCTX."""
        ep = self._ep(endpoint)
        if not self.welcome.caps & W.VMSIG_CAP_MEMCTX:
            raise errors.PermissionDenied(E.EPERM, "memory: the grant lacks CAP_MEMCTX")
        if not self.welcome.source_mask & W.SOURCES["memctx"]:
            raise errors.PermissionDenied(E.EPERM, "memory: not subscribed to MEMCTX")
        dl = _deadline(self.timeout if timeout is None else timeout)
        self._pump()
        while ep not in self._maps:
            if self._core.gone:
                raise self._core.gone_error()
            self._wait_io(dl, "MEMCTX for endpoint %d" % ep)
        m = self._maps[ep]
        if isinstance(m, errors.VmsigError):
            raise m
        return Memory(self, ep)

    # ---------------------------------------------------------------- life
    def close(self) -> None:
        """Close the connection (arbitration slots are freed by the server)."""
        try:
            self._core.sock.close()
        finally:
            self._release_maps()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        w = self._core.welcome
        return "<vmsig.Client %s principal=%s>" % (self.path, hex(w.principal) if w else "?")


class _Held:
    """What acquire() returns: releases the class on ``__exit__``."""

    def __init__(self, client: Client, cls: int, endpoint: Optional[int]) -> None:
        self.client, self.cls, self.endpoint = client, cls, endpoint

    def __enter__(self) -> "_Held":
        return self

    def __exit__(self, *exc) -> None:
        if not self.client._core.gone:
            self.client.release(self.cls, self.endpoint)


def connect(path: Optional[str] = None, token: Optional[str] = None, subscription=None,
            timeout: Optional[float] = DEFAULT_TIMEOUT, endpoint: int = 0,
            features_off: int = 0, auto_map: bool = True) -> Client:
    """Connect to the vmsig socket at ``path`` (default: $VMSIG_SOCKET) and
    do the handshake, within ``timeout`` seconds (also the default timeout
    of every later call; None: no limit).

    ``token``: identify by a grants-file token instead of the uid.
    ``subscription``: None (everything the grant allows), source names
    (["seam", "memctx"]) or (source_mask, endpoint_mask).
    ``endpoint``: the VM commands go to by default.
    ``features_off``: VMSIG_FEAT_* bits not to offer.
    ``auto_map``: map each MEMCTX as it arrives (for ``memory()``).

    Raises ConnectFailed (no server), PermissionDenied (no grant, wrong
    token), NotSupported (version), ProtocolError, Timeout.
    """
    if path is None:
        path = os.environ.get("VMSIG_SOCKET")
        if not path:
            raise errors.InvalidArgument(E.EINVAL, "connect: no path and no $VMSIG_SOCKET")
    return Client(path, token, subscription, timeout, endpoint, features_off, auto_map)
