#!/usr/bin/env bash
# e2e: every vmsig-helper subcommand and every error exit, against real QEMUs
# with -object vmsig (TCG; firmware only, no guest kernel needed here), and a
# second helper contending for INPUT under each policy.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
. "$VMSIG_ROOT/tests/e2e/tap.sh"
vmsig_qemu_env >/dev/null || exit 1
H=$VMSIG_ROOT/build/native/helper/vmsig-helper

work=$(mktemp -d /tmp/vmsig-cli.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

# qemu NAME MEMFD(0/1) VMSIG-OPTIONS: start a VM, wait for its socket.
qemu() {
	local name=$1 memfd=$2 opts=$3 mem=()
	[ "$memfd" = 1 ] && mem=(-object memory-backend-memfd,id=ram0,size=128M,share=on
		-machine pc,memory-backend=ram0)
	"$VMSIG_QEMU" -accel tcg -m 128 -display none -nodefaults -name "$name" "${mem[@]}" \
		-object "vmsig,id=vs0,path=$work/$name.sock,$opts" \
		>"$work/$name.log" 2>&1 &
	pids+=($!)
	eval "PID_$name=$!"
	local i
	for i in $(seq 100); do
		[ -S "$work/$name.sock" ] && return 0
		sleep 0.1
	done
	cat "$work/$name.log"
	return 1
}

# wait_for FILE REGEX: until a background helper has written that (up to 30 s),
# so the next step never races its connection
wait_for() {
	local i
	for i in $(seq 300); do
		grep -qE "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "# timed out waiting for /$2/ in $1" >&2
	return 1
}

uid=$(id -u)
cat >"$work/all.grants" <<G
uid:$uid endpoints=0 caps=all priority=10
token:human endpoints=0 caps=all priority=100
token:bot endpoints=0 caps=all priority=1
G
cat >"$work/ro.grants" <<G
uid:$uid endpoints=0 caps=OBSERVE,VM,MEMCTX
G

qemu a 1 "grants=$work/all.grants,policy=deny" || exit 1
qemu b 1 "grants=$work/ro.grants,endpoint=0" || exit 1
qemu anon 0 "grants=$work/all.grants" || exit 1
A=$work/a.sock
B=$work/b.sock

# --- usage and help
t_exit 0 "--help" "$H" --help
t_like "$T_OUT" "status" "--help lists the commands"
for c in status watch stop cont pause resume wakeup powerdown reset quit read dump find write key type mouse acquire release; do
	t_exit 0 "$c --help" "$H" "$c" --help
done
t_exit 1 "unknown command is a usage error" "$H" -s "$A" frobnicate
t_exit 1 "missing argument is a usage error" "$H" -s "$A" read 0x1000

# --- cannot connect
t_exit 2 "no socket at that path: exit 2" "$H" -s "$work/nothing.sock" status
t_like "$T_OUT" "nothing.sock" "the message names the path"

# --- status / run control
t_exit 0 "status" "$H" -s "$A" status
t_like "$T_OUT" "state: +running" "status says running"
t_like "$T_OUT" "accel: +tcg" "status names the accelerator (negotiated VMINFO_HOST)"
t_like "$T_OUT" "protocol: +1\.2, features 0x7" "status shows the negotiated protocol"
t_exit 0 "status --json" "$H" -s "$A" --json status
t_like "$T_OUT" '"vcpus":1,"ram_size":134217728' "JSON status has vcpus and RAM size"
t_like "$T_OUT" '"protocol":"1.2","features":7,"pid":[1-9][0-9]*,"accel":"tcg"' "JSON status has protocol, QEMU pid and accel"
t_exit 0 "stop" "$H" -s "$A" stop
t_like "$("$H" -s "$A" --json status)" '"state":"paused"' "paused after stop"
t_exit 0 "cont" "$H" -s "$A" cont
t_like "$("$H" -s "$A" --json status)" '"state":"running"' "running after cont"
t_exit 0 "pause" "$H" -s "$A" pause
t_like "$("$H" -s "$A" --json status)" '"state":"paused"' "paused after pause"
t_exit 0 "resume" "$H" -s "$A" resume
t_like "$("$H" -s "$A" --json status)" '"state":"running"' "running after resume"
t_exit 7 "wakeup of a guest that is not suspended is refused by QEMU" "$H" -s "$A" wakeup
t_like "$T_OUT" "suspended" "wakeup refusal says why (QEMU's text)"

# --- watch
"$H" -s "$A" --json watch --until RESET >"$work/watch.out" 2>&1 &
wpid=$!
wait_for "$work/watch.out" '"snapshot":true' # attached
t_exit 0 "reset" "$H" -s "$A" reset
t_exit 0 "powerdown" "$H" -s "$A" powerdown
wait "$wpid"
t_is "$?" 0 "watch --until RESET ends when the reset arrives"
t_like "$(cat "$work/watch.out")" '"kind":"RESET".*"cause":"host-qmp-system-reset"' "watch shows RESET with its cause"
t_exit 0 "watch --count 2 (snapshot: RUNSTATE then MEMCTX)" "$H" -s "$A" watch --count 2
t_like "$T_OUT" "RUNSTATE running .*snapshot" "first snapshot line is the run state"
t_like "$T_OUT" "MEMCTX gen=[0-9]+ ram=128MiB" "MEMCTX line shows generation and RAM"

# --- memory
t_exit 0 "write hex" "$H" -s "$A" write 0x100000 "de ad be ef 01 02 03 04"
t_exit 0 "read --json" "$H" -s "$A" --json read 0x100000 8
t_like "$T_OUT" '"hex":"deadbeef01020304"' "read sees the MEMWRITE through the mapping"
t_exit 0 "read hexdump" "$H" -s "$A" read 0x100000 8
t_like "$T_OUT" "00100000: dead beef 0102 0304" "hexdump format"
printf 'vmsig-e2e-needle' >"$work/needle"
t_exit 0 "write @file" "$H" -s "$A" write 0x200123 "@$work/needle"
t_exit 0 "find a string" "$H" -s "$A" find "vmsig-e2e-needle"
t_like "$T_OUT" "0x200123" "find prints the GPA of the match"
t_exit 0 "find --hex" "$H" -s "$A" find --hex "de ad be ef 01 02 03 04"
t_like "$T_OUT" "0x100000" "find --hex finds the bytes"
t_exit 0 "dump a range" "$H" -s "$A" dump "$work/range.bin" 0x200123 16
t_is "$(cat "$work/range.bin")" "vmsig-e2e-needle" "dump writes the range"
segsum_now() {
	"$H" -s "$A" --json watch --count 2 | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e["kind"] == "MEMCTX":
        print(sum(s["size"] for s in e["segs"]))'
}
# The firmware still changes the map early on (PAM): compare with a map
# that was the same before and after the dump.
for try in 1 2 3 4 5; do
	before=$(segsum_now)
	t_dump_rc=0
	"$H" -s "$A" -q dump "$work/all.bin" || t_dump_rc=$?
	segsum=$(segsum_now)
	[ "$before" = "$segsum" ] && break
	sleep 1
done
t_is "$t_dump_rc" 0 "dump all RAM"
t_is "$(stat -c %s "$work/all.bin")" "$segsum" "dump of all RAM is every RAM segment of the map"
t_like "$segsum" '^1[0-9]{8}$' "the RAM segments of a 128 MiB pc guest add up to about 128 MiB"
t_exit 7 "read outside guest RAM" "$H" -s "$A" read 0xfee00000 16
t_like "$T_OUT" "not guest RAM" "the message says it is not guest RAM"
t_exit 7 "dump of a range that is not all RAM fails" "$H" -s "$A" dump "$work/low.bin" 0 1M
t_is "$([ -e "$work/low.bin" ] && echo kept || echo removed)" "removed" "a failed dump removes the file it created"
t_exit 7 "write to MMIO is refused" "$H" -s "$A" write 0xfee00000 "00"
t_like "$T_OUT" "Bad address" "MEMWRITE to MMIO is EFAULT"

# --- the README's client-library example, against the same VM
t_exit 0 "examples/client-control runs against a real QEMU" \
	"$VMSIG_ROOT/build/native/examples/client-control" "$A" 2 0x100000
t_like "$T_OUT" "event seq=[0-9]+ ep=0 runstate \(snapshot\) running" "it sees the run state snapshot"
t_like "$T_OUT" "vm: running, 1 vcpus, 128 MiB RAM, QEMU ${VMSIG_QEMU_VERSION//./\\.}" "it queries the VM"
t_like "$T_OUT" "00100000: de ad be ef 01 02 03 04" "it reads guest RAM through its mapping"

# --- input
t_exit 0 "key" "$H" -s "$A" key a shift-b ret
t_exit 0 "type" "$H" -s "$A" type "hello"
long=$(printf 'the quick brown fox jumps over the lazy dog %.0s' 1 2 3 4 5)
t_exit 0 "type a text longer than QEMU's key queue holds (sent in pieces)" "$H" -s "$A" type "$long"
t_like "$T_OUT" "typed 220 characters" "all of it typed"
t_exit 0 "mouse move" "$H" -s "$A" mouse move 10 -5
t_exit 0 "mouse click" "$H" -s "$A" mouse click right
t_exit 1 "unknown key name is a usage error" "$H" -s "$A" key notakey
t_exit 0 "key --list" "$H" -s "$A" key --list
t_like "$T_OUT" "^ *30 a$" "key --list gives a's Linux code"

# --- grants file check (no socket)
printf '# test\nuid:1000 endpoints=all caps=all\ntoken:abc endpoints=0 caps=OBSERVE\ndefault endpoints=all caps=OBSERVE\n' >"$work/g.txt"
t_exit 0 "grants FILE" "$H" grants "$work/g.txt"
t_like "$T_OUT" "line 3: token \(not shown\)  principal 2588403979 \(0x9a47e90b\)" "grants prints a token line's principal"
printf 'uid:3000000000 endpoints=all caps=all\n' >"$work/g2.txt"
t_exit 1 "grants FILE refuses a uid in the token range" "$H" grants "$work/g2.txt"
t_like "$T_OUT" "line 1: uid 3000000000 is out of range" "and names the line"

# --- grants
t_exit 3 "write without MEMWRITE: exit 3" "$H" -s "$B" write 0x1000 00
t_like "$T_OUT" "missing capability MEMWRITE" "the message names the missing capability"
t_exit 3 "quit without POWER: exit 3" "$H" -s "$B" quit
t_like "$T_OUT" "missing capability POWER" "names POWER"
t_exit 3 "type without INPUT: exit 3" "$H" -s "$B" type x
t_exit 3 "pause without LIFECYCLE: exit 3" "$H" -s "$B" pause
t_exit 3 "a token with no grant is refused at connect: exit 3" "$H" -s "$A" --token nosuch status
t_like "$T_OUT" "no grant for this token" "the refusal says so"

# --- several VMs at once
t_exit 0 "status of two VMs in one invocation" "$H" -s "$A" -s "$B" status
t_like "$T_OUT" "a.sock: name: +a" "the first VM's lines are labelled with its socket"
t_like "$T_OUT" "b.sock: name: +b" "the second VM's lines are labelled with its socket"

# --- MEMCTX unavailable
t_exit 6 "read with anonymous RAM: exit 6" "$H" -s "$work/anon.sock" read 0 16
t_like "$T_OUT" "memory-backend-memfd" "the message names the fix"
t_exit 0 "status still works with anonymous RAM" "$H" -s "$work/anon.sock" status

# --- arbitration: deny (VM a)
"$H" -s "$A" --token bot acquire input --hold 20 >"$work/hold.out" 2>&1 &
hold=$!
wait_for "$work/hold.out" "acquired input"
t_exit 4 "deny: another control's INPUT is busy" "$H" -s "$A" type x
t_exit 4 "deny: a second acquire is refused, even with a higher priority" "$H" -s "$A" --token human acquire input --then type x
kill -INT "$hold"; wait "$hold"
t_exit 0 "after the owner releases, input works again" "$H" -s "$A" type x

# --- preempt and priority (fresh VMs with those policies)
qemu p 1 "grants=$work/all.grants,policy=preempt" || exit 1
"$H" -s "$work/p.sock" --token human acquire input --hold 20 >"$work/hold.out" 2>&1 &
hold=$!
wait_for "$work/hold.out" "acquired input"
t_exit 0 "preempt: the newcomer takes input" "$H" -s "$work/p.sock" --token bot acquire input --then type x
wait "$hold"
t_is "$?" 4 "preempt: the old owner exits 4"
t_like "$(cat "$work/hold.out")" "lost input.*preempted" "the old owner is told it was preempted"

qemu q 1 "grants=$work/all.grants,policy=priority" || exit 1
"$H" -s "$work/q.sock" --token bot acquire input --hold 20 >"$work/hold.out" 2>&1 &
hold=$!
wait_for "$work/hold.out" "acquired input"
t_exit 0 "priority: a higher-priority grant takes input" "$H" -s "$work/q.sock" --token human acquire input --hold 3
wait "$hold"
t_is "$?" 4 "priority: the lower-priority owner loses it"
"$H" -s "$work/q.sock" --token human acquire input --hold 20 >"$work/hold.out" 2>&1 &
hold=$!
wait_for "$work/hold.out" "acquired input"
t_exit 4 "priority: a lower-priority grant cannot take it" "$H" -s "$work/q.sock" --token bot acquire input --then type x
kill -INT "$hold"; wait "$hold"

# --- VM gone, quit
"$H" -s "$A" watch >"$work/gone.out" 2>&1 &
wpid=$!
wait_for "$work/gone.out" "snapshot"
t_exit 0 "quit" "$H" -s "$A" quit
wait "$PID_a"
t_is "$?" 0 "QEMU exits cleanly on quit"
wait "$wpid"
t_is "$?" 5 "watch exits 5 when the VM goes away"
t_like "$(cat "$work/gone.out")" "SHUTDOWN" "watch saw SHUTDOWN before the VM went away"
t_exit 2 "after quit the socket is gone: exit 2" "$H" -s "$A" status
t_done
