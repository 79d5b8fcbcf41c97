"""Notebook-style snippets (paste cell by cell into Jupyter/IPython).
PYTHONPATH=python, VMSIG_SOCKET=/path/to/vmsig.sock."""

# %% connect and look
import vmsig
vm = vmsig.connect()                 # $VMSIG_SOCKET
vm.status()                          # VMInfo(state=9, running=True, ..., accel='tcg')

# %% guest RAM as a buffer, no copy
mem = vm.memory()
mem.segments                         # [Segment(gpa=0, size=..., offset=0, fd_index=0), ...]
hit = mem.find(b"Linux version", max=1)[0]
mem.read(hit, 80)

# %% numpy over the live mapping (Debian: python3-numpy for /usr/bin/python3)
import numpy as np
page = np.frombuffer(mem.view(0x0C800000, 4096), dtype=np.uint32)
page[2]                              # the guest's counter, live: evaluate again, it moves

# %% which parts of RAM hold data (no page is touched to find out)
sum(n for _, n in mem.data_ranges()) / mem.ram_size

# %% drive it
vm.stop(); vm.memwrite(0x0C800000, b"\x2a" + bytes(7)); vm.cont()
[str(e) for e in vm.poll()]

# %% asyncio (a notebook already runs a loop: use await directly)
# avm = await vmsig.aconnect()
# await avm.stop(); await avm.cont()
# async for ev in avm.aevents(timeout=1): print(ev)
