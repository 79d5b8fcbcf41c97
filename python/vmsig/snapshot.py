"""In-memory snapshots (CMD_SNAPSHOT, protocol 1.2): the payload the client
sends and the REPLY bodies it reads, as small dataclasses with the C
structs' fields (include/vmsig/vmsig_wire.h ``vmsig_wire_snap_*``).
``Client.snapshot_save/restore/delete/list`` use them; docs/snapshot.md
says what a snapshot holds.
"""
from __future__ import annotations

import errno as E
import re
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Union

from . import errors
from . import wire as W

NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,%d}\Z" % (W.VMSIG_SNAP_NAME_MAX - 1))

THEN: Dict[Optional[str], int] = {
    None: W.VMSIG_SNAP_THEN_KEEP, "keep": W.VMSIG_SNAP_THEN_KEEP,
    "run": W.VMSIG_SNAP_THEN_RUN, "pause": W.VMSIG_SNAP_THEN_PAUSE,
}

# The server's -ENOENT means "no snapshot of that name" here, not NotOwner.
KINDS = {E.ENOENT: errors.NoSnapshot}


@dataclass
class SnapInfo:
    """One snapshot (``vmsig_wire_snap_info``)."""
    name: str
    ram_bytes: int    # guest RAM it holds (its share of snapshot-limit)
    age_ms: int       # since its SAVE
    state_bytes: int  # device state (QEMU's vmstate without RAM)
    restores: int     # RESTOREs of it so far


@dataclass
class SnapResult:
    """What SAVE, RESTORE and DELETE answer (``vmsig_wire_snap_result``)."""
    info: SnapInfo    # the snapshot (DELETE: as it was)
    generation: int   # MEMCTX generation after the command (RESTORE: a new one)
    pages: int        # SAVE: 4 KiB pages copied; RESTORE: pages copied back
    stopped_ns: int   # how long the vCPUs were stopped for it
    full: bool        # RESTORE: every page was copied back

    @property
    def name(self) -> str:
        return self.info.name


@dataclass
class SnapList:
    """What LIST answers (``vmsig_wire_snap_list`` + its ``vmsig_wire_snap_info``,
    oldest first). Iterates over the snapshots; ``vm.snapshot_list()["s0"]``."""
    max: int          # VMSIG_SNAP_MAX
    used: int         # bytes all snapshots hold (RAM and device state)
    limit: int        # the server's snapshot-limit
    snapshots: List[SnapInfo] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.snapshots)

    @property
    def names(self) -> List[str]:
        return [s.name for s in self.snapshots]

    def __iter__(self) -> Iterator[SnapInfo]:
        return iter(self.snapshots)

    def __len__(self) -> int:
        return len(self.snapshots)

    def __contains__(self, name: object) -> bool:
        return any(s.name == name for s in self.snapshots)

    def __getitem__(self, name: str) -> SnapInfo:
        for s in self.snapshots:
            if s.name == name:
                return s
        raise KeyError(name)


def check_name(name: str) -> bytes:
    """The name as the wire's bytes; InvalidArgument (EINVAL) unless it is
    1..31 of ``A-Z a-z 0-9 . _ -`` (the server's rule too)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise errors.InvalidArgument(E.EINVAL, "snapshot name %r: 1..%d of A-Z a-z 0-9 . _ -"
                                     % (name, W.VMSIG_SNAP_NAME_MAX - 1))
    return name.encode("ascii")


def then_code(then: Union[None, str, int]) -> int:
    if isinstance(then, int) and not isinstance(then, bool):
        if then in THEN.values():
            return then
    elif then in THEN:
        return THEN[then]
    raise ValueError("then=%r: None (keep the run state), 'run' or 'pause'" % (then,))


def payload(op: int, name: Optional[str] = None, then: Union[None, str, int] = None,
            full: bool = False) -> bytes:
    return W.SNAPSHOT.pack(op=op, then=then_code(then),
                           flags=W.VMSIG_SNAP_F_FULL if full else 0,
                           name=b"" if op == W.VMSIG_SNAP_LIST else check_name(name))


def _info(d: dict, prefix: str = "") -> SnapInfo:
    return SnapInfo(name=W.cstr(d[prefix + "name"]), ram_bytes=d[prefix + "ram_bytes"],
                    age_ms=d[prefix + "age_ms"], state_bytes=d[prefix + "state_bytes"],
                    restores=d[prefix + "restores"])


def result_from_body(body: bytes, what: str) -> SnapResult:
    if len(body) < W.SNAP_RESULT.size:
        raise errors.ProtocolError(E.EPROTO, "%s: REPLY body of %d bytes, want %d"
                                   % (what, len(body), W.SNAP_RESULT.size))
    r = W.SNAP_RESULT.unpack(body)
    return SnapResult(info=_info(r, "info_"), generation=r["generation"], pages=r["pages"],
                      stopped_ns=r["stopped_ns"], full=bool(r["full"]))


def list_from_body(body: bytes) -> SnapList:
    L, I = W.SNAP_LIST, W.SNAP_INFO
    if len(body) < L.size:
        raise errors.ProtocolError(E.EPROTO, "snapshot list: REPLY body of %d bytes" % len(body))
    h = L.unpack(body)
    if len(body) < L.size + h["count"] * I.size:
        raise errors.ProtocolError(E.EPROTO, "snapshot list: %d snapshots in a REPLY body of %d "
                                   "bytes" % (h["count"], len(body)))
    snaps = [_info(I.unpack(body, L.size + i * I.size)) for i in range(h["count"])]
    return SnapList(max=h["max"], used=h["used"], limit=h["limit"], snapshots=snaps)
