#!/usr/bin/env bash
# e2e: the Python client inside the guest (tests/python/test_introspect.py:
# vm.regs(), vm.linux(), mem.translate/vread, refusals, and the drgn reader
# under /usr/bin/python3 where python3-drgn is installed), on the QEMU under
# test (scripts/test runs every tests/e2e/*.sh once per QEMU). TAP.
exec "$(dirname "$0")/../python/run.sh" test_introspect
