# scripts/lib.sh: sourced by every vmsig script (bash).
#
# Sets, without side effects beyond variables:
#   VMSIG_ROOT     top of this checkout
#   VMSIG_CACHE    cache shared by all checkouts
#                  (default ${XDG_CACHE_HOME:-$HOME/.cache}/vmsig; override it)
#   VMSIG_FW_DIR   firmware directories, colon-separated (Debian's seabios
#                  and qemu-system-data); pass each with -L, see vmsig_fw_args
#   VMSIG_QEMU_VERSIONS    the QEMU series vmsig supports ("7.2 10.0")
#   VMSIG_QEMU_DEFAULT     the one used when VMSIG_QEMU_VERSION is not set
#   VMSIG_QEMU_SERIES      the chosen series (7.2, 10.0), and for it:
#   VMSIG_QEMU_VERSION     its full version (7.2.22, 10.0.13); set it (to a
#                          series or a full version) before sourcing to pick
#                          one: VMSIG_QEMU_VERSION=10.0 scripts/test ...
#   VMSIG_QEMU_DEB_VERSION Debian source package version, pinned
#   VMSIG_QEMU_SUITE       the Debian suite that carries that source
#   VMSIG_QEMU_PATCHES     qemu-module/patches/<series>
#   VMSIG_QEMU_CONFIGURE   configure flags (an array; part of the cache key)
#   VMSIG_QEMU_MESON       meson >= 1.5 for 10.0 (a Debian .deb unpacked into
#                          the cache, run by /usr/bin/python3; see
#                          scripts/build-qemu), empty for 7.2 (Debian 12's)
# An unsupported VMSIG_QEMU_VERSION leaves VMSIG_QEMU_SERIES empty:
# vmsig_qemu_env and scripts/build-qemu then fail naming the supported ones.
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

VMSIG_QEMU_VERSIONS="7.2 10.0"
VMSIG_QEMU_DEFAULT=10.0

# vmsig_qemu_select SERIES|VERSION: set the VMSIG_QEMU_* above for one QEMU.
# Returns 1 (VMSIG_QEMU_SERIES empty) for one vmsig does not support.
vmsig_qemu_select() {
	VMSIG_QEMU_SERIES= VMSIG_QEMU_MESON=
	# --firmwarepath makes the built binary find Debian's firmware without -L.
	VMSIG_QEMU_CONFIGURE=(
		--target-list=x86_64-softmmu
		--enable-modules
		--without-default-features
		--enable-tcg
		--enable-kvm
		--enable-vhost-user
		--disable-docs
		--firmwarepath="$VMSIG_FW_DIR"
	)
	case $1 in
	7.2 | 7.2.22)
		VMSIG_QEMU_SERIES=7.2 VMSIG_QEMU_VERSION=7.2.22
		VMSIG_QEMU_DEB_VERSION=1:7.2+dfsg-7+deb12u18 VMSIG_QEMU_SUITE=bookworm
		VMSIG_QEMU_CONFIGURE+=(--meson=/usr/bin/meson)
		;;
	10.0 | 10.0.13)
		VMSIG_QEMU_SERIES=10.0 VMSIG_QEMU_VERSION=10.0.13
		VMSIG_QEMU_DEB_VERSION=1:10.0.13+ds-0+deb13u1 VMSIG_QEMU_SUITE=trixie
		# configure finds meson in its venv through PYTHONPATH (build-qemu)
		VMSIG_QEMU_MESON=$VMSIG_CACHE/meson/1.7.0-1~bpo12+1
		# the +ds source drops the firmware blobs (Debian ships them apart)
		VMSIG_QEMU_CONFIGURE+=(--disable-download --disable-install-blobs)
		;;
	*)
		VMSIG_QEMU_VERSION=$1
		return 1
		;;
	esac
	VMSIG_QEMU_PATCHES=$VMSIG_ROOT/qemu-module/patches/$VMSIG_QEMU_SERIES
	export VMSIG_QEMU_SERIES VMSIG_QEMU_VERSION VMSIG_QEMU_DEB_VERSION \
		VMSIG_QEMU_SUITE VMSIG_QEMU_PATCHES VMSIG_QEMU_MESON
}
vmsig_qemu_select "${VMSIG_QEMU_VERSION:-$VMSIG_QEMU_DEFAULT}"

# The Python path that makes VMSIG_QEMU_MESON's mesonbuild importable.
vmsig_qemu_pythonpath() {
	[ -n "$VMSIG_QEMU_MESON" ] || return 0
	echo "$VMSIG_QEMU_MESON/usr/lib/python3/dist-packages${PYTHONPATH:+:$PYTHONPATH}"
}

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
		for p in "$VMSIG_QEMU_PATCHES"/*.patch; do
			[ -e "$p" ] || continue
			echo "${p##*/}"
			sha256sum <"$p"
		done
	} | sha256sum | cut -c1-16
}

vmsig_qemu_env() {
	if [ -z "$VMSIG_QEMU_SERIES" ]; then
		vmsig_log "QEMU $VMSIG_QEMU_VERSION is not supported;" \
			"VMSIG_QEMU_VERSION must be one of: $VMSIG_QEMU_VERSIONS"
		return 1
	fi
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

# vmsig_virtiofsd: print the path of a vhost-user-fs backend (QEMU 7.2's C
# virtiofsd, /usr/lib/qemu/virtiofsd of Debian 12's qemu-system-common),
# unpacked once into $VMSIG_CACHE/virtiofsd from the package (apt-get
# download and dpkg -x: nothing is installed). Returns 1, with the reason
# on stderr, where it cannot be had. tests/e2e/snapshot.sh uses it for a
# real vhost-user device.
vmsig_virtiofsd() {
	local dir=$VMSIG_CACHE/virtiofsd bin tmp
	bin=$dir/usr/lib/qemu/virtiofsd
	if [ ! -x "$bin" ]; then
		tmp=$(mktemp -d) || return 1
		if ! (cd "$tmp" && { apt-get download -q 'qemu-system-common/bookworm' ||
			apt-get download -q qemu-system-common; } </dev/null >&2 2>&1); then
			rm -rf "$tmp"
			echo "apt-get download qemu-system-common failed" >&2
			return 1
		fi
		mkdir -p "$dir" && dpkg -x "$tmp"/qemu-system-common_*.deb "$dir"
		rm -rf "$tmp"
	fi
	if [ ! -x "$bin" ]; then
		echo "no usr/lib/qemu/virtiofsd in qemu-system-common (a release without the C virtiofsd)" >&2
		return 1
	fi
	if ldd "$bin" 2>/dev/null | grep -q 'not found'; then
		echo "virtiofsd needs libraries that are not installed:$(ldd "$bin" | grep 'not found' | tr -s ' \t\n' ' ')" >&2
		return 1
	fi
	echo "$bin"
}
