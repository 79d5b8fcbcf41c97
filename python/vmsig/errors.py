"""Exceptions: every error carries ``errno`` (positive, as OSError does) and
the server's text where it sent one (a REPLY body or a BYE text).

The classes also derive from the matching built-in OSError subclass where
there is one, so ``except PermissionError`` works as well as
``except vmsig.PermissionDenied``.
"""
from __future__ import annotations

import errno as E
import os
from typing import Dict, Optional, Type


class VmsigError(OSError):
    """Base of every vmsig error.

    Attributes: ``errno`` (positive errno), ``strerror`` (what happened),
    ``server_text`` (the server's explanation, "" if none), ``status`` (the
    negative errno as on the wire).
    """

    def __init__(self, err: int, what: str = "", server_text: str = "") -> None:
        err = abs(err)
        msg = what or os.strerror(err)
        if server_text:
            msg = "%s: %s" % (msg, server_text)
        super().__init__(err, msg)
        self.server_text = server_text
        self.status = -err


class PermissionDenied(VmsigError, PermissionError):
    """EPERM: no grant (handshake: no grant or a wrong token), or the grant
    lacks the command's capability or endpoint."""


class Busy(VmsigError):
    """EBUSY: another control owns the command's class, or ACQUIRE was denied."""


class VMGone(VmsigError, BrokenPipeError):
    """EPIPE: the connection is gone. ``bye_status`` (negative errno, 0 if no
    BYE) and ``bye_text`` say why, when the server sent a BYE."""

    def __init__(self, err: int = E.EPIPE, what: str = "", server_text: str = "",
                 bye_status: int = 0) -> None:
        super().__init__(err, what or "the VM connection is gone", server_text)
        self.bye_status = bye_status
        self.bye_text = server_text


class Unavailable(VmsigError):
    """ENODEV: guest RAM is not shareable (MEMCTX status), or no memory support."""


class Timeout(VmsigError, TimeoutError):
    """ETIMEDOUT: nothing arrived in time (the client's deadline, or the
    server's handshake deadline in a BYE)."""


class ProtocolError(VmsigError):
    """EPROTO / EBADMSG: the server sent something malformed (the client
    closes the connection), or the server says we did."""


class NotSupported(VmsigError):
    """EOPNOTSUPP (unknown command, feature not negotiated, wakeup not
    supported) or EPROTONOSUPPORT (major version)."""


class InvalidArgument(VmsigError, ValueError):
    """EINVAL: a bad op, value or reserved field; QEMU refused it."""


class BadAddress(VmsigError):
    """EFAULT: a MEMWRITE (or read) byte that is not guest RAM."""


class ReadOnlyMemory(VmsigError):
    """EROFS: a MEMWRITE byte that is ROM or RAM mapped read-only."""


class NotOwner(VmsigError):
    """ENOENT from RELEASE: the sender does not own the class."""


class NoSnapshot(VmsigError, FileNotFoundError):
    """ENOENT from a snapshot RESTORE or DELETE: no snapshot of that name."""


class Stale(VmsigError):
    """ESTALE: a snapshot RESTORE after the VM's RAM blocks changed since
    its SAVE (memory hotplug): delete it and save again."""


class NoSpace(VmsigError):
    """ENOSPC: a snapshot SAVE over the server's snapshot-limit or past
    VMSIG_SNAP_MAX snapshots (the text says how much is needed and used)."""


class TryAgain(VmsigError, BlockingIOError):
    """EAGAIN: input while the VM is stopped, or text while text is typed."""


class TooBig(VmsigError):
    """E2BIG: text longer than QEMU's key queue; MEMCTX map too big."""


class NoBackend(VmsigError):
    """ENOSYS: the server has no VM backend."""


class QueueFull(VmsigError):
    """ENOBUFS: a slow reader (server BYE), or the client's own event queue
    overflowed while it waited for a reply (the connection is dropped)."""


class TooManyControls(VmsigError):
    """EMFILE: the server has max_controls controls attached."""


class OutOfMemory(VmsigError, MemoryError):
    """ENOMEM on the server."""


class ShuttingDown(VmsigError):
    """ESHUTDOWN: the server is going away."""


class MessageTooBig(VmsigError):
    """EMSGSIZE: a frame over the connection's max_payload."""


class ConnectFailed(VmsigError, ConnectionError):
    """ENOENT, ECONNREFUSED, EACCES at connect: no server at the path, or
    no permission on its socket."""


BY_ERRNO: Dict[int, Type[VmsigError]] = {
    E.EPERM: PermissionDenied,
    E.ENOENT: NotOwner,
    E.E2BIG: TooBig,
    E.EAGAIN: TryAgain,
    E.ENOMEM: OutOfMemory,
    E.EFAULT: BadAddress,
    E.EBUSY: Busy,
    E.ENODEV: Unavailable,
    E.EINVAL: InvalidArgument,
    E.EMFILE: TooManyControls,
    E.EROFS: ReadOnlyMemory,
    E.EPIPE: VMGone,
    E.ENOSYS: NoBackend,
    E.EPROTO: ProtocolError,
    E.EBADMSG: ProtocolError,
    E.EMSGSIZE: MessageTooBig,
    E.EPROTONOSUPPORT: NotSupported,
    E.EOPNOTSUPP: NotSupported,
    E.ENOBUFS: QueueFull,
    E.ESHUTDOWN: ShuttingDown,
    E.ETIMEDOUT: Timeout,
    E.ESTALE: Stale,
    E.ENOSPC: NoSpace,
    E.ECONNREFUSED: ConnectFailed,
    E.EACCES: ConnectFailed,
}


def error_for(status: int, what: str = "", server_text: str = "",
              kinds: Optional[Dict[int, Type[VmsigError]]] = None) -> VmsigError:
    """The exception for a (negative or positive) errno; ``kinds`` maps
    errnos to a command's own classes first (snapshots: ENOENT is NoSnapshot)."""
    cls = (kinds or {}).get(abs(status)) or BY_ERRNO.get(abs(status), VmsigError)
    if cls is VMGone:
        return VMGone(abs(status), what, server_text)
    return cls(status, what, server_text)


def gone(bye_status: Optional[int], bye_text: str, what: str = "") -> VMGone:
    """The VMGone for a connection that ended with this BYE (None: no BYE)."""
    bs = bye_status or 0
    why = what or ("the server closed the connection" if bye_status is None else
                   "the server said BYE (%s)" % (os.strerror(-bs) if bs else "orderly"))
    return VMGone(E.EPIPE, why, bye_text, bs)
