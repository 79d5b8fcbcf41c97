#!/usr/bin/env bash
# e2e: an in-process control inside QEMU. With log-events=on the object
# attaches one through the same C seam other QEMU code would use
# (vmsig_object_core + vmsig_inproc_new); it writes each event it receives to
# QEMU's log. A socket control's commands show up there, in order, next to
# what the socket control itself sees.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
. "$VMSIG_ROOT/tests/e2e/tap.sh"
vmsig_qemu_env >/dev/null || exit 1
H=$VMSIG_ROOT/build/native/helper/vmsig-helper

work=$(mktemp -d /tmp/vmsig-e2e-log.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
echo "uid:$(id -u) endpoints=0 caps=all" >"$work/grants"

"$VMSIG_QEMU" -accel tcg -m 128 -display none -nodefaults \
	-object memory-backend-memfd,id=ram0,size=128M,share=on -machine pc,memory-backend=ram0 \
	-object "vmsig,id=vs0,path=$work/vm.sock,grants=$work/grants,log-events=on" \
	>"$work/qemu.log" 2>&1 &
pid=$!
for i in $(seq 100); do [ -S "$work/vm.sock" ] && break; sleep 0.1; done
export VMSIG_SOCKET=$work/vm.sock

t_exit 0 "stop through a socket control" "$H" stop
t_exit 0 "MEMWRITE through a socket control" "$H" write 0x100000 "01 02 03 04 05 06 07 08"
t_exit 0 "cont through a socket control" "$H" cont
t_exit 0 "quit" "$H" quit
wait "$pid"
t_is "$?" 0 "QEMU exits cleanly with the in-process control attached"
pid=
log=$(cat "$work/qemu.log")
# -object runs before the machine is built: the state is prelaunch, and
# there is no RAM map yet (none is published until there is RAM)
t_like "$(grep -m1 'vmsig vs0:' "$work/qemu.log")" "seq=[0-9]+ runstate prelaunch cause=none \(snapshot\)" \
	"the in-process control got the run-state snapshot first"
t_like "$(grep -m1 'memctx' "$work/qemu.log")" "vmsig vs0: seq=[0-9]+ memctx gen=1 segs=[1-9][0-9]* fds=1 status=0$" \
	"its first MEMCTX (generation 1) has RAM and one read-only fd"
t_like "$log" "vmsig vs0: seq=[0-9]+ runstate running cause=none" "it saw the VM start"
t_like "$log" "vmsig vs0: seq=[0-9]+ runstate paused" "it saw the socket control's stop"
t_like "$log" "vmsig vs0: seq=[0-9]+ memwrite-done gpa=0x100000 len=8 writer=$(id -u)" \
	"it saw the socket control's MEMWRITE"
t_like "$log" "vmsig vs0: seq=[0-9]+ shutdown .*cause=host-qmp-quit" "it saw SHUTDOWN on quit"
order=$(grep -oE "runstate paused|memwrite-done|runstate running cause=none$" "$work/qemu.log" | tr '\n' ',')
t_like "$order" "runstate paused,memwrite-done,runstate running" "in the order they happened"
t_done
