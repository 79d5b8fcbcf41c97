#!/usr/bin/env bash
# e2e: reading guest RAM costs no host memory for the holes. A booted guest
# (256 MiB, kernel told mem=200M) leaves most of its memfd unallocated;
# `vmsig-helper find` of an absent pattern and `vmsig-helper dump` read only
# its data (SEEK_DATA/SEEK_HOLE), so QEMU's memfd's allocated size
# (st_blocks) stays as it was. A plain `read` of a hole, for contrast, does
# allocate it (so the measurement can see growth).
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
. "$VMSIG_ROOT/scripts/vm.sh"
. "$VMSIG_ROOT/tests/e2e/tap.sh"
vmsig_qemu_env >/dev/null || exit 1
helper=$VMSIG_ROOT/build/native/helper/vmsig-helper

work=$(mktemp -d /tmp/vmsig-e2e.XXXXXX)
trap 'vm_kill; rm -rf "$work"' EXIT
echo "uid:$(id -u) endpoints=0 caps=all" >"$work/grants"
vm_start "$work" -object "vmsig,id=vs0,path=$work/vmsig.sock,grants=$work/grants"
export VMSIG_SOCKET=$VM_SOCK
t_ok "the guest boots" vm_wait_console 'vmsig-guest: ready' 120

memfd=
for f in /proc/"$VM_PID"/fd/*; do
	case $(readlink "$f") in *memfd:memory-backend-memfd*) memfd=$f ;; esac
done
t_like "$memfd" "^/proc/$VM_PID/fd/" "QEMU's guest RAM memfd is found"
kib() { echo $(($(stat -L -c %b "$memfd") / 2)); } # allocated KiB
"$helper" stop >/dev/null

k0=$(kib)
t_exit 0 "find of an absent pattern" "$helper" find "no such pattern in guest RAM 7f3a"
k1=$(kib)
t_like "$T_OUT" '0 matches' "it finds nothing"
[ $((k1 - k0)) -le 1024 ]
t_report $? "find did not grow the memfd (allocated $k0 KiB before, $k1 KiB after, of 262144)"

t_exit 0 "dump the RAM above 1 MiB" "$helper" dump "$work/ram.bin" 0x100000 $((255 << 20))
k2=$(kib)
[ $((k2 - k1)) -le 1024 ]
t_report $? "dump did not grow the memfd ($k1 KiB before, $k2 KiB after)"
t_is "$(stat -c %s "$work/ram.bin")" $((255 << 20)) "the dump has every byte of the range"
at() { od -v -An -tx1 -j $(($1 - 0x100000)) -N "$2" "$work/ram.bin" | tr -d ' \n'; }
t_is "$(at "$VM_MAGIC" 4)" 47495356 "the guest's magic is in the dump at its offset"
t_is "$(at 0x1000000 4096 | md5sum)" "$("$helper" read --raw 0x1000000 4096 | od -v -An -tx1 | tr -d ' \n' | md5sum)" \
	"the dump's bytes at 16 MiB equal read's"
t_is "$(at 0xd000000 4096 | tr -d 0)" "" "a hole dumps as zeros"

# a hole read the plain way is allocated by the host
"$helper" read --raw 0xd000000 $((16 << 20)) >/dev/null
k3=$(kib)
[ $((k3 - k2)) -ge 8192 ]
t_report $? "a plain read of a 16 MiB hole allocates it ($k2 KiB before, $k3 KiB after)"
"$helper" cont >/dev/null
t_done
