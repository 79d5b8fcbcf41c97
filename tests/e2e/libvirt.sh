#!/usr/bin/env bash
# e2e: vmsig in a libvirt-managed VM, the recipe of docs/libvirt.md run for
# real. As root: Debian's libvirt (installed here when missing: apt-get
# update once, then libvirt-daemon-system libvirt-clients
# libvirt-daemon-driver-qemu without recommends), libvirtd -d and
# virtlogd -d started when not running (and stopped at the end, by pid),
# scripts/install into /opt/vmsig-test-PID (not under /root: libvirt probes
# and runs the emulator as libvirt-qemu), then a domain whose <emulator> is
# the installed QEMU, with memfd shared memoryBacking, direct kernel boot of
# the test guest and -object vmsig in <qemu:commandline>:
#   - a grants file or socket directory libvirt-qemu cannot read/write:
#     virsh start fails, QEMU's message names the path and the user;
#   - no grants= (the default grant is QEMU's uid): root is refused;
#   - a grants line for root: vmsig-helper attaches, finds the kernel
#     banner, stop/cont (libvirt sees both), MEMWRITE read back by the
#     helper and by the guest; virsh destroy + undefine leave no QEMU.
# TCG only. Runs on the default QEMU (scripts/test runs it once). Skips
# (TAP "1..0 # SKIP") only when not root, or when libvirt cannot be
# installed (no apt) -- nothing else.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
. "$VMSIG_ROOT/tests/e2e/tap.sh"

if [ "$(id -u)" != 0 ]; then
	echo "1..0 # SKIP libvirt's system daemon (qemu:///system) needs root"
	exit 0
fi
vmsig_qemu_env >/dev/null || exit 1
eval "$("$VMSIG_ROOT/scripts/build-guest" 2>/dev/null | grep '^VMSIG_GUEST_')"
[ -n "${VMSIG_GUEST_KERNEL:-}" ] || {
	echo "scripts/build-guest failed" >&2
	exit 1
}

# ------------------------------------------------------------ libvirt
pkgs=(libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu)
missing=()
for p in "${pkgs[@]}"; do
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if ! command -v apt-get >/dev/null; then
		echo "1..0 # SKIP libvirt is not installed and there is no apt-get to install ${missing[*]}"
		exit 0
	fi
	echo "# installing ${missing[*]}"
	# policy-rc.d or systemd decide whether the packages start services;
	# whatever runs afterwards is found below and left alone
	DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 update \
		</dev/null >/dev/null 2>&1
	if ! DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 \
		install --no-install-recommends "${missing[@]}" </dev/null >/tmp/vmsig-libvirt-apt.log 2>&1; then
		tail -n 20 /tmp/vmsig-libvirt-apt.log | sed 's/^/# /'
		echo "not ok 1 - apt-get install ${missing[*]}"
		echo "1..1"
		exit 1
	fi
fi
qemu_user=libvirt-qemu
quid=$(id -u "$qemu_user" 2>/dev/null)

export LIBVIRT_DEFAULT_URI=qemu:///system
name=vmsig-e2e-$$
uuid=$(cat /proc/sys/kernel/random/uuid)
prefix=/opt/vmsig-test-$$
work=$(mktemp -d /var/tmp/vmsig-e2e-libvirt.XXXXXX)
chmod 0755 "$work"
started_libvirtd='' started_virtlogd='' kvm_mode=''
dom_defined=0

# pid_of_daemon NAME: the pid in /run/NAME.pid if that process is NAME
daemon_pid() {
	local pid
	pid=$(cat "/run/$1.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] && echo "$pid"
}
qemu_pid() { cat "/run/libvirt/qemu/$name.pid" 2>/dev/null; }

cleanup() {
	if [ "$dom_defined" = 1 ]; then
		virsh destroy "$name" >/dev/null 2>&1
		virsh undefine "$name" >/dev/null 2>&1
	fi
	local p
	for p in $started_libvirtd $started_virtlogd; do
		kill "$p" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	done
	if [ -n "$kvm_mode" ]; then
		chown "${kvm_mode% *}" /dev/kvm
		chmod "${kvm_mode#* }" /dev/kvm
	fi
	rm -rf "$work" "$prefix"
}
trap cleanup EXIT

# libvirt 9.0 probes the emulator as root but checks /dev/kvm as
# libvirt-qemu: with /dev/kvm 0600 root (no udev, as in a container) the
# two disagree and every define or start probes again (about 30 s each).
# Give it what Debian's udev rules give it (group kvm, 0660) while the test
# runs; the guest uses TCG (domain type 'qemu') either way.
if [ -c /dev/kvm ] && ! runuser -u "$qemu_user" -- test -r /dev/kvm -a -w /dev/kvm 2>/dev/null &&
	getent group kvm >/dev/null; then
	kvm_mode="$(stat -c '%U:%G %a' /dev/kvm)"
	echo "# /dev/kvm is ${kvm_mode/ / mode }: group kvm, mode 0660 (Debian's udev rule) while the test runs"
	chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi

if ! daemon_pid virtlogd >/dev/null; then
	virtlogd -d
	for _ in $(seq 50); do started_virtlogd=$(daemon_pid virtlogd) && break; sleep 0.1; done
fi
if ! daemon_pid libvirtd >/dev/null; then
	libvirtd -d
	for _ in $(seq 100); do started_libvirtd=$(daemon_pid libvirtd) && break; sleep 0.1; done
fi
echo "# libvirtd pid $(daemon_pid libvirtd)${started_libvirtd:+ (started here)}," \
	"virtlogd pid $(daemon_pid virtlogd)${started_virtlogd:+ (started here)}"
# (virsh version would look for a qemu-system-x86_64 on PATH: there is none)
for _ in $(seq 100); do virsh list --all >/dev/null 2>&1 && break; sleep 0.1; done
t_exit 0 "libvirt answers on qemu:///system (virsh list)" virsh list --all
t_like "$quid" '^[0-9]+$' "libvirt's QEMU user $qemu_user exists"

# ------------------------------------------------------------ install
t_exit 0 "scripts/install --prefix $prefix" "$VMSIG_ROOT/scripts/install" --prefix "$prefix" \
	--qemu "$VMSIG_QEMU_SERIES" --no-build --no-deps
emu=$prefix/bin/qemu-system-x86_64
helper=$prefix/bin/vmsig-helper
t_exit 0 "$qemu_user can run the installed QEMU (no environment)" \
	runuser -u "$qemu_user" -- env -i "$emu" --version

# what libvirt-qemu may read: the guest's kernel and initrd, the grants
cp "$VMSIG_GUEST_KERNEL" "$work/vmlinuz"
cp "$VMSIG_GUEST_INITRD" "$work/initrd"
chmod 0644 "$work/vmlinuz" "$work/initrd"
# the socket's directory: writable by libvirt-qemu, not by others
sockdir=$work/sock
install -d -m 0750 -o "$qemu_user" -g "$qemu_user" "$sockdir"
sock=$sockdir/vm.sock
grants=$work/vm.grants
echo "uid:0 endpoints=0 caps=all" >"$grants"
chmod 0644 "$grants"

# domain_xml VMSIG_OPTIONS: the recipe of docs/libvirt.md
domain_xml() {
	cat <<EOF
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>$name</name>
  <uuid>$uuid</uuid>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$work/vmlinuz</kernel>
    <initrd>$work/initrd</initrd>
    <cmdline>console=ttyS0 mem=200M iomem=relaxed quiet panic=-1</cmdline>
  </os>
  <memoryBacking>
    <source type='memfd'/>
    <access mode='shared'/>
  </memoryBacking>
  <features>
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$emu</emulator>
    <serial type='file'>
      <source path='$work/console.log'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-object'/>
    <qemu:arg value='vmsig,id=vs0,$1'/>
  </qemu:commandline>
</domain>
EOF
}
define() { # VMSIG_OPTIONS
	domain_xml "$1" >"$work/domain.xml"
	virsh define "$work/domain.xml" >/dev/null && dom_defined=1
}
no_qemu_left() {
	for _ in $(seq 100); do
		pgrep -f "guest=$name," >/dev/null || return 0
		sleep 0.1
	done
	return 1
}

# ------------------------------------------------------------ bad input
# a grants file libvirt-qemu cannot read
bad_grants=$work/root-only.grants
echo "uid:0 endpoints=0 caps=all" >"$bad_grants"
chmod 0600 "$bad_grants"
t_ok "define the domain (grants file mode 0600, root's)" define "path=$sock,grants=$bad_grants"
t_exit 1 "virsh start fails: QEMU cannot read the grants file" virsh start "$name"
t_like "$T_OUT" "grants file '$bad_grants' is not readable by QEMU's user '$qemu_user' \\(uid $quid\\)" \
	"the error names the grants file and the user"
t_ok "no QEMU is left running" no_qemu_left

# a socket directory libvirt-qemu cannot write
rootdir=$work/root-sock
install -d -m 0755 "$rootdir"
t_ok "define the domain (socket directory root's, 0755)" define "path=$rootdir/vm.sock,grants=$grants"
t_exit 1 "virsh start fails: QEMU cannot create the socket" virsh start "$name"
t_like "$T_OUT" "cannot listen on '$rootdir/vm.sock': Permission denied: its directory must be writable by QEMU's user '$qemu_user' \\(uid $quid\\)" \
	"the error names the socket path and the user"
t_ok "no QEMU is left running" no_qemu_left

# ------------------------------------------------------------ default grant
t_ok "define the domain without grants=" define "path=$sock"
t_exit 0 "virsh start (no grants file)" virsh start "$name"
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
t_exit 3 "root is refused by the default grant (QEMU's uid $quid only): exit 3" \
	"$helper" -s "$sock" status
t_like "$T_OUT" "no grant for this uid" "the helper says there is no grant for root"
t_exit 0 "virsh destroy" virsh destroy "$name"
t_ok "no QEMU is left running" no_qemu_left

# ------------------------------------------------------------ the recipe
: >"$work/console.log"
t_ok "define the domain with a grants line for root" define "path=$sock,grants=$grants"
t_exit 0 "virsh start" virsh start "$name"
pid=$(qemu_pid)
t_like "$pid" '^[0-9]+$' "libvirt started QEMU (pid file)"
t_is "$(ps -o user= -p "${pid:-0}" | tr -d ' ')" "$qemu_user" "QEMU runs as $qemu_user"
t_is "$(readlink "/proc/${pid:-0}/exe")" "$emu" "QEMU is the installed binary"
t_exit 1 "QEMU's environment has no QEMU_MODULE_DIR" \
	grep -qz '^QEMU_MODULE_DIR=' "/proc/${pid:-0}/environ"
t_like "$(tr '\0' ' ' <"/proc/${pid:-0}/cmdline")" "memory-backend-memfd.*share" \
	"libvirt gave QEMU a shared memfd memory backend"
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
t_ok "the vmsig socket appears in the directory $qemu_user owns" test -S "$sock"
t_like "$(stat -c %U "$sock" 2>/dev/null)" "^$qemu_user$" "the socket is $qemu_user's"
export VMSIG_SOCKET=$sock
for _ in $(seq 1200); do grep -q 'vmsig-guest: ready' "$work/console.log" 2>/dev/null && break; sleep 0.1; done
t_ok "the guest boots under libvirt (console: vmsig-guest: ready)" grep -q 'vmsig-guest: ready' "$work/console.log"

t_exit 0 "vmsig-helper attaches as root (status)" "$helper" --json status
t_like "$T_OUT" '"state":"running"' "status says running"
gpa=$("$helper" find --max 1 "Linux version 6" 2>/dev/null | head -n 1)
t_like "$gpa" '^0x[0-9a-f]+$' "find locates the kernel banner in guest RAM (MEMCTX of libvirt's memfd)"
banner=$("$helper" read --raw "${gpa:-0}" 200 2>/dev/null | tr -c '[:print:]' '\n' | head -n 1)
release=$(sed -n 's/.*init on \([^ ]*\).*/\1/p' "$work/console.log" | tr -d '\r')
t_like "$banner" "^Linux version ${release:-none} " "the banner names the kernel the guest runs"

counter() { "$helper" --json read 0x0c800008 4 | sed -n 's/.*"hex":"\([0-9a-f]*\)".*/\1/p'; }
t_exit 0 "stop" "$helper" stop
t_like "$(virsh domstate "$name" 2>&1)" '^paused' "libvirt sees the VM paused"
c1=$(counter)
sleep 1.5
t_is "$(counter)" "$c1" "the guest's counter does not advance while stopped"
t_exit 0 "cont" "$helper" cont
t_like "$(virsh domstate "$name" 2>&1)" '^running' "libvirt sees the VM running"
sleep 1.5
c3=$(counter)
[ -n "$c3" ] && [ "$c3" != "$c1" ]
t_report $? "the counter advances after cont" "before $c1 after $c3"

t_exit 0 "write the mailbox (MEMWRITE)" "$helper" write 0x0c800000 "11 22 33 44 55 66 77 88"
t_like "$("$helper" --json read 0x0c800000 8 2>&1)" '"hex":"1122334455667788"' \
	"the MEMWRITE reads back through the mapping"
for _ in $(seq 300); do grep -q 'vmsig-mailbox: 0x8877665544332211' "$work/console.log" && break; sleep 0.1; done
t_ok "the guest reads the MEMWRITE (devmem) and prints it" \
	grep -q 'vmsig-mailbox: 0x8877665544332211' "$work/console.log"

log=/var/log/libvirt/qemu/$name.log
t_like "$(cat "$log" 2>/dev/null)" "tainted: custom-argv" \
	"libvirt marks the domain tainted (custom-argv: qemu:commandline)"

t_exit 0 "virsh destroy" virsh destroy "$name"
# shellcheck disable=SC2016 # $1 is the inner shell's
t_ok "QEMU (pid $pid) is gone" bash -c 'for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || exit 0; sleep 0.1; done; exit 1' _ "${pid:-0}"
t_ok "no QEMU of the domain is left running" no_qemu_left
t_exit 1 "the socket file is gone" test -e "$sock"
t_exit 0 "virsh undefine" virsh undefine "$name"
dom_defined=0
t_exit 1 "the domain is gone from libvirt" virsh dominfo "$name"
t_done
