#!/usr/bin/env bash
# e2e: scripts/demo, a newcomer's first command (issue 10 item 10): it exits
# 0 when everything worked and leaves nothing behind (its temp directory,
# QEMU, the watcher); stopped half way (SIGTERM while the guest boots), it
# exits non-zero and still leaves nothing behind.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
. "$VMSIG_ROOT/tests/e2e/tap.sh"
DEMO=${VMSIG_DEMO:-$VMSIG_ROOT/scripts/demo}

out=$(mktemp /tmp/vmsig-demo-test.XXXXXX)
dpid=
cleanup() {
	[ -n "$dpid" ] && kill "$dpid" 2>/dev/null
	rm -f "$out"
}
trap cleanup EXIT

# the demo's temp directory, from the line that shows its socket path
demo_dir() { sed -n 's|.*path=\(/tmp/vmsig-demo\.[A-Za-z0-9]*\)/vmsig\.sock.*|\1|p' "$out" | head -n 1; }
# processes still running with that directory on their command line
leftovers() { [ -n "$1" ] && pgrep -a -f -- "$1" || true; }
settle() { # DIR: give exiting children a moment
	local i
	for i in $(seq 20); do
		[ -z "$(leftovers "$1")" ] && return 0
		sleep 0.1
	done
}

# --- a full run
timeout 600 "$DEMO" >"$out" 2>&1 </dev/null
rc=$?
dir=$(demo_dir)
t_is "$rc" 0 "scripts/demo exits 0 on success"
[ "$rc" = 0 ] || tail -n 30 "$out" | sed 's/^/# /'
t_like "$(cat "$out")" "done: events, memory, commands and snapshots" "the demo got to the end"
t_like "$(cat "$out")" "guest counter after the restore: [0-9]+" "the demo restored a snapshot"
t_ok "the demo's temp directory was named in its output ($dir)" test -n "$dir"
t_ok "its temp directory is gone" test ! -e "${dir:-/nonexistent}"
settle "$dir"
t_is "$(leftovers "$dir")" "" "no QEMU or watcher of the demo is left running"

# --- stopped half way: non-zero, and still nothing left
: >"$out"
"$DEMO" >"$out" 2>&1 </dev/null &
dpid=$!
for _ in $(seq 1200); do
	grep -q 'waiting for the guest to boot' "$out" && break
	kill -0 "$dpid" 2>/dev/null || break
	sleep 0.1
done
dir=$(demo_dir)
kill -TERM "$dpid" 2>/dev/null
wait "$dpid"
rc=$?
dpid=
t_ok "SIGTERM while the guest boots: the demo exits non-zero (status $rc)" test "$rc" != 0
t_ok "its temp directory ($dir) is gone" test -n "$dir" -a ! -e "${dir:-/nonexistent}"
settle "$dir"
t_is "$(leftovers "$dir")" "" "no QEMU or watcher of the demo is left running"

t_done
