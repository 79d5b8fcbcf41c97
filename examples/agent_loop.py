#!/usr/bin/env python3
"""An agent loop over vmsig: wait for the guest to boot, watch its counter
through the read-only mapping, stop it, write its mailbox (MEMWRITE), let
it go again, and react to the events that come back.

    PYTHONPATH=python examples/agent_loop.py /path/to/vmsig.sock

Made for the e2e test guest (scripts/vm.sh, scripts/guest/README.md): the
counter is at 0x0c800008, the mailbox at 0x0c800000.
"""
import sys
import time

import vmsig

MAILBOX, COUNTER = 0x0C800000, 0x0C800008


def main(path):
    vm = vmsig.connect(path, timeout=10)
    print("attached as principal %#x with %s" % (vm.welcome.principal,
                                                 ",".join(vm.welcome.caps_names)))
    mem = vm.memory()
    # 1. wait for boot: the guest writes "VSIG" at 0x0c800010 when its loop starts
    deadline = time.monotonic() + 120
    while mem.read(0x0C800010, 4) != b"GISV":
        if time.monotonic() > deadline:
            sys.exit("the guest did not boot")
        vm.poll()          # keep up with events (and new MEMCTX generations)
        time.sleep(0.2)
    print("booted; counter", mem.u32(COUNTER))
    # 2. observe, act, observe
    for step in range(3):
        before = mem.u32(COUNTER)
        time.sleep(0.5)
        print("step %d: counter %d -> %d" % (step, before, mem.u32(COUNTER)))
        with vm.acquire("run"):                 # nobody else stops/conts meanwhile
            vm.stop()
            frozen = mem.u32(COUNTER)
            vm.memwrite(MAILBOX, (0x1000 + step).to_bytes(8, "little"))
            vm.cont()
        print("  stopped at %d, wrote mailbox %#x" % (frozen, 0x1000 + step))
        for ev in vm.events(timeout=0.2):      # what our actions caused
            if ev.lost:
                print("  (%d events lost)" % ev.lost)
            print("  event:", ev)
    vm.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
