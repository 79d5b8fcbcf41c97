#!/usr/bin/env bash
# e2e: the Python client inside the guest, on the QEMU under test
# (scripts/test runs every tests/e2e/*.sh once per QEMU): tests/python/
# test_vmem.py (the Python page-table walk over synthetic tables, no QEMU)
# and test_introspect.py (vm.regs(), vm.linux(), mem.translate/vread,
# refusals, and the drgn reader under /usr/bin/python3 where python3-drgn is
# installed). TAP (two plans, one per module).
here=$(dirname "$0")
"$here/../python/run.sh" test_vmem
a=$?
"$here/../python/run.sh" test_introspect
b=$?
[ "$a" = 0 ] && [ "$b" = 0 ]
