# scripts/vm.sh: boot the test guest with -object vmsig (sourced by
# scripts/demo and tests/e2e/*). Needs scripts/lib.sh sourced, a QEMU build
# (vmsig_qemu_env) and the guest (scripts/build-guest).
#
#   vm_start DIR [EXTRA QEMU ARGS...]  boot under TCG; sets VM_PID, VM_SOCK
#                                      (vmsig socket), VM_QMP (QMP socket),
#                                      VM_CONSOLE (serial log)
#   vm_wait_console REGEX SECONDS      wait until the console has a line
#   vm_qmp JSON...                     run QMP commands, print the replies
#   vm_kill                            end the QEMU started by vm_start
#
# Guest RAM: 256 MiB from memory-backend-memfd,share=on (so MEMCTX works),
# the kernel told mem=200M so 0x0C800000.. is a mailbox (scripts/guest/README.md).

VM_MAILBOX=0x0c800000
VM_COUNTER=0x0c800008
VM_MAGIC=0x0c800010
VM_CMD=0x0c800018 # guest command: 1 reboot, 2 power off, 3 suspend (S3)

vm_start() {
	local dir=$1
	shift
	eval "$("$VMSIG_ROOT/scripts/build-guest" 2>/dev/null | grep '^VMSIG_GUEST_')"
	VM_SOCK=$dir/vmsig.sock
	VM_QMP=$dir/qmp.sock
	VM_CONSOLE=$dir/console.log
	: >"$VM_CONSOLE"
	local reboot=-no-reboot # VM_REBOOT=1: a guest reboot resets instead of quitting
	[ "${VM_REBOOT:-0}" = 1 ] && reboot=
	"$VMSIG_QEMU" -accel tcg -m 256 -smp 1 -display none -nodefaults $reboot \
		-name vmsig-guest \
		-object memory-backend-memfd,id=ram0,size=256M,share=on \
		-machine pc,memory-backend=ram0 \
		-kernel "$VMSIG_GUEST_KERNEL" -initrd "$VMSIG_GUEST_INITRD" \
		-append "console=ttyS0 mem=200M iomem=relaxed quiet panic=-1" \
		-serial "file:$VM_CONSOLE" \
		-qmp "unix:$VM_QMP,server=on,wait=off" \
		"$@" >"$dir/qemu.log" 2>&1 &
	VM_PID=$!
	local i
	for i in $(seq 100); do
		[ -S "$VM_SOCK" ] && return 0
		kill -0 "$VM_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "QEMU did not start; its output:" >&2
	cat "$dir/qemu.log" >&2
	return 1
}

vm_wait_console() {
	local re=$1 secs=$2 i
	for i in $(seq $((secs * 10))); do
		grep -qE "$re" "$VM_CONSOLE" && return 0
		sleep 0.1
	done
	return 1
}

vm_qmp() {
	{
		echo '{"execute":"qmp_capabilities"}'
		local c
		for c in "$@"; do echo "$c"; done
		sleep 0.3
	} | socat - "UNIX-CONNECT:$VM_QMP" | grep -v '"QMP"'
}

vm_kill() {
	[ -n "${VM_PID:-}" ] || return 0
	kill "$VM_PID" 2>/dev/null
	wait "$VM_PID" 2>/dev/null
	VM_PID=
}
