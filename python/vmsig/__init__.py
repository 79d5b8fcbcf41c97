"""vmsig for Python: drive a QEMU VM through its vmsig socket.

    import vmsig
    vm = vmsig.connect("/run/vm0.vmsig")
    print(vm.status().state_name)            # "running"
    mem = vm.memory()                        # guest RAM, read-only, zero-copy
    print(mem.find(b"Linux version", max=1))
    vm.stop(); vm.memwrite(0x0c800000, b"\\x01"); vm.cont()
    for ev in vm.events(timeout=1):          # typed events: RunState, MemCtx, ...
        print(ev)
    vm.snapshot_save("s0"); vm.snapshot_restore("s0", then="run")   # protocol 1.2

asyncio, without threads: ``vm = await vmsig.aconnect(path)``, then
``await vm.stop()`` and ``async for ev in vm.aevents()``.

Only the standard library. The wire layouts come from
include/vmsig/vmsig_wire.h (``vmsig._wire``, generated). The protocol is
docs/protocol.rst; this package is docs/python.md.
"""
from . import wire
from .aio import AsyncClient, aconnect
from .client import Client, connect
from .errors import (BadAddress, Busy, ConnectFailed, InvalidArgument, MessageTooBig,
                     NoBackend, NoSnapshot, NoSpace, NotOwner, NotSupported, OutOfMemory,
                     PermissionDenied, ProtocolError, QueueFull, ReadOnlyMemory, ShuttingDown,
                     Stale, Timeout, TooBig, TooManyControls, TryAgain, Unavailable, VMGone,
                     VmsigError, error_for)
from .events import (Arb, Event, MemCtx, MemWriteDone, PowerDown, Reset, RunState,
                     SeamEvent, Segment, Shutdown, SnapshotEvent, Suspend, VMInfo, Wakeup,
                     Welcome)
from .snapshot import SnapInfo, SnapList, SnapResult
from .memory import MemMap, Memory
from .introspect import LinuxInfo, NotMapped, Regs, Translation
from .wire import KEYS, runstate_name, cause_name

__version__ = "1.0.0"
PROTOCOL = (wire.VMSIG_WIRE_MAJOR, wire.VMSIG_WIRE_MINOR)

__all__ = [
    "connect", "aconnect", "Client", "AsyncClient", "Memory", "MemMap", "wire", "KEYS",
    "Event", "SeamEvent", "RunState", "Reset", "PowerDown", "Suspend", "Wakeup", "Shutdown",
    "MemCtx", "MemWriteDone", "Arb", "SnapshotEvent", "Segment", "VMInfo", "Welcome",
    "SnapInfo", "SnapResult", "SnapList",
    "VmsigError", "PermissionDenied", "Busy", "VMGone", "Unavailable", "Timeout",
    "ProtocolError", "NotSupported", "InvalidArgument", "BadAddress", "ReadOnlyMemory",
    "NotOwner", "TryAgain", "TooBig", "NoBackend", "QueueFull", "TooManyControls",
    "OutOfMemory", "ShuttingDown", "MessageTooBig", "ConnectFailed", "NoSnapshot", "Stale",
    "NoSpace", "error_for",
    "runstate_name", "cause_name", "PROTOCOL",
    "Regs", "Translation", "NotMapped", "LinuxInfo",
]
