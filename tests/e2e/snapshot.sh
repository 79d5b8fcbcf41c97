#!/usr/bin/env bash
# e2e: in-memory snapshots (CMD_SNAPSHOT) against the real guest. Save with
# the guest's counter at N, let it run, restore: the counter reads N again
# through the mapping and the guest goes on (its mailbox loop answers); a
# MEMWRITE after SAVE is undone by RESTORE; 100 restore cycles, the guest
# checked each time; EV_SNAPSHOT seen by another control; MEMCTX holders see
# a new generation; QEMU's RSS and fd count come back after DELETE; every
# refusal with its errno (ENOENT, EPERM, ENOSPC, ESTALE, EOPNOTSUPP for a
# writable disk and for a vhost-user device, EINVAL).
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
. "$VMSIG_ROOT/scripts/vm.sh"
. "$VMSIG_ROOT/tests/e2e/tap.sh"
vmsig_qemu_env >/dev/null || exit 1
helper=$VMSIG_ROOT/build/native/helper/vmsig-helper

work=$(mktemp -d /tmp/vmsig-e2e-snap.XXXXXX)
watch_pid=
trap '[ -n "$watch_pid" ] && kill $watch_pid 2>/dev/null; vm_kill; [ -n "${VMSIG_KEEP:-}" ] || rm -rf "$work"' EXIT
cat >"$work/grants" <<EOF
token:nosnap endpoints=0 caps=all
uid:$(id -u) endpoints=0 caps=all,SNAPSHOT
EOF

vm_start "$work" -no-shutdown -object "vmsig,id=vs0,path=$work/vmsig.sock,grants=$work/grants"
export VMSIG_SOCKET=$VM_SOCK
"$helper" --json watch >"$work/events.jsonl" 2>"$work/watch.err" &
watch_pid=$!
t_ok "the guest boots and its mailbox loop starts" vm_wait_console 'vmsig-guest: ready' 120
# RESTORE's phases on QEMU's stderr (the module's trace events exist once
# the object does: enabled over QMP)
vm_qmp '{"execute":"trace-event-set-state","arguments":{"name":"vmsig_snapshot_restore","enable":true}}' >"$work/trace.out"

counter() { "$helper" --json read "$VM_COUNTER" 4 | sed -n 's/.*"hex":"\([0-9a-f]*\)".*/\1/p'; }
mailbox() { "$helper" --json read "$VM_MAILBOX" 8 | sed -n 's/.*"hex":"\([0-9a-f]*\)".*/\1/p'; }
gen() { "$helper" --json status | sed -n 's/.*"memctx_gen":\([0-9]*\).*/\1/p'; }
# snapshot copies are anonymous memory (guest RAM is the memfd's, RssShmem)
rss_kb() { awk '/^RssAnon/ { print $2 }' "/proc/$VM_PID/status"; }
nfds() { ls "/proc/$VM_PID/fd" | wc -l; }

# ---- save / run / restore ----
rss0=$(rss_kb) fds0=$(nfds)
t_exit 0 "stop" "$helper" stop
n=$(counter)
t_like "$n" '^[0-9a-f]{8}$' "the guest's counter reads through the mapping"
out=$("$helper" snapshot save s0 2>&1)
t_like "$out" "saved 's0': 256(\.0)? ?MiB RAM \+ [0-9]+ B device state" "save keeps 256 MiB of RAM and the device state"
t_is "$("$helper" --json status | sed -n 's/.*"state":"\([a-z-]*\)".*/\1/p')" paused \
	"save leaves a paused VM paused"
t_exit 0 "cont" "$helper" cont
sleep 2
m=$(counter)
[ "$m" != "$n" ]
t_report $? "the counter advances after the save" "at save $n, now $m"
g0=$(gen)
out=$("$helper" snapshot restore --pause s0 2>&1)
t_like "$out" "restored 's0': [0-9]+ pages? copied back, vCPUs stopped" "restore answers with the pages copied back"
pages=$(printf '%s' "$out" | sed -n 's/.*: \([0-9]*\) page.*/\1/p')
[ "${pages:-0}" -gt 0 ] && [ "${pages:-0}" -lt 65536 ]
t_report $? "restore copied back only the pages written since the save" "pages=$pages of 65536"
t_is "$(counter)" "$n" "after restore the counter reads N again through the mapping"
t_like "$(cat "$work/qemu.log")" "'s0': [0-9]+ pages.*cpu_common apart, no TB flush: 1" \
	"TCG: the device state loaded had no cpu_common section, so no flush of all translated code"
g1=$(gen)
[ "${g1:-0}" -gt "${g0:-0}" ]
t_report $? "a MEMCTX holder sees a new generation after restore" "before $g0 after $g1"
t_exit 0 "cont after restore" "$helper" cont
sleep 2
[ "$(counter)" != "$n" ]
t_report $? "the restored guest goes on counting (it did not crash or hang)"
t_exit 0 "write the mailbox after restore" "$helper" write "$VM_MAILBOX" "01 02 03 04 05 06 07 08"
t_ok "the restored guest answers its mailbox" vm_wait_console 'vmsig-mailbox: 0x0807060504030201' 30

# ---- a MEMWRITE after SAVE is undone by RESTORE ----
t_exit 0 "stop" "$helper" stop
before=$(mailbox)
t_exit 0 "save s1 (paused)" "$helper" snapshot save s1
t_exit 0 "MEMWRITE after the save" "$helper" write "$VM_MAILBOX" "de ad be ef de ad be ef"
t_is "$(mailbox)" deadbeefdeadbeef "the write is in guest RAM"
t_exit 0 "restore s1" "$helper" snapshot restore s1
t_is "$(mailbox)" "$before" "restore undid the MEMWRITE made after the save"
full=$("$helper" --json snapshot restore --full s1)
t_like "$full" '"full":true,"ram_bytes":268435456' "restore --full copies every page back"
t_like "$full" '"pages":65536' "a full restore copies all 65536 pages"

# ---- 100 cycles: restore, the guest's state checked each time ----
bad=0
for i in $(seq 100); do
	"$helper" -q snapshot restore --pause s0 || { bad=$((bad + 1)); continue; }
	c=$(counter)
	[ "$c" = "$n" ] || { bad=$((bad + 1)); echo "# cycle $i: counter $c, want $n"; }
	"$helper" -q cont || bad=$((bad + 1))
	if [ $((i % 25)) = 0 ]; then
		# the guest polls every 0.1 s; allow a loaded machine 10 s
		for _ in $(seq 100); do [ "$(counter)" != "$n" ] && break; sleep 0.1; done
		[ "$(counter)" != "$n" ] || { bad=$((bad + 1)); echo "# cycle $i: guest does not run"; }
	fi
done
t_is "$bad" 0 "100 restore cycles: each one puts the counter back at N, the guest runs on"
t_exit 0 "write the mailbox after 100 restores" "$helper" write "$VM_MAILBOX" "0a 0b 0c 0d 0e 0f 10 11"
t_ok "after 100 restores the guest still answers its mailbox" vm_wait_console 'vmsig-mailbox: 0x11100f0e0d0c0b0a' 30
list=$("$helper" --json snapshot list)
t_like "$list" '"name":"s0".*"restores":10[1-9]' "list shows s0 with its restores"
t_like "$list" '"name":"s1"' "list shows s1"

# ---- refusals ----
out=$("$helper" snapshot restore nosuch 2>&1)
t_is "$?" 7 "restore of an unknown name fails (exit 7)"
t_like "$out" "No such file or directory \(no snapshot named 'nosuch'\)" "restore of an unknown name: -ENOENT, named"
out=$("$helper" --token nosnap snapshot list 2>&1)
t_is "$?" 3 "a control without SNAPSHOT is refused by its grant (exit 3)"
t_like "$out" 'missing capability SNAPSHOT' "-EPERM names the missing capability"
out=$("$helper" snapshot save 'bad name' 2>&1)
t_is "$?" 1 "a bad snapshot name is a usage error"

# ---- DELETE gives the memory and the descriptors back ----
rss1=$(rss_kb)
# (a snapshot copies only what the guest wrote: memfd holes are skipped)
[ "$rss1" -gt $((rss0 + 16384)) ]
t_report $? "two snapshots hold their RAM in QEMU" "RssAnon before ${rss0} kB, with snapshots ${rss1} kB"
t_exit 0 "delete s0" "$helper" snapshot delete s0
t_exit 0 "delete s1" "$helper" snapshot delete s1
rss2=$(rss_kb) fds2=$(nfds)
[ "$rss2" -lt $((rss0 + 32768)) ]
t_report $? "after DELETE QEMU's RSS is back to its level" "before ${rss0} kB, after ${rss2} kB"
t_is "$fds2" "$fds0" "after DELETE QEMU's fd count is back to its level"
t_like "$("$helper" snapshot list)" '^0 snapshots' "list is empty after DELETE"
out=$("$helper" snapshot delete s0 2>&1)
t_like "$out" 'No such file or directory' "delete of a deleted snapshot: -ENOENT"

# ---- EV_SNAPSHOT reached the watcher (another control) ----
kill "$watch_pid" 2>/dev/null
wait "$watch_pid" 2>/dev/null
watch_pid=
# (grep the file: grep -q on a pipe ends early, and pipefail sees SIGPIPE)
ev=$work/events.jsonl
grep -qE '"kind":"SNAPSHOT".*"what":"saved","name":"s0"' "$ev"
t_report $? "another control saw EV_SNAPSHOT saved"
grep -qE '"kind":"SNAPSHOT".*"what":"restored","name":"s0"' "$ev"
t_report $? "another control saw EV_SNAPSHOT restored"
grep -qE '"kind":"SNAPSHOT".*"what":"deleted","name":"s1"' "$ev"
t_report $? "another control saw EV_SNAPSHOT deleted"

# ---- a run state snapshots do not work in: shutdown (-no-shutdown) ----
"$helper" -q write "$VM_CMD" "02 00 00 00" # the guest powers itself off
for _ in $(seq 300); do
	"$helper" --json status | grep -q '"state":"shutdown"' && break
	sleep 0.1
done
out=$("$helper" snapshot save late 2>&1)
t_like "$out" 'Invalid argument \(the VM is shutdown: snapshots are saved and restored only while it is running, paused or not yet started\)' \
	"a save in run state shutdown: -EINVAL naming the state"
vm_kill

# ---- a second VM for the limits: snapshot-limit, hotplug, a writable disk ----
work2=$work/vm2
mkdir -p "$work2"
vm_start "$work2" -S -m 256M,slots=2,maxmem=1G \
	-object "vmsig,id=vs0,path=$work2/vmsig.sock,grants=$work/grants,snapshot-limit=300M"
export VMSIG_SOCKET=$VM_SOCK
t_exit 0 "save from prelaunch (-S)" "$helper" snapshot save a
out=$("$helper" snapshot save b 2>&1)
t_like "$out" 'No space left on device \(snapshot needs 256 MiB, 256 MiB of snapshot-limit=300 MiB in use' \
	"a save over snapshot-limit: -ENOSPC, naming the limit"
t_exit 0 "saving the same name again replaces it" "$helper" snapshot save a
out=$("$helper" snapshot restore --pause --full a 2>&1)
t_like "$out" "restored 'a'" "restore before any change works"
vm_qmp '{"execute":"object-add","arguments":{"qom-type":"memory-backend-memfd","id":"m1","size":134217728,"share":true}}' \
	'{"execute":"device_add","arguments":{"driver":"pc-dimm","id":"dimm1","memdev":"m1"}}' >"$work2/qmp.out"
t_is "$(grep -c '"return": {}' "$work2/qmp.out")" 3 "a DIMM is hotplugged (qmp_capabilities, object-add, device_add)"
out=$("$helper" snapshot restore a 2>&1)
t_like "$out" 'Stale file handle \(the VM.s RAM changed since snapshot .a. was saved' \
	"restore after RAM hotplug: -ESTALE"
t_exit 0 "delete the stale snapshot" "$helper" snapshot delete a
truncate -s 16M "$work2/disk.img"
vm_qmp '{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"d0","file":{"driver":"file","filename":"'"$work2/disk.img"'"}}}' \
	'{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","id":"vd0","drive":"d0"}}' >"$work2/qmp2.out"
t_is "$(grep -c '"return": {}' "$work2/qmp2.out")" 3 "a writable disk is attached (blockdev-add, device_add)"
out=$("$helper" snapshot save c 2>&1)
t_like "$out" "Operation not supported \(disk 'd0' \(device 'vd0'\) is writable" \
	"a VM with a writable disk: -EOPNOTSUPP naming the disk"
vm_qmp '{"execute":"device_del","arguments":{"id":"vd0"}}' >/dev/null
vm_qmp '{"execute":"quit"}' >/dev/null
wait "$VM_PID" 2>/dev/null
VM_PID=

# a read-only disk is fine
work3=$work/vm3
mkdir -p "$work3"
truncate -s 16M "$work3/disk.img"
vm_start "$work3" -S -drive "file=$work3/disk.img,format=raw,if=virtio,readonly=on" \
	-object "vmsig,id=vs0,path=$work3/vmsig.sock,grants=$work/grants"
export VMSIG_SOCKET=$VM_SOCK
t_exit 0 "a VM with a read-only disk can be saved" "$helper" snapshot save ro
t_exit 0 "... and restored" "$helper" snapshot restore ro
vm_kill

# a vhost-user device (vhost-user-fs; its backend is QEMU 7.2's virtiofsd
# from Debian's qemu-system-common): its state lives in another process
work4=$work/vm4
mkdir -p "$work4/share"
vfsd=$(vmsig_virtiofsd 2>"$work4/vfsd.why")
t_report $? "a vhost-user backend (virtiofsd from qemu-system-common)" "$(cat "$work4/vfsd.why")"
if [ -n "$vfsd" ]; then
	"$vfsd" --socket-path="$work4/vfs.sock" -o source="$work4/share" -o cache=none \
		-o sandbox=chroot >"$work4/vfsd.log" 2>&1 &
	vfsd_pid=$!
	for i in $(seq 50); do [ -S "$work4/vfs.sock" ] && break; sleep 0.1; done
	vm_start "$work4" -S -chardev "socket,id=vfs,path=$work4/vfs.sock" \
		-device "vhost-user-fs-pci,id=fs0,chardev=vfs,tag=share" \
		-object "vmsig,id=vs0,path=$work4/vmsig.sock,grants=$work/grants"
	export VMSIG_SOCKET=$VM_SOCK
	t_exit 7 "a VM with a vhost-user device: save refused" "$helper" --json snapshot save v
	t_like "$T_OUT" '"error":"snapshot: Operation not supported \(' "... with -EOPNOTSUPP (its strerror)"
	t_like "$T_OUT" 'device /machine/peripheral/fs0 \(vhost-user-fs-pci\) keeps state outside QEMU' \
		"... naming the device and its type"
	t_like "$("$helper" --json status)" '"state":"prelaunch"' "QEMU goes on (prelaunch, answering)"
	vm_kill
	kill "$vfsd_pid" 2>/dev/null
	wait "$vfsd_pid" 2>/dev/null
fi
t_done
