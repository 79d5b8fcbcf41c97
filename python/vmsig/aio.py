"""The asyncio client, without threads: ``vm = await vmsig.aconnect(path)``.

The socket is watched with ``loop.add_reader``; replies complete futures,
events go to the same bounded queue as in the blocking client. Every
command of ``Client`` exists here as a coroutine with the same arguments
(``await vm.stop()``); ``async for ev in vm.aevents(timeout=...)``.
"""
from __future__ import annotations

import asyncio
import errno as E
import os
import socket
import time
from typing import AsyncIterator, Dict, Optional, Union

from . import _core
from . import errors
from . import wire as W
from .client import DEFAULT_TIMEOUT, Client, _Base, _make_socket
from .events import Event, MemCtx, VMInfo
from .memory import Memory
from . import snapshot
from .snapshot import SnapList, SnapResult


class AsyncClient(_Base):
    """One control on an asyncio loop. Use ``await vmsig.aconnect(...)``."""

    def __init__(self, path: str, timeout: Optional[float], endpoint: int, auto_map: bool) -> None:
        self.path = path
        self.timeout = timeout
        self._setup(_make_socket(path), endpoint, auto_map)
        self._loop = asyncio.get_running_loop()
        self._futs: Dict[int, asyncio.Future] = {}
        self._ev_wake: Optional[asyncio.Future] = None
        self._reading = False

    async def _connect(self, token, subscription, features_off) -> None:
        c = self._core
        try:
            await asyncio.wait_for(self._loop.sock_connect(c.sock, self.path), self.timeout)
        except asyncio.TimeoutError:
            raise errors.Timeout(E.ETIMEDOUT, "connect %s" % self.path) from None
        except OSError as e:
            raise errors.ConnectFailed(e.errno, "connect %s: %s" % (self.path, e.strerror))
        src, eps = _core.parse_sub(subscription)
        feats = W.VMSIG_FEATURES_KNOWN & ~features_off
        c.offered = feats
        _, fr = c.frame(W.VMSIG_MSG_HELLO, _core.hello_payload(src, eps, token, feats), req_id=0)
        self._loop.add_reader(c.sock.fileno(), self._on_readable)
        self._reading = True
        try:
            await self._send(fr)
        except errors.VMGone:
            pass
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while c.welcome is None:
            err = c.handshake_error()
            if err is not None:
                if c.bye is None and not c.gone:
                    await self._wait_change(min(0.5, self._left(deadline) or 0.5))
                    err = c.handshake_error() or err
                raise err
            if c.gone:
                if c.gone_exc is not None:
                    raise c.gone_exc
                raise errors.ConnectFailed(E.ECONNRESET, "connect %s: the server closed the "
                                           "connection before WELCOME" % self.path)
            left = self._left(deadline)
            if left == 0.0:
                raise errors.Timeout(E.ETIMEDOUT, "handshake with %s: no answer" % self.path)
            await self._wait_change(left)

    @staticmethod
    def _left(deadline: Optional[float]) -> Optional[float]:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    # ---------------------------------------------------------------- reading
    def _on_readable(self) -> None:
        c = self._core
        err: Optional[BaseException] = None
        try:
            for _ in range(64):  # bounded work per wakeup
                if len(c.queue) >= _core.QUEUE_MAX:
                    # nobody reads events: stop reading (the server then
                    # coalesces or drops us, as for any slow reader), unless
                    # a reply is awaited: then the bound is an error
                    if not self._futs:
                        self._stop_reading()
                        break
                if not c.receive():
                    break
        except errors.VmsigError as e:
            err = e
        if c.gone:
            self._stop_reading()
        for rid in [r for r in self._futs if r in c.replies]:
            f = self._futs.pop(rid)
            if not f.done():
                f.set_result(c.replies.pop(rid))
        if err is not None or c.gone:
            exc = err or c.gone_error()
            for f in self._futs.values():
                if not f.done():
                    f.set_exception(exc if err else c.gone_error())
            self._futs.clear()
        self._wake()

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            try:
                self._loop.remove_reader(self._core.sock.fileno())
            except (ValueError, OSError):
                pass

    def _resume_reading(self) -> None:
        if not self._reading and not self._core.gone and self._core.sock.fileno() >= 0:
            self._reading = True
            self._loop.add_reader(self._core.sock.fileno(), self._on_readable)

    def _wake(self) -> None:
        if self._ev_wake is not None and not self._ev_wake.done():
            self._ev_wake.set_result(None)

    async def _wait_change(self, timeout: Optional[float]) -> None:
        self._ev_wake = self._loop.create_future()
        try:
            await asyncio.wait_for(self._ev_wake, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._ev_wake = None

    def _pump(self) -> None:
        """Memory: read what has arrived (not past the queue bound)."""
        self._on_readable()

    # ---------------------------------------------------------------- writing
    async def _send(self, data: bytes) -> None:
        c = self._core
        if c.gone:
            raise c.gone_error()
        try:
            await self._loop.sock_sendall(c.sock, data)
        except OSError:
            await self._wait_change(0.2)  # the BYE that says why
            c.gone = True
            raise c.gone_error() from None

    async def call(self, kind: int, payload: bytes = b"", endpoint: Optional[int] = None,
                   timeout: Optional[float] = None, what: str = "", kinds=None) -> bytes:
        """Send one command, await its REPLY body (raises on a negative status)."""
        c = self._core
        rid, fr = c.frame(kind, payload, self._ep(endpoint))
        fut = self._loop.create_future()
        self._futs[rid] = fut
        c.waiting.add(rid)
        self._resume_reading()
        t = self.timeout if timeout is None else timeout
        try:
            await asyncio.wait_for(self._send(fr), t)
            st, body = await asyncio.wait_for(fut, t)
        except asyncio.TimeoutError:
            raise errors.Timeout(E.ETIMEDOUT, "%s: no answer in time"
                                 % (what or W.kind_name(kind))) from None
        finally:
            self._futs.pop(rid, None)
            c.waiting.discard(rid)
        self._check_status(st, body, what or W.kind_name(kind), kinds)
        return body

    # ---------------------------------------------------------------- commands
    async def status(self, endpoint: Optional[int] = None, timeout: Optional[float] = None) -> VMInfo:
        body = await self.call(W.VMSIG_CMD_VM, _core.cmd_payload(W.VMSIG_VM_QUERY), endpoint,
                               timeout, "status")
        return _core.vminfo(body)

    async def regs(self, cpu: int = 0, endpoint: Optional[int] = None,
                   timeout: Optional[float] = None):
        """CMD_CPU REGS (see Client.regs)."""
        from .client import _check_cpu
        from . import introspect
        _check_cpu(self)
        body = await self.call(W.VMSIG_CMD_CPU, introspect.regs_payload(cpu), endpoint, timeout,
                               "regs of vCPU %d" % cpu)
        return introspect.regs_from_body(body)

    async def input(self, op: int, code: int = 0, value: int = 0, text: bytes = b"",
                    endpoint: Optional[int] = None, timeout: Optional[float] = None) -> None:
        p = W.INPUT.pack(op=op, code=code, value=value, len=len(text)) + text
        await self.call(W.VMSIG_CMD_INPUT, p, endpoint, timeout, "input")

    async def key(self, key: Union[str, int], down: Optional[bool] = None,
                  endpoint: Optional[int] = None) -> None:
        code = _core.key_code(key)
        if down is None or down:
            await self.input(W.VMSIG_INPUT_KEY, code, 1, endpoint=endpoint)
        if down is None or not down:
            await self.input(W.VMSIG_INPUT_KEY, code, 0, endpoint=endpoint)

    async def type(self, text: str, endpoint: Optional[int] = None,
                   timeout: Optional[float] = None) -> None:
        t = self.timeout if timeout is None else timeout
        dl = None if t is None else time.monotonic() + t
        for piece in _core.text_pieces(text):
            while True:
                try:
                    await self.input(W.VMSIG_INPUT_TEXT, text=piece, endpoint=endpoint)
                    break
                except errors.TryAgain:
                    if dl is not None and time.monotonic() >= dl:
                        raise
                    await asyncio.sleep(0.02)

    async def memwrite(self, gpa: int, data: bytes, endpoint: Optional[int] = None,
                       timeout: Optional[float] = None) -> None:
        data = bytes(data)
        if not data:
            raise errors.InvalidArgument(E.EINVAL, "memwrite: no data")
        for off in range(0, len(data), W.VMSIG_MEMWRITE_MAX):
            piece = data[off:off + W.VMSIG_MEMWRITE_MAX]
            p = W.MEMWRITE.pack(gpa=(gpa + off) & ((1 << 64) - 1), len=len(piece)) + piece
            await self.call(W.VMSIG_CMD_MEMWRITE, p, endpoint, timeout,
                            "memwrite at 0x%x" % (gpa + off))

    def acquire(self, cls: Union[str, int], endpoint: Optional[int] = None,
                timeout: Optional[float] = None) -> "_AHeld":
        """``await vm.acquire("run")``, or ``async with vm.acquire("run"):``."""
        return _AHeld(self, _core.class_of(cls), endpoint, timeout)

    async def release(self, cls: Union[str, int], endpoint: Optional[int] = None,
                      timeout: Optional[float] = None) -> None:
        c = _core.class_of(cls)
        await self.call(W.VMSIG_CMD_RELEASE, _core.cmd_payload(c), endpoint, timeout, "release")

    async def subscribe(self, subscription=None, timeout: Optional[float] = None):
        src, eps = _core.parse_sub(subscription)
        body = await self.call(W.VMSIG_MSG_SUBSCRIBE, W.SUB.pack(source_mask=src, endpoint_mask=eps),
                               0, timeout, "subscribe")
        s = W.SUB.unpack(body)
        self._sub = (s["source_mask"], s["endpoint_mask"])
        return self._sub

    # ---------------------------------------------------------------- snapshots
    async def _snap(self, op: int, name: Optional[str], then, full: bool,
                    endpoint: Optional[int], timeout: Optional[float], what: str) -> bytes:
        self._snap_check(what)
        p = snapshot.payload(op, name, then, full)
        try:
            return await self.call(W.VMSIG_CMD_SNAPSHOT, p, endpoint, timeout, what,
                                   snapshot.KINDS)
        except errors.PermissionDenied as e:
            raise self._snap_refused(e, what) from None

    async def snapshot_save(self, name: str, then: Union[None, str, int] = None,
                            endpoint: Optional[int] = None,
                            timeout: Optional[float] = None) -> SnapResult:
        what = "snapshot save %r" % (name,)
        return snapshot.result_from_body(
            await self._snap(W.VMSIG_SNAP_SAVE, name, then, False, endpoint, timeout, what), what)

    async def snapshot_restore(self, name: str, then: Union[None, str, int] = None,
                               full: bool = False, endpoint: Optional[int] = None,
                               timeout: Optional[float] = None) -> SnapResult:
        what = "snapshot restore %r" % (name,)
        t = self.timeout if timeout is None else timeout
        deadline = None if t is None else time.monotonic() + t
        r = snapshot.result_from_body(
            await self._snap(W.VMSIG_SNAP_RESTORE, name, then, full, endpoint, timeout, what), what)
        ep = self._ep(endpoint)
        self._pump()
        while self._behind(ep, r.generation):  # see Client.snapshot_restore
            if self._core.gone:
                raise self._core.gone_error()
            self._resume_reading()
            left = self._left(deadline)
            if left == 0.0:
                raise errors.Timeout(E.ETIMEDOUT, "%s: MEMCTX generation %d did not come"
                                     % (what, r.generation))
            await self._wait_change(left)
        return r

    async def snapshot_delete(self, name: str, endpoint: Optional[int] = None,
                              timeout: Optional[float] = None) -> SnapResult:
        what = "snapshot delete %r" % (name,)
        return snapshot.result_from_body(
            await self._snap(W.VMSIG_SNAP_DELETE, name, None, False, endpoint, timeout, what), what)

    async def snapshot_list(self, endpoint: Optional[int] = None,
                            timeout: Optional[float] = None) -> SnapList:
        return snapshot.list_from_body(
            await self._snap(W.VMSIG_SNAP_LIST, None, None, False, endpoint, timeout,
                             "snapshot list"))

    # ---------------------------------------------------------------- events
    async def next_event(self, timeout: Optional[float] = None) -> Event:
        """The next event; Timeout after ``timeout`` s; VMGone when gone."""
        c = self._core
        deadline = None if timeout is None else time.monotonic() + timeout
        while not c.queue:
            if c.gone:
                raise c.gone_error()
            self._resume_reading()
            left = self._left(deadline)
            if left == 0.0:
                raise errors.Timeout(E.ETIMEDOUT, "next event: none in time")
            await self._wait_change(left)
        ev = c.pop_event()
        self._resume_reading()
        return ev

    async def aevents(self, timeout: Optional[float] = None) -> AsyncIterator[Event]:
        """``async for ev in vm.aevents(timeout=1)``: ends when none arrives
        within ``timeout`` seconds of the last; raises VMGone when gone."""
        while True:
            try:
                ev = await self.next_event(timeout)
            except errors.Timeout:
                return
            yield ev

    async def memory(self, endpoint: Optional[int] = None, timeout: Optional[float] = None) -> Memory:
        """As Client.memory: the live read-only guest RAM (its calls do not block)."""
        ep = self._ep(endpoint)
        if not self.welcome.caps & W.VMSIG_CAP_MEMCTX:
            raise errors.PermissionDenied(E.EPERM, "memory: the grant lacks CAP_MEMCTX")
        t = self.timeout if timeout is None else timeout
        deadline = None if t is None else time.monotonic() + t
        while ep not in self._maps:
            if self._core.gone:
                raise self._core.gone_error()
            left = self._left(deadline)
            if left == 0.0:
                raise errors.Timeout(E.ETIMEDOUT, "no MEMCTX for endpoint %d in time" % ep)
            await self._wait_change(left)
        m = self._maps[ep]
        if isinstance(m, errors.VmsigError):
            raise m
        return Memory(self, ep)

    async def close(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        self._stop_reading()
        for f in self._futs.values():
            if not f.done():
                f.set_exception(errors.VMGone(E.EPIPE, "closed"))
        self._futs.clear()
        self._core.sock.close()
        self._release_maps()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        self.close_now()


def _simple(name: str, kind: int, op: int):
    async def method(self, endpoint: Optional[int] = None, timeout: Optional[float] = None) -> None:
        await self.call(kind, _core.cmd_payload(op), endpoint, timeout, name)
    method.__name__ = name
    method.__qualname__ = "AsyncClient." + name
    method.__doc__ = (getattr(Client, name).__doc__ or "") + "\n\n(A coroutine.)"
    return method


for _n, _k, _o in (("stop", W.VMSIG_CMD_VM, W.VMSIG_VM_STOP),
                   ("cont", W.VMSIG_CMD_VM, W.VMSIG_VM_CONT),
                   ("pause", W.VMSIG_CMD_LIFECYCLE, W.VMSIG_LC_PAUSE),
                   ("resume", W.VMSIG_CMD_LIFECYCLE, W.VMSIG_LC_RESUME),
                   ("wakeup", W.VMSIG_CMD_LIFECYCLE, W.VMSIG_LC_WAKEUP),
                   ("powerdown", W.VMSIG_CMD_POWER, W.VMSIG_PWR_POWERDOWN),
                   ("reset", W.VMSIG_CMD_POWER, W.VMSIG_PWR_RESET),
                   ("quit", W.VMSIG_CMD_POWER, W.VMSIG_PWR_QUIT)):
    setattr(AsyncClient, _n, _simple(_n, _k, _o))


async def _nop(self, endpoint: Optional[int] = None, timeout: Optional[float] = None) -> None:
    """CMD_NOP round trip (a coroutine)."""
    await self.call(W.VMSIG_CMD_NOP, b"", endpoint, timeout, "nop")


AsyncClient.nop = _nop  # type: ignore[attr-defined]
for _n in ("status", "input", "key", "type", "memwrite", "release", "subscribe", "next_event",
           "snapshot_save", "snapshot_restore", "snapshot_delete", "snapshot_list"):
    _f = getattr(AsyncClient, _n)
    if not _f.__doc__:
        _f.__doc__ = (getattr(Client, _n).__doc__ or "") + "\n\n(A coroutine.)"


class _AHeld:
    def __init__(self, client: AsyncClient, cls: int, endpoint, timeout) -> None:
        self.client, self.cls, self.endpoint, self.timeout = client, cls, endpoint, timeout

    async def _go(self) -> "_AHeld":
        await self.client.call(W.VMSIG_CMD_ACQUIRE, _core.cmd_payload(self.cls), self.endpoint,
                               self.timeout, "acquire %s" % W.CLASSES.get(self.cls, self.cls))
        return self

    def __await__(self):
        return self._go().__await__()

    async def __aenter__(self) -> "_AHeld":
        return await self._go()

    async def __aexit__(self, *exc) -> None:
        if not self.client._core.gone:
            await self.client.release(self.cls, self.endpoint)


async def aconnect(path: Optional[str] = None, token: Optional[str] = None, subscription=None,
                   timeout: Optional[float] = DEFAULT_TIMEOUT, endpoint: int = 0,
                   features_off: int = 0, auto_map: bool = True) -> AsyncClient:
    """The asyncio ``connect`` (same arguments); must run inside a loop."""
    if path is None:
        path = os.environ.get("VMSIG_SOCKET")
        if not path:
            raise errors.InvalidArgument(E.EINVAL, "aconnect: no path and no $VMSIG_SOCKET")
    c = AsyncClient(path, timeout, endpoint, auto_map)
    try:
        await c._connect(token, subscription, features_off)
    except BaseException:
        c.close_now()
        raise
    return c
