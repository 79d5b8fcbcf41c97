#!/usr/bin/env bash
# e2e: the demo as a test. A real Debian guest kernel boots under TCG with
# -object vmsig; vmsig-helper sees the events, finds the kernel banner in
# guest RAM, and the mailbox works both ways; after stop the guest's counter
# does not advance until cont.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
. "$VMSIG_ROOT/scripts/vm.sh"
. "$VMSIG_ROOT/tests/e2e/tap.sh"
vmsig_qemu_env >/dev/null || exit 1
helper=$VMSIG_ROOT/build/native/helper/vmsig-helper

work=$(mktemp -d /tmp/vmsig-e2e.XXXXXX)
watch_pid=
trap '[ -n "$watch_pid" ] && kill $watch_pid 2>/dev/null; vm_kill; rm -rf "$work"' EXIT
echo "uid:$(id -u) endpoints=0 caps=all" >"$work/grants"

vm_start "$work" -object "vmsig,id=vs0,path=$work/vmsig.sock,grants=$work/grants"
t_ok "QEMU starts with -object vmsig and its socket appears" test -S "$VM_SOCK"
export VMSIG_SOCKET=$VM_SOCK

"$helper" --json watch >"$work/events.jsonl" 2>"$work/watch.err" &
watch_pid=$!

t_ok "the guest boots and its mailbox loop starts" vm_wait_console 'vmsig-guest: ready' 120

gpa=$("$helper" find --max 1 "Linux version 6" 2>/dev/null | head -n 1)
t_like "$gpa" '^0x[0-9a-f]+$' "find locates the kernel banner in guest RAM"
banner=$("$helper" read --raw "$gpa" 200 2>/dev/null | tr -c '[:print:]' '\n' | head -n 1)
release=$(sed -n 's/.*init on \([^ ]*\).*/\1/p' "$VM_CONSOLE" | tr -d '\r')
t_like "$release" '^6\.[0-9]+\.[0-9]+-' "the guest reports its kernel release on the console"
t_like "$banner" "^Linux version $release " "the banner read through the mapping names the kernel the guest runs"

magic=$("$helper" --json read "$VM_MAGIC" 4 | sed -n 's/.*"hex":"\([0-9a-f]*\)".*/\1/p')
t_is "$magic" 47495356 "guest -> helper: the guest's devmem write of VSIG is seen in the mapping"

counter() { "$helper" --json read "$VM_COUNTER" 4 | sed -n 's/.*"hex":"\([0-9a-f]*\)".*/\1/p'; }
t_exit 0 "stop" "$helper" stop
c1=$(counter)
sleep 1.5
c2=$(counter)
t_is "$c2" "$c1" "the guest's counter does not advance while stopped"
st=$("$helper" --json status)
t_like "$st" '"state":"paused"' "status says paused"
t_exit 0 "cont" "$helper" cont
sleep 1.5
c3=$(counter)
[ "$c3" != "$c2" ]
t_report $? "the counter advances after cont" "before $c2 after $c3"

t_exit 0 "write the mailbox (MEMWRITE)" "$helper" write "$VM_MAILBOX" "11 22 33 44 55 66 77 88"
t_ok "helper -> guest: the guest reads the MEMWRITE with devmem and prints it" \
	vm_wait_console 'vmsig-mailbox: 0x8877665544332211' 30

t_exit 0 "quit" "$helper" quit
wait "$VM_PID" 2>/dev/null
VM_PID=
# the watcher ends by itself on the server's BYE; allow it up to 10 s
for i in $(seq 100); do kill -0 "$watch_pid" 2>/dev/null || break; sleep 0.1; done
kill "$watch_pid" 2>/dev/null
wait "$watch_pid" 2>/dev/null
watch_pid=
ev=$(cat "$work/events.jsonl")
t_like "$(head -n 1 "$work/events.jsonl")" '"kind":"RUNSTATE".*"snapshot":true' "watch got the run state snapshot first"
t_like "$ev" '"kind":"RUNSTATE","snapshot":false,"state":"paused"' "watch saw RUNSTATE paused"
t_like "$ev" 'MEMWRITE_DONE' "watch saw MEMWRITE_DONE"
t_like "$ev" 'SHUTDOWN' "watch saw SHUTDOWN on quit"
t_done
