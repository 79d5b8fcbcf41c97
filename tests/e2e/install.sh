#!/usr/bin/env bash
# e2e: scripts/install as a user meets it, for the QEMU under test
# (VMSIG_QEMU_VERSION). Bad input is refused clearly (unknown --qemu lists
# the supported ones; a prefix that cannot be written or is a file is
# named); an install into a fresh prefix has the layout and modes of a
# package (dirs 0755, files 0644/0755, links kept, vmsig.pc with the
# prefix) and runs with an empty environment: the installed QEMU, started
# with `env -i` and no -L, boots the test guest with -object vmsig (its
# modules and Debian's firmware found on their own), and the installed
# vmsig-helper attaches and finds the kernel banner. A reinstall removes
# what the last install put there and this one does not, and nothing else.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
. "$VMSIG_ROOT/scripts/vm.sh"
. "$VMSIG_ROOT/tests/e2e/tap.sh"
vmsig_qemu_env >/dev/null || exit 1

work=$(mktemp -d /tmp/vmsig-e2e-install.XXXXXX)
chmod 0755 "$work"
trap 'vm_kill; rm -rf "$work"' EXIT
prefix=$work/opt/vmsig
inst=("$VMSIG_ROOT/scripts/install" --qemu "$VMSIG_QEMU_SERIES" --no-build --no-deps)

# ------------------------------------------------------------ bad input
t_exit 1 "an unknown --qemu is refused" "$VMSIG_ROOT/scripts/install" --qemu 9.9 --prefix "$prefix"
t_like "$T_OUT" "QEMU 9\\.9 is not supported; supported: $VMSIG_QEMU_VERSIONS" "the refusal lists the supported QEMUs"
t_exit 1 "a prefix nobody can create files in is refused" "${inst[@]}" --prefix /proc/vmsig-test
t_like "$T_OUT" "prefix '/proc/vmsig-test' is not writable by $(id -un) \\(uid $(id -u)\\)" \
	"the refusal names the prefix and the user"
: >"$work/afile"
t_exit 1 "a prefix that is a file is refused" "${inst[@]}" --prefix "$work/afile"
t_like "$T_OUT" "prefix '$work/afile' exists and is not a directory" "the refusal names it"
t_exit 1 "an unknown option is refused" "${inst[@]}" --prefx "$prefix"
t_is "$(ls "$work")" afile "nothing was installed by the refused runs"

# ------------------------------------------------------------ install
t_exit 0 "scripts/install --prefix $prefix --qemu $VMSIG_QEMU_SERIES" "${inst[@]}" --prefix "$prefix"
t_like "$T_OUT" "VMSIG_INSTALLED_QEMU=$prefix/bin/qemu-system-x86_64" "it prints where QEMU went"
moddir=$(printf '%s\n' "$T_OUT" | sed -n 's/^VMSIG_INSTALLED_MODDIR=//p')
pcdir=$(printf '%s\n' "$T_OUT" | sed -n 's/^VMSIG_INSTALLED_PKGCONFIG=//p')
qemu=$prefix/bin/qemu-system-x86_64
helper=$prefix/bin/vmsig-helper

want=(bin/qemu-system-x86_64 bin/vmsig-helper include/vmsig/vmsig_client.h
	include/vmsig/vmsig_wire.h share/vmsig/installed-files)
for f in "${want[@]}"; do
	t_ok "installed: $f" test -f "$prefix/$f"
done
for m in vmsig-obj.so accel-qtest-x86_64.so; do
	t_ok "installed module: ${moddir#"$prefix"/}/$m" test -f "$moddir/$m"
done
if [ "$VMSIG_QEMU_SERIES" = 7.2 ]; then
	t_ok "installed module: accel-tcg-x86_64.so (TCG is a module in 7.2)" test -f "$moddir/accel-tcg-x86_64.so"
fi
# every file QEMU's meson would install that the build has, at the same
# place relative to the prefix, byte for byte (10.0: keymaps among them)
t_exit 0 "every file QEMU's meson installs (that the build has) is there, identical" \
	python3 - "$VMSIG_QEMU_BUILD" "$prefix" <<'EOF'
import filecmp, json, os, re, sys
build, prefix = sys.argv[1], sys.argv[2]
qprefix = re.search(r'#define CONFIG_PREFIX "(.*)"', open(build + "/config-host.h").read()).group(1)
bad = n = 0
for src, dst in json.load(open(build + "/meson-info/intro-installed.json")).items():
    if not os.path.exists(src):
        continue
    n += 1
    got = prefix + dst[len(qprefix):]
    if not os.path.isfile(got) or not filecmp.cmp(src, got, shallow=False):
        print("missing or different:", got)
        bad += 1
print(n, "files checked")
sys.exit(1 if bad or n == 0 else 0)
EOF
echo "# $T_OUT"
libdir=${pcdir%/pkgconfig}
t_is "$(readlink "$libdir/libvmsig.so.1")" libvmsig.so.1.0.0 "libvmsig.so.1 -> libvmsig.so.1.0.0"
t_is "$(readlink "$libdir/libvmsig.so")" libvmsig.so.1 "libvmsig.so -> libvmsig.so.1"
t_is "$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=prefix vmsig)" "$prefix" "vmsig.pc has prefix=$prefix"
t_is "$(find "$prefix" -type d ! -perm 0755 | head -n 3)" "" "every directory is 0755"
t_is "$(find "$prefix" -type f ! -perm 0644 ! -perm 0755 | head -n 3)" "" "every file is 0644 or 0755"
t_is "$(find "$prefix/bin" "$moddir" "$libdir" -maxdepth 1 -type f \( -name 'qemu-*' -o -name 'vmsig-*' -o -name '*.so*' \) ! -perm 0755 | head -n 3)" \
	"" "programs and shared objects are 0755"
t_is "$(find "$prefix" -type f ! -user "$(id -u)" | head -n 3)" "" "every file belongs to the installing user"
t_is "$(sort "$prefix/share/vmsig/installed-files" | uniq -d)" "" "the manifest lists each file once"
t_is "$(cd "$prefix" && find . \( -type f -o -type l \) | sed 's|^\./||' | LC_ALL=C sort)" \
	"$(LC_ALL=C sort "$prefix/share/vmsig/installed-files")" "the manifest lists exactly what is there"
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
	t_exit 0 "another user (nobody) runs the installed QEMU with an empty environment" \
		runuser -u nobody -- env -i "$qemu" --version
	t_exit 0 "and the installed helper" runuser -u nobody -- env -i "$helper" --help
fi
t_like "$(env -i "$qemu" --version | head -n 1)" "QEMU emulator version $VMSIG_QEMU_VERSION" \
	"the installed QEMU is $VMSIG_QEMU_VERSION"
t_like "$(ldd "$helper")" "libvmsig\\.so\\.1 => $prefix/(bin/\\.\\./)?${libdir#"$prefix"/}/libvmsig\\.so\\.1 " \
	"the installed helper loads the installed libvmsig.so.1 (RPATH, no LD_LIBRARY_PATH)"

# ------------------------------------------------------------ a guest
# the installed QEMU with an empty environment: no QEMU_MODULE_DIR, no -L
printf '#!/bin/sh\nexec env -i %s "$@"\n' "$qemu" >"$work/qemu-env-i"
chmod 0755 "$work/qemu-env-i"
echo "uid:$(id -u) endpoints=0 caps=all" >"$work/grants"
VMSIG_QEMU=$work/qemu-env-i vm_start "$work" \
	-object "vmsig,id=vs0,path=$work/vmsig.sock,grants=$work/grants"
t_ok "the installed QEMU starts under env -i with -object vmsig (module loaded, socket there)" test -S "$VM_SOCK"
t_ok "its environment is empty" test ! -s "/proc/${VM_PID:-0}/environ"
t_ok "the guest boots (Debian's firmware found without -L)" vm_wait_console 'vmsig-guest: ready' 120
gpa=$(env -i "$helper" -s "$VM_SOCK" find --max 1 "Linux version 6" 2>/dev/null | head -n 1)
t_like "$gpa" '^0x[0-9a-f]+$' "the installed helper (env -i) finds the kernel banner in guest RAM"
t_exit 0 "the installed helper stops the VM" env -i "$helper" -s "$VM_SOCK" stop
t_like "$(env -i "$helper" -s "$VM_SOCK" --json status)" '"state":"paused"' "status says paused"
t_exit 0 "and quits it" env -i "$helper" -s "$VM_SOCK" quit
wait "$VM_PID" 2>/dev/null
VM_PID=
t_exit 1 "QEMU's log has no module or firmware error" \
	grep -iE 'could not load|failed to load|not found|cannot' "$work/qemu.log"

# ------------------------------------------------------------ reinstall
echo "stale" >"$prefix/bin/vmsig-stale"
echo "bin/vmsig-stale" >>"$prefix/share/vmsig/installed-files"
echo "mine" >"$prefix/bin/users-own-file"
t_exit 0 "a reinstall into the same prefix" "${inst[@]}" --prefix "$prefix"
t_exit 1 "removes what the last install listed and this one does not" test -e "$prefix/bin/vmsig-stale"
t_ok "keeps files it never installed" test -f "$prefix/bin/users-own-file"
t_ok "and the installed QEMU still runs" env -i "$qemu" --version
t_done
