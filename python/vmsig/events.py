"""Typed UP events. Every event has ``kind`` (the wire number), ``name``
(the label: "runstate", "memctx", ...), ``endpoint``, ``seq`` (this
control's delivery sequence number), ``ts_ns`` (server CLOCK_MONOTONIC),
``snapshot`` (re-sent as current state) and ``lost`` (events lost right
before this one: the gap in ``seq``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from . import wire as W


@dataclass
class Event:
    kind: int
    endpoint: int
    seq: int
    ts_ns: int
    snapshot: bool
    lost: int = 0

    @property
    def name(self) -> str:
        """The kind's label, as vmsig-helper prints it."""
        return W.kind_name(self.kind)


@dataclass
class SeamEvent(Event):
    """A SEAM event: the run state after it, and for RESET/SHUTDOWN why."""
    state: int = 0
    cause: int = 0
    running: bool = False
    guest: bool = False

    @property
    def state_name(self) -> str:
        """"running", "paused", ... ("other" for a state this client does not know)."""
        return W.runstate_name(self.state)

    @property
    def cause_name(self) -> str:
        return W.cause_name(self.cause)

    def __str__(self) -> str:
        s = "%s ep%d seq %d: %s" % (self.name, self.endpoint, self.seq, self.state_name)
        if self.kind in (W.VMSIG_EV_RESET, W.VMSIG_EV_SHUTDOWN):
            s += " cause %s%s" % (self.cause_name, " (guest)" if self.guest else "")
        return s


class RunState(SeamEvent):
    """EV_RUNSTATE: the run state changed (or the current one, as a snapshot)."""


class Reset(SeamEvent):
    """EV_RESET: the system was reset (``cause`` says why)."""


class PowerDown(SeamEvent):
    """EV_POWERDOWN: an ACPI powerdown was requested."""


class Suspend(SeamEvent):
    """EV_SUSPEND: the guest suspended to RAM (S3)."""


class Wakeup(SeamEvent):
    """EV_WAKEUP: the guest woke up."""


class Shutdown(SeamEvent):
    """EV_SHUTDOWN: QEMU is shutting the VM down (``cause``)."""


@dataclass
class Segment:
    """Guest-physical [gpa, gpa+size) lives in descriptor fd_index at offset."""
    gpa: int
    size: int
    offset: int
    fd_index: int


@dataclass
class MemCtx(Event):
    """EV_MEMCTX: a complete map of guest RAM with read-only descriptors.

    ``status`` 0: available; else a negative errno (``-ENODEV``: guest RAM
    not shareable) and ``why`` names the fix. ``fds`` are the event's
    descriptors: the event owns them until ``close()`` (or until a Memory
    takes them, see ``Client.memory``)."""
    generation: int = 0
    ram_size: int = 0
    status: int = 0
    why: str = ""
    segments: List[Segment] = field(default_factory=list)
    fds: List[int] = field(default_factory=list)

    @property
    def available(self) -> bool:
        return self.status == 0

    def close(self) -> None:
        """Close the descriptors (idempotent)."""
        fds, self.fds = self.fds, []
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def take_fds(self) -> List[int]:
        """Take the descriptors: from now on the caller closes them."""
        fds, self.fds = self.fds, []
        return fds

    def __del__(self) -> None:
        self.close()

    def __str__(self) -> str:
        if self.status:
            return "memctx ep%d seq %d: gen %d unavailable (%s): %s" % (
                self.endpoint, self.seq, self.generation, os.strerror(-self.status), self.why)
        return "memctx ep%d seq %d: gen %d, %d bytes in %d segments, %d fds" % (
            self.endpoint, self.seq, self.generation, self.ram_size, len(self.segments),
            len(self.fds))


@dataclass
class MemWriteDone(Event):
    """EV_MEMWRITE_DONE: a CMD_MEMWRITE of [gpa, gpa+len) was applied by ``writer``."""
    gpa: int = 0
    len: int = 0
    generation: int = 0
    writer: int = 0

    def __str__(self) -> str:
        return "memwrite-done ep%d seq %d: 0x%x+%d by %#x (gen %d)" % (
            self.endpoint, self.seq, self.gpa, self.len, self.writer, self.generation)


@dataclass
class Arb(Event):
    """EV_ARB: ownership of (endpoint, class) changed."""
    cls: int = 0
    what: int = 0
    owner: int = 0
    by: int = 0

    @property
    def cls_name(self) -> str:
        return W.CLASSES.get(self.cls, "unknown")

    @property
    def what_name(self) -> str:
        return W.ARB_WHAT.get(self.what, "unknown")

    def __str__(self) -> str:
        s = "arb ep%d seq %d: %s %s owner %#x" % (self.endpoint, self.seq, self.cls_name,
                                                   self.what_name, self.owner)
        return s + (" by %#x" % self.by if self.by else "")


@dataclass
class SnapshotEvent(Event):
    """EV_SNAPSHOT (protocol 1.2, feature SNAPSHOT): an in-memory snapshot
    ``snap_name`` was saved, restored or deleted by principal ``by``.
    ``generation`` is the MEMCTX generation after it: after a RESTORE a new
    map was published and every page may have changed. (Not to be confused
    with ``snapshot``, the flag of an event re-sent as current state.)"""
    what: int = 0
    by: int = 0
    generation: int = 0
    snap_name: str = ""

    @property
    def what_name(self) -> str:
        """"saved", "restored", "deleted" ("unknown" otherwise), as vmsig-helper watch."""
        return W.SNAP_WHAT.get(self.what, "unknown")

    def __str__(self) -> str:
        return "snapshot ep%d seq %d: %s %r by %#x (gen %d)" % (
            self.endpoint, self.seq, self.what_name, self.snap_name, self.by, self.generation)


SEAM_CLASSES = {
    W.VMSIG_EV_RUNSTATE: RunState, W.VMSIG_EV_RESET: Reset, W.VMSIG_EV_POWERDOWN: PowerDown,
    W.VMSIG_EV_SUSPEND: Suspend, W.VMSIG_EV_WAKEUP: Wakeup, W.VMSIG_EV_SHUTDOWN: Shutdown,
}


def decode(hdr: dict, payload: bytes, fds: List[int]) -> Event:
    """An Event from a checked UP frame (fds become the event's)."""
    kind = hdr["kind"]
    base = dict(kind=kind, endpoint=hdr["endpoint"], seq=hdr["id"], ts_ns=hdr["ts_ns"],
                snapshot=bool(hdr["flags"] & W.VMSIG_F_SNAPSHOT))
    if kind in SEAM_CLASSES:
        s = W.SEAM.unpack(payload)
        return SEAM_CLASSES[kind](**base, state=s["state"], cause=s["cause"],
                                  running=bool(s["running"]), guest=bool(s["guest"]))
    if kind == W.VMSIG_EV_MEMCTX:
        m = W.MEMCTX.unpack(payload)
        segs = []
        for i in range(m["nseg"]):
            s = W.MEMSEG.unpack(payload, W.MEMCTX.size + i * W.MEMSEG.size)
            segs.append(Segment(s["gpa"], s["size"], s["offset"], s["fd_index"]))
        return MemCtx(**base, generation=m["generation"], ram_size=m["ram_size"],
                      status=m["status"], why=W.cstr(m["why"]), segments=segs, fds=list(fds))
    if kind == W.VMSIG_EV_MEMWRITE_DONE:
        d = W.MEMWRITE_DONE.unpack(payload)
        return MemWriteDone(**base, gpa=d["gpa"], len=d["len"], generation=d["generation"],
                            writer=d["writer"])
    if kind == W.VMSIG_EV_SNAPSHOT:
        d = W.SNAP_EVENT.unpack(payload)
        return SnapshotEvent(**base, what=d["what"], by=d["by"], generation=d["generation"],
                             snap_name=W.cstr(d["name"]))
    if kind == W.VMSIG_EV_ARB:
        a = W.ARB.unpack(payload)
        return Arb(**base, cls=a["cls"], what=a["what"], owner=a["owner"], by=a["by"])
    raise AssertionError("not an event kind: %#x" % kind)


@dataclass
class VMInfo:
    """The CMD_VM query answer (``Client.status()``)."""
    state: int
    running: bool
    vcpus: int
    endpoint: int
    ram_size: int
    memctx_gen: int
    version: str
    name: str
    pid: Optional[int] = None     # with VMSIG_FEAT_VMINFO_HOST
    accel: Optional[str] = None
    uuid: Optional[bytes] = None

    @property
    def state_name(self) -> str:
        return W.runstate_name(self.state)


@dataclass
class Welcome:
    """What the server said in WELCOME: who we are, our grant, our
    effective subscription, limits and the negotiated features."""
    major: int
    minor: int
    principal: int
    endpoint_mask: int
    caps: int
    priority: int
    source_mask: int
    sub_endpoint_mask: int
    max_payload: int
    max_fds: int
    queue_limit: int
    features: int

    @property
    def caps_names(self) -> List[str]:
        return W.caps_names(self.caps)

    @property
    def endpoints(self) -> Tuple[int, ...]:
        return tuple(i for i in range(64) if self.endpoint_mask >> i & 1)
