# scripts/lib.sh: sourced by every vmsig script (bash).
#
# Sets, without side effects beyond variables:
#   VMSIG_ROOT     top of this checkout
#   VMSIG_CACHE    cache shared by all checkouts
#                  (default ${XDG_CACHE_HOME:-$HOME/.cache}/vmsig; override it)
#   VMSIG_FW_DIR   firmware directories, colon-separated (Debian's seabios
#                  and qemu-system-data); pass each with -L, see vmsig_fw_args
#   VMSIG_QEMU_VERSION, VMSIG_QEMU_DEB_VERSION   the pinned QEMU
#   VMSIG_QEMU_CONFIGURE   configure flags (an array; part of the cache key)
#
# vmsig_qemu_env sets and exports, from the cache and without building:
#   VMSIG_QEMU_KEY    cache key: QEMU version + sha256 of flags and patches
#   VMSIG_QEMU_SRC    patched QEMU source tree ($VMSIG_ROOT linked at vmsig/)
#   VMSIG_QEMU_BUILD  QEMU build directory (modules land here)
#   VMSIG_QEMU        $VMSIG_QEMU_BUILD/qemu-system-x86_64
#   QEMU_MODULE_DIR   $VMSIG_QEMU_BUILD, where QEMU looks for vmsig-obj.so
#                     and the accel modules
#   QTEST_QEMU_BINARY $VMSIG_QEMU, for the qtests
#   VMSIG_QTEST_DIR   where the vmsig qtests are built (vmsig-*-test)
# It fails (returns 1, with a message) when that build is not there yet:
# run scripts/build-qemu.

VMSIG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VMSIG_CACHE=${VMSIG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmsig}
export VMSIG_ROOT VMSIG_CACHE

# bios-256k.bin and vgabios*.bin come from seabios; linuxboot_dma.bin,
# kvmvapic.bin and the keymaps from qemu-system-data.
VMSIG_FW_DIR=/usr/share/seabios:/usr/share/qemu
export VMSIG_FW_DIR

VMSIG_QEMU_VERSION=7.2.22
VMSIG_QEMU_DEB_VERSION=1:7.2+dfsg-7+deb12u18
# --firmwarepath makes the built binary find Debian's firmware without -L.
VMSIG_QEMU_CONFIGURE=(
	--target-list=x86_64-softmmu
	--enable-modules
	--without-default-features
	--enable-tcg
	--enable-kvm
	--disable-docs
	--meson=/usr/bin/meson
	--firmwarepath="$VMSIG_FW_DIR"
)

vmsig_log() { echo "${VMSIG_PROG:-vmsig}: $*" >&2; }
vmsig_die() {
	vmsig_log "error: $*"
	exit 1
}

# Print "-L dir" for each firmware directory, one word a line:
#   mapfile -t fw < <(vmsig_fw_args); "$VMSIG_QEMU" "${fw[@]}" ...
vmsig_fw_args() {
	local d
	local IFS=:
	for d in $VMSIG_FW_DIR; do
		printf -- '-L\n%s\n' "$d"
	done
}

# Root runs apt directly; others need passwordless sudo.
vmsig_sudo() {
	if [ "$(id -u)" = 0 ]; then
		"$@"
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
		sudo -n "$@"
	else
		vmsig_die "need root or passwordless sudo to run: $*"
	fi
}

vmsig_qemu_key() {
	{
		echo "$VMSIG_QEMU_DEB_VERSION"
		printf '%s\n' "${VMSIG_QEMU_CONFIGURE[@]}"
		local p
		for p in "$VMSIG_ROOT"/qemu-module/patches/*.patch; do
			[ -e "$p" ] || continue
			echo "${p##*/}"
			sha256sum <"$p"
		done
	} | sha256sum | cut -c1-16
}

vmsig_qemu_env() {
	VMSIG_QEMU_KEY=$VMSIG_QEMU_VERSION-$(vmsig_qemu_key)
	VMSIG_QEMU_SRC=$VMSIG_CACHE/qemu/$VMSIG_QEMU_KEY/src
	VMSIG_QEMU_BUILD=$VMSIG_CACHE/qemu/$VMSIG_QEMU_KEY/build
	VMSIG_QEMU=$VMSIG_QEMU_BUILD/qemu-system-x86_64
	QEMU_MODULE_DIR=$VMSIG_QEMU_BUILD
	QTEST_QEMU_BINARY=$VMSIG_QEMU
	VMSIG_QTEST_DIR=$VMSIG_QEMU_BUILD/vmsig/tests/qtest
	export VMSIG_QEMU_KEY VMSIG_QEMU_SRC VMSIG_QEMU_BUILD VMSIG_QEMU \
		QEMU_MODULE_DIR QTEST_QEMU_BINARY VMSIG_QTEST_DIR
	if [ ! -x "$VMSIG_QEMU" ] || [ ! -e "$QEMU_MODULE_DIR/vmsig-obj.so" ]; then
		vmsig_log "no QEMU build for key $VMSIG_QEMU_KEY in $VMSIG_CACHE/qemu" \
			"(run scripts/build-qemu)"
		return 1
	fi
}
