#!/usr/bin/env bash
# tests/python/run.sh MODULE [PYTHON]: run one tests/python module as TAP
# (one "ok N - name" line per test), with the QEMU build and the test guest
# in the environment (scripts/lib.sh vmsig_qemu_env, scripts/build-guest).
# PYTHON defaults to python3 on PATH; test_numpy uses /usr/bin/python3
# (Debian's python3-numpy).
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
if [ -z "${VMSIG_QEMU:-}" ] || [ ! -x "${VMSIG_QEMU:-}" ]; then
	vmsig_qemu_env >/dev/null || true
fi
if [ -z "${VMSIG_GUEST_KERNEL:-}" ]; then
	eval "$("$VMSIG_ROOT/scripts/build-guest" 2>/dev/null | grep '^VMSIG_GUEST_')"
fi
export VMSIG_QEMU QEMU_MODULE_DIR VMSIG_GUEST_KERNEL VMSIG_GUEST_INITRD
py=${2:-python3}
export VMSIG_PY_REQUIRE_VM=${VMSIG_PY_REQUIRE_VM:-1}
cd "$VMSIG_ROOT/tests/python" && exec "$py" vmtest.py "$1"
