"""The I/O-free part of a connection: framing, descriptor bookkeeping, the
client's checks on what the server sends, request ids, the bounded event
queue and the BYE state. ``client.Client`` (blocking, poll) and
``aio.AsyncClient`` (asyncio, no threads) drive it.
"""
from __future__ import annotations

import array
import collections
import errno as E
import os
import socket
from typing import Deque, Dict, List, Optional, Tuple

from . import wire as W
from . import errors
from .events import Event, MemCtx, Welcome, decode

# Events queued while nobody reads them (as the C client's
# VMSIG_CLIENT_QUEUE_MAX / VMSIG_CLIENT_QUEUE_FDS).
QUEUE_MAX = 1024
QUEUE_FDS = 256
MAX_UNCLAIMED_BATCHES = 4
RECV_SIZE = 256 * 1024
CMSG_SPACE = socket.CMSG_SPACE(W.VMSIG_WIRE_MAX_FDS * array.array("i").itemsize)
MSG_CMSG_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0x40000000)

Frame = Tuple[dict, bytes, List[int]]

# The hot path (one REPLY per command) in plain ints and one struct: the
# header's fields by position, flag constants unwrapped from enum.IntFlag
# (socket.MSG_CTRUNC is one: `&` on it costs a Python-level call).
_HDR = W.HDR.struct
_HDR_FIELDS = tuple(W.HDR.fields)
_HDR_AT = W.HDR.at
_HDR_TEMPLATE = W.HDR.defaults
_MSG_CTRUNC = int(socket.MSG_CTRUNC)
_F_UNKNOWN = ~int(W.VMSIG_F_KNOWN)
_HDR_SIZE = W.HDR_SIZE
_K, _NFDS, _FLAGS, _LEN, _ID, _EP, _STATUS = (
    _HDR_AT[f] for f in ("kind", "nfds", "flags", "len", "id", "endpoint", "status"))
_REPLY = W.VMSIG_MSG_REPLY
_REPLY_MAX = W.KINDS[_REPLY][1] + W.KINDS[_REPLY][2]


def close_fds(fds: List[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class Core:
    """State of one connection. Not thread-safe (one thread, or one event loop)."""

    def __init__(self, sock: socket.socket, endpoint: int = 0) -> None:
        self.sock = sock
        self.endpoint = endpoint
        self.buf = bytearray()
        self.rbuf = memoryview(bytearray(RECV_SIZE))  # recvmsg_into's, reused
        self.pos = 0                 # stream offset of buf[0]
        self.batches: List[list] = []  # [start, end, fds, claimed]
        self.welcome: Optional[Welcome] = None
        self.offered = 0
        self.next_id = 1
        self.replies: Dict[int, Tuple[int, bytes]] = {}
        self.waiting: set = set()    # ids we still expect a REPLY for
        self.queue: Deque[Event] = collections.deque()
        self.qfds = 0
        self.last_seq = 0
        self.gone = False
        self.gone_exc: Optional[errors.VmsigError] = None
        self.gone_raised = False
        self.bye: Optional[Tuple[int, str]] = None
        self.latest_memctx: Dict[int, MemCtx] = {}
        self.memctx_listeners: list = []
        self.handshake_reply: Optional[Tuple[int, bytes]] = None

    # ---------------------------------------------------------------- frames out
    def frame(self, kind: int, payload: bytes = b"", endpoint: int = 0,
              req_id: Optional[int] = None) -> Tuple[int, bytes]:
        if req_id is None:
            req_id = self.next_id
            self.next_id += 1
        v = list(_HDR_TEMPLATE)
        v[_K] = kind
        v[_LEN] = len(payload)
        v[_ID] = req_id
        v[_EP] = endpoint
        return req_id, _HDR.pack(*v) + payload

    # ---------------------------------------------------------------- frames in
    def fail(self, exc: errors.VmsigError) -> errors.VmsigError:
        """Drop the connection for a reason of ours (EPROTO, ENOBUFS)."""
        if not self.gone:
            self.gone = True
            self.gone_exc = exc
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for b in self.batches:
            if not b[3]:
                close_fds(b[2])
        self.batches = []
        return exc

    def proto(self, why: str) -> errors.VmsigError:
        return self.fail(errors.ProtocolError(E.EPROTO, "malformed frame from the server: " + why))

    def gone_error(self) -> errors.VmsigError:
        """The exception for a call on a gone connection: our own reason
        (ProtocolError, QueueFull) the first time, then VMGone."""
        if self.gone_exc is not None and not self.gone_raised:
            self.gone_raised = True
            return self.gone_exc
        if self.gone_exc is not None and not isinstance(self.gone_exc, errors.VMGone):
            # our own reason (EPROTO, ENOBUFS) was raised once; later calls: gone
            return errors.gone(self.gone_exc.status, str(self.gone_exc), "")
        if self.bye is not None:
            return errors.gone(self.bye[0], self.bye[1])
        return errors.gone(None, "")

    def recv_some(self) -> Optional[bool]:
        """One non-blocking recvmsg. True: data came; False: would block;
        None: EOF or error (the connection is gone). Raises ProtocolError."""
        try:
            n, anc, flags, _ = self.sock.recvmsg_into((self.rbuf,), CMSG_SPACE, MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            if not self.gone:
                self.gone = True
            if e.errno not in (E.ECONNRESET, E.EPIPE, E.ENOTCONN, E.EBADF):
                self.gone_exc = errors.VMGone(e.errno, "reading the socket failed")
            return None
        fds: List[int] = []
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(cdata[: len(cdata) - (len(cdata) % a.itemsize)])
                fds.extend(a)
        if flags & _MSG_CTRUNC or len(fds) > W.VMSIG_WIRE_MAX_FDS:
            close_fds(fds)
            raise self.proto("more than %d fds in one read" % W.VMSIG_WIRE_MAX_FDS)
        if not n:
            close_fds(fds)
            self.gone = True
            return None
        start = self.pos + len(self.buf)
        if fds:
            if sum(1 for b in self.batches if not b[3]) >= MAX_UNCLAIMED_BATCHES:
                close_fds(fds)
                raise self.proto("too many unclaimed fd batches")
            self.batches.append([start, start + n, fds, False])
        self.buf += self.rbuf[:n]
        return True

    def receive(self) -> Optional[bool]:
        """recv_some + process: read once, sort what came. Errors are kept
        (``gone_exc``) and raised by the next call that waits, after the
        frames before the bad one were delivered."""
        try:
            r = self.recv_some()
            if r and not self.reply_alone():
                self.dispatch(self.frames())
            return r
        except errors.VmsigError as e:
            self.fail(e)
            return None

    def reply_alone(self) -> bool:
        """The common case, taken without the general path: the buffer holds
        exactly one whole REPLY, no fds, that a call waits for, after WELCOME.
        Anything else (or anything a check of frames()/dispatch() would
        refuse): False, and the general path sorts or refuses it."""
        buf = self.buf
        if self.batches or len(buf) < _HDR_SIZE or self.welcome is None or self.gone:
            return False
        h = _HDR.unpack_from(buf)
        n = h[_LEN]
        if (h[_K] != _REPLY or h[_NFDS] or h[_FLAGS] or n > _REPLY_MAX
                or len(buf) != _HDR_SIZE + n or h[_ID] not in self.waiting):
            return False
        self.waiting.discard(h[_ID])
        self.replies[h[_ID]] = (h[_STATUS], bytes(buf[_HDR_SIZE:]))
        self.pos += len(buf)
        del buf[:]
        return True

    def frames(self):
        """Yield every complete frame in the buffer, checked, in order;
        raises ProtocolError at the first bad one."""
        while len(self.buf) >= W.HDR_SIZE:
            h = dict(zip(_HDR_FIELDS, _HDR.unpack_from(self.buf)))
            kind, n, nfds = h["kind"], h["len"], h["nfds"]
            if n > W.VMSIG_WIRE_MAX_PAYLOAD:
                raise self.proto("len %d over the maximum" % n)
            if h["flags"] & _F_UNKNOWN:
                raise self.proto("unknown header flags %#x" % h["flags"])
            k = W.KINDS.get(kind)
            if k is None or not k[4]:
                raise self.proto("kind %#x is not a server frame" % kind)
            _, fixed, tail, maxfds, _ = k
            if nfds > maxfds:
                raise self.proto("%s declares %d fds" % (k[0], nfds))
            if n < fixed or n > fixed + tail:
                raise self.proto("%s with %d payload bytes" % (k[0], n))
            if len(self.buf) < W.HDR_SIZE + n:
                break
            start = self.pos
            fds: List[int] = []
            if nfds:
                b = next((b for b in self.batches
                          if not b[3] and b[0] <= start < b[1]), None)
                if b is None:
                    raise self.proto("%s declares %d fds, none arrived with its header"
                                     % (k[0], nfds))
                b[3] = True
                fds = b[2]
                if len(fds) != nfds:
                    close_fds(fds)
                    raise self.proto("%s declares %d fds, %d arrived" % (k[0], nfds, len(fds)))
            payload = bytes(self.buf[W.HDR_SIZE:W.HDR_SIZE + n])
            del self.buf[:W.HDR_SIZE + n]
            self.pos += W.HDR_SIZE + n
            end = self.pos
            if self.batches:
                stray = [b for b in self.batches if not b[3] and b[1] <= end]
                if stray:
                    close_fds(fds)
                    raise self.proto("fds arrived on a frame that declares none")
                self.batches = [b for b in self.batches if not b[3]]
            if kind == W.VMSIG_EV_MEMCTX:
                try:
                    self.check_memctx(payload, nfds)
                except errors.VmsigError:
                    close_fds(fds)
                    raise
            yield (h, payload, fds)

    def check_memctx(self, payload: bytes, nfds: int) -> None:
        m = W.MEMCTX.unpack(payload)
        if m["nseg"] > W.VMSIG_MEMCTX_MAX_SEGS or len(payload) != W.MEMCTX.size + m["nseg"] * W.MEMSEG.size:
            raise self.proto("memctx nseg %d does not match its %d bytes" % (m["nseg"], len(payload)))
        if m["status"] != 0 and (m["nseg"] or nfds):
            raise self.proto("memctx unavailable but with segments or fds")
        for i in range(m["nseg"]):
            s = W.MEMSEG.unpack(payload, W.MEMCTX.size + i * W.MEMSEG.size)
            if s["flags"] or s["fd_index"] >= nfds:
                raise self.proto("memctx segment %d: flags %#x fd_index %d of %d fds"
                                 % (i, s["flags"], s["fd_index"], nfds))

    # ---------------------------------------------------------------- dispatch
    def dispatch(self, frames) -> None:
        """Sort received frames into replies, events and BYE. Raises
        ProtocolError or QueueFull (the connection is then dropped)."""
        for i, (h, payload, fds) in enumerate(frames):
            kind = h["kind"]
            if self.gone and self.bye is not None:
                close_fds(fds)
                continue  # nothing follows a BYE
            if kind == W.VMSIG_MSG_WELCOME:
                if self.welcome is not None or self.handshake_reply is not None:
                    raise self.proto("a second WELCOME")
                self.take_welcome(h, payload)
            elif kind == W.VMSIG_MSG_REPLY:
                if self.welcome is None:
                    if self.handshake_reply is None:
                        self.handshake_reply = (h["status"], payload)
                    continue
                if h["id"] in self.waiting:
                    self.waiting.discard(h["id"])
                    self.replies[h["id"]] = (h["status"], payload)
                # else: a late answer to a call that timed out; ignored
            elif kind == W.VMSIG_MSG_BYE:
                text = W.cstr(W.BYE.unpack(payload)["text"])
                self.bye = (h["status"], text)
                self.gone = True
                if self.welcome is None and self.handshake_reply is None:
                    self.handshake_reply = (h["status"], b"")
            else:
                if self.welcome is None:
                    close_fds(fds)
                    raise self.proto("%s before WELCOME" % W.kind_name(kind))
                ev = decode(h, payload, fds)
                self.push_event(ev)

    def push_event(self, ev: Event) -> None:
        if isinstance(ev, MemCtx):
            self.latest_memctx[ev.endpoint] = ev
            for q in list(self.queue):  # a newer map replaces the queued one
                if isinstance(q, MemCtx) and q.endpoint == ev.endpoint:
                    self.queue.remove(q)
                    self.qfds -= len(q.fds)
                    break
            for cb in self.memctx_listeners:
                cb(ev)
        if len(self.queue) >= QUEUE_MAX or self.qfds + len(getattr(ev, "fds", ())) > QUEUE_FDS:
            if isinstance(ev, MemCtx):
                ev.close()
            raise self.fail(errors.QueueFull(
                E.ENOBUFS, "more than %d events (%d fds) queued unread: the client dropped the "
                "connection" % (QUEUE_MAX, QUEUE_FDS)))
        self.queue.append(ev)
        self.qfds += len(getattr(ev, "fds", ()))

    def pop_event(self) -> Event:
        ev = self.queue.popleft()
        if isinstance(ev, MemCtx):
            self.qfds -= len(ev.fds)
        ev.lost = ev.seq - self.last_seq - 1 if ev.seq > self.last_seq + 1 else 0
        self.last_seq = max(self.last_seq, ev.seq)
        return ev

    def take_welcome(self, h: dict, payload: bytes) -> None:
        w = W.WELCOME.unpack(payload)
        if w["major"] != W.VMSIG_WIRE_MAJOR:
            raise self.fail(errors.NotSupported(E.EPROTONOSUPPORT,
                                                "server speaks protocol %d.%d" % (w["major"], w["minor"])))
        if w["minor"] > W.VMSIG_WIRE_MINOR:
            raise self.proto("WELCOME minor %d above ours (%d)" % (w["minor"], W.VMSIG_WIRE_MINOR))
        if w["features"] & ~self.offered:
            raise self.proto("WELCOME features %#x, we offered %#x" % (w["features"], self.offered))
        if w["reserved"]:
            raise self.proto("WELCOME reserved field %#x" % w["reserved"])
        self.welcome = Welcome(
            major=w["major"], minor=w["minor"], principal=w["principal"],
            endpoint_mask=w["endpoint_mask"], caps=w["caps"], priority=w["priority"],
            source_mask=w["sub_source_mask"], sub_endpoint_mask=w["sub_endpoint_mask"],
            max_payload=w["max_payload"], max_fds=w["max_fds"], queue_limit=w["queue_limit"],
            features=w["features"])

    def handshake_error(self) -> Optional[errors.VmsigError]:
        """After frames came: the refusal, if the server refused the HELLO."""
        if self.handshake_reply is None:
            return None
        st = self.handshake_reply[0]
        text = self.bye[1] if self.bye else ""
        if st >= 0:
            return self.proto("first frame was a %s with status %d"
                              % ("BYE" if self.bye else "REPLY", st))
        return errors.error_for(st, "the server refused the handshake", text)


def hello_payload(sub_sources: int, sub_endpoints: int, token: Optional[str],
                  features: int) -> bytes:
    tok = (token or "").encode()
    if len(tok) > W.VMSIG_TOKEN_MAX or b"\0" in tok:
        raise errors.InvalidArgument(E.EINVAL, "token: 1..64 bytes, no NUL")
    return W.HELLO.pack(major=W.VMSIG_WIRE_MAJOR, minor=W.VMSIG_WIRE_MINOR, features=features,
                        sub_source_mask=sub_sources, sub_endpoint_mask=sub_endpoints, token=tok)


def parse_sub(subscription) -> Tuple[int, int]:
    """(source_mask, endpoint_mask) from None (everything granted), a pair
    of masks, or an iterable of source names ("seam", "memctx", "arb")."""
    if subscription is None:
        return 0, 0
    if isinstance(subscription, tuple) and len(subscription) == 2 and all(
            isinstance(x, int) for x in subscription):
        return subscription
    mask = 0
    for s in subscription:
        if s not in W.SOURCES:
            raise ValueError("unknown source %r (seam, memctx, arb)" % (s,))
        mask |= W.SOURCES[s]
    return mask, (1 << 64) - 1


_CMD_PAYLOADS: Dict[int, bytes] = {}


def cmd_payload(op: int) -> bytes:
    p = _CMD_PAYLOADS.get(op)
    if p is None:
        p = W.CMD.pack(op=op)
        if len(_CMD_PAYLOADS) < 64:  # the ops there are; not a user-fed cache
            _CMD_PAYLOADS[op] = p
    return p


def class_of(cls) -> int:
    if isinstance(cls, int):
        return cls
    for n, v in W.CLASSES.items():
        if v == cls:
            return n
    raise ValueError("unknown class %r (%s)" % (cls, ", ".join(W.CLASSES.values())))


def key_code(key) -> int:
    if isinstance(key, int):
        return key
    c = W.KEYS.get(str(key).lower())
    if c is None:
        raise ValueError("unknown key %r (see vmsig.KEYS)" % (key,))
    return c


# Text typing: QEMU's key queue budget (docs/protocol.rst CMD_INPUT).
_SHIFTED = set('~!@#$%^&*()_+{}|:"<>?ABCDEFGHIJKLMNOPQRSTUVWXYZ')


def text_pieces(text: str) -> List[bytes]:
    """Split text into pieces that fit QEMU's key queue (960 entries: 5 per
    character, 9 with Shift) and VMSIG_TEXT_MAX."""
    out, cur, cost = [], [], 0
    for ch in text:
        c = 9 if ch in _SHIFTED else 5
        if cost + c > 960 or len(cur) >= W.VMSIG_TEXT_MAX:
            out.append("".join(cur).encode("ascii"))
            cur, cost = [], 0
        cur.append(ch)
        cost += c
    if cur:
        out.append("".join(cur).encode("ascii"))
    return out


def vminfo(body: bytes) -> "VMInfo":
    from .events import VMInfo
    if len(body) < W.VMINFO.size:
        raise errors.ProtocolError(E.EPROTO, "query REPLY body of %d bytes" % len(body))
    v = W.VMINFO.struct.unpack_from(body)
    info = VMInfo(*[v[i] for i in _VMINFO_AT[:6]], W.cstr(v[_VMINFO_AT[6]]),
                  W.cstr(v[_VMINFO_AT[7]]))
    info.running = bool(info.running)
    if len(body) >= W.VMINFO.size + W.VMINFO_HOST.size:
        x = W.VMINFO_HOST.struct.unpack_from(body, W.VMINFO.size)
        info.pid, info.accel, info.uuid = (x[_HOST_AT[0]], W.cstr(x[_HOST_AT[1]]),
                                           x[_HOST_AT[2]])
    return info


# VMInfo's fields in the order of its constructor, by position in the structs
_VMINFO_AT = [W.VMINFO.at[f] for f in ("state", "running", "vcpus", "endpoint", "ram_size",
                                       "memctx_gen", "version", "name")]
_HOST_AT = [W.VMINFO_HOST.at[f] for f in ("pid", "accel", "uuid")]
