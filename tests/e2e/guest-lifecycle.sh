#!/usr/bin/env bash
# e2e: SEAM events that only a real guest can cause. The guest (scripts/guest)
# takes a command from its mailbox: suspend to RAM (SUSPEND, then vmsig
# wakeup -> WAKEUP), reboot (RESET caused by the guest), panic (pvpanic:
# RUNSTATE guest-panicked; vmsig reset + cont bring it back), power off
# (SHUTDOWN caused by the guest; QEMU exits and the control is told).
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
. "$VMSIG_ROOT/scripts/vm.sh"
. "$VMSIG_ROOT/tests/e2e/tap.sh"
vmsig_qemu_env >/dev/null || exit 1
H=$VMSIG_ROOT/build/native/helper/vmsig-helper

work=$(mktemp -d /tmp/vmsig-e2e-lc.XXXXXX)
watch_pid=
trap '[ -n "$watch_pid" ] && kill $watch_pid 2>/dev/null; vm_kill; rm -rf "$work"' EXIT
echo "uid:$(id -u) endpoints=0 caps=all" >"$work/grants"

VM_REBOOT=1 vm_start "$work" -object "vmsig,id=vs0,path=$work/vmsig.sock,grants=$work/grants" \
	-device pvpanic -action panic=pause
export VMSIG_SOCKET=$VM_SOCK
"$H" --json watch --live >"$work/ev" 2>"$work/watch.err" &
watch_pid=$!
t_ok "the guest boots" vm_wait_console 'vmsig-guest: ready' 120

# wait_event REGEX SECONDS: until a watch line matches
wait_event() {
	local i
	for i in $(seq $(($2 * 10))); do
		grep -qE "$1" "$work/ev" && return 0
		sleep 0.1
	done
	return 1
}
guest_cmd() { "$H" -q write "$VM_CMD" "$1 00 00 00"; }

t_ok "command the guest to suspend to RAM" guest_cmd 03
t_ok "SUSPEND event from the guest" wait_event '"kind":"SUSPEND"' 60
t_ok "RUNSTATE suspended" wait_event '"kind":"RUNSTATE".*"state":"suspended"' 10
t_like "$("$H" --json status)" '"state":"suspended"' "status says suspended"
t_like "$("$H" watch --count 1)" 'RUNSTATE suspended .*snapshot' "a control attaching now gets the suspended state as its snapshot"
t_exit 0 "vmsig-helper wakeup" "$H" wakeup
t_ok "WAKEUP event" wait_event '"kind":"WAKEUP"' 30
t_ok "the guest resumes and says so" vm_wait_console 'vmsig-guest: resumed' 60

t_ok "command the guest to reboot" guest_cmd 01
t_ok "RESET caused by the guest (guest-reset)" \
	wait_event '"kind":"RESET".*"cause":"guest-reset","guest":true' 60
t_ok "the guest boots again after its reset" \
	bash -c "for i in \$(seq 600); do [ \$(grep -c 'vmsig-guest: ready' '$VM_CONSOLE') -ge 2 ] && exit 0; sleep 0.2; done; exit 1"

t_ok "command the guest to panic" guest_cmd 04
t_ok "RUNSTATE guest-panicked (pvpanic)" wait_event '"kind":"RUNSTATE".*"state":"guest-panicked"' 60
t_like "$("$H" --json status)" '"state":"guest-panicked"' "status says guest-panicked"
t_exit 0 "vmsig-helper reset" "$H" reset
t_exit 0 "vmsig-helper cont" "$H" cont
t_ok "the guest boots again after the panic" \
	bash -c "for i in \$(seq 600); do [ \$(grep -c 'vmsig-guest: ready' '$VM_CONSOLE') -ge 3 ] && exit 0; sleep 0.2; done; exit 1"

t_ok "command the guest to power off" guest_cmd 02
t_ok "SHUTDOWN caused by the guest (guest-shutdown)" \
	wait_event '"kind":"SHUTDOWN".*"cause":"guest-shutdown","guest":true' 60
wait "$VM_PID"
t_is "$?" 0 "QEMU exits cleanly after the guest powered off"
VM_PID=
wait "$watch_pid"
t_is "$?" 5 "watch ends with exit 5 (VM gone)"
watch_pid=
t_like "$(cat "$work/watch.err")" "server shutting down" "the control was told why (BYE)"
t_done
