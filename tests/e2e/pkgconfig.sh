#!/usr/bin/env bash
# e2e (no QEMU needed): the installed library as a consumer sees it
# (docs/library.md). Installs a built tree with `meson install --destdir`,
# then builds programs against it with nothing but
# `pkg-config --cflags --libs vmsig` and runs them against the installed
# libvmsig.so.1: the soname, the exported symbols (public vmsig_* only, no
# internal vmsig__*), the symlinks and headers, no glib in the .pc.
#
#   tests/e2e/pkgconfig.sh [BUILDDIR]   (default build/native, already built)
#
# scripts/test runs it right after the native build.
# shellcheck disable=SC2016 # the bash -c snippets get their values as "$1"
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
. "$VMSIG_ROOT/tests/e2e/tap.sh"
B=${1:-$VMSIG_ROOT/build/native}
CC=${CC:-cc}

work=$(mktemp -d /tmp/vmsig-e2e-pkgconfig.XXXXXX)
trap 'rm -rf "$work"' EXIT
dest=$work/dest

t_exit 0 "meson install --destdir into a staging root" \
	meson install -C "$B" --no-rebuild --destdir "$dest"

pc=$(find "$dest" -name vmsig.pc -path '*/pkgconfig/*' | head -n1)
t_like "$pc" "/pkgconfig/vmsig\.pc$" "vmsig.pc is installed in a pkgconfig directory"
pcdir=$(dirname "${pc:-$work/none/x}")
libdir=$(dirname "$pcdir")

# Only the staged .pc files, with every path under the staging root; system
# -I/-L paths are not dropped, so a /usr prefix works the same way.
export PKG_CONFIG_LIBDIR=$pcdir PKG_CONFIG_PATH=
export PKG_CONFIG_SYSROOT_DIR=$dest
export PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1

t_exit 0 "pkg-config --cflags --libs vmsig works" pkg-config --cflags --libs vmsig
flags=$T_OUT
t_like "$flags" "^-I$dest/[^ ]*include -L$libdir -lvmsig *$" \
	"the flags are -I<includedir> -L<libdir> -lvmsig"
t_exit 0 "no Requires, no Requires.private (the library needs no glib)" \
	bash -c '[ -z "$(pkg-config --print-requires vmsig; pkg-config --print-requires-private vmsig)" ] &&
		! pkg-config --static --cflags --libs vmsig | grep -q glib'
t_exit 0 "the .pc's version is the project's" \
	bash -c '[ "$(pkg-config --modversion vmsig)" = "$(meson introspect --projectinfo "$1" |
		python3 -c "import json,sys; print(json.load(sys.stdin)[\"version\"])")" ]' _ "$B"

incdir=$(pkg-config --cflags-only-I vmsig | sed 's/^ *-I//; s/ *$//')
t_exit 0 "every include/vmsig/*.h is installed in <includedir>/vmsig/" bash -c \
	'for h in "$2"/include/vmsig/*.h; do
		cmp -s "$h" "$1/vmsig/${h##*/}" || { echo "missing $1/vmsig/${h##*/}"; exit 1; }; done' \
	_ "$incdir" "$VMSIG_ROOT"

so=$libdir/libvmsig.so.1.0.0
t_exit 0 "libvmsig.so -> libvmsig.so.1 -> libvmsig.so.1.0.0" bash -c \
	'[ "$(readlink "$1/libvmsig.so")" = libvmsig.so.1 ] &&
	 [ "$(readlink "$1/libvmsig.so.1")" = libvmsig.so.1.0.0 ] && [ -f "$1/libvmsig.so.1.0.0" ]' _ "$libdir"
soname=$(readelf -d "$so" 2>&1 | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
t_is "$soname" libvmsig.so.1 "readelf -d: SONAME is libvmsig.so.1"

dyn=$(nm -D --defined-only "$so" 2>&1)
t_is "$(printf '%s\n' "$dyn" | grep -c ' vmsig__')" 0 "nm -D: no internal vmsig__ symbol is exported"
t_exit 0 "nm -D: every exported symbol is vmsig_[a-z]* in a VMSIG_1.n version node" bash -c \
	'! printf "%s\n" "$1" | grep -vE " [A-Z] vmsig_[a-z][A-Za-z0-9_]*@@VMSIG_1\.[0-9]+$| A VMSIG_1\.[0-9]+$"' _ "$dyn"
t_exit 0 "nm -D: the public API is exported (vmsig_core_new, vmsig_client_connect, vmsig_kind_name, vmsig_grant_check)" \
	bash -c 'for s in vmsig_core_new vmsig_client_connect vmsig_kind_name vmsig_grant_check; do
		printf "%s\n" "$1" | grep -qE " T $s@@VMSIG_1\.0$" || { echo "missing $s"; exit 1; }; done' _ "$dyn"

# A consumer of the public API, built with only the pkg-config flags.
cat >"$work/consumer.c" <<'EOF'
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <vmsig/vmsig_client.h>
#include <vmsig/vmsig_core.h>

int main(void)
{
    vmsig_grant ok = { .principal = 1, .endpoint_mask = 1, .caps = VMSIG_CAP_OBSERVE };
    vmsig_grant retired = { .principal = 1, .endpoint_mask = 1, .caps = 0x4 };
    vmsig_client_config cfg = { .version = VMSIG_CLIENT_CONFIG_VERSION,
                                .path = "/nonexistent/vmsig.sock" };
    int err = 0;
    vmsig_client *c = vmsig_client_connect(&cfg, &err);
    printf("%s %s %d %d %s\n", vmsig_kind_name(VMSIG_EV_RUNSTATE),
           vmsig_cap_name(VMSIG_CAP_MEMCTX), vmsig_grant_check(&ok),
           vmsig_grant_check(&retired) == -EINVAL, c ? "connected" : strerror(-err));
    return 0;
}
EOF
# shellcheck disable=SC2086 # the flags are words
t_exit 0 "a program using the public API compiles and links with only the pkg-config flags" \
	$CC -std=gnu11 -Wall -Werror -o "$work/consumer" "$work/consumer.c" $flags
export LD_LIBRARY_PATH=$libdir
t_like "$(ldd "$work/consumer" 2>&1 | grep libvmsig)" "libvmsig\.so\.1 => $libdir/libvmsig\.so\.1 " \
	"it loads the installed libvmsig.so.1"
t_exit 0 "it runs against the installed library" "$work/consumer"
t_is "$T_OUT" "runstate MEMCTX 0 1 No such file or directory" "and gets the library's answers"

# shellcheck disable=SC2086
t_exit 0 "examples/client-control.c builds with only the pkg-config flags" \
	$CC -std=gnu11 -Wall -Werror -o "$work/client-control" "$VMSIG_ROOT/examples/client-control.c" $flags
t_exit 1 "client-control runs: no socket is a clean connect error" "$work/client-control" "$work/none.sock"
t_like "$T_OUT" "^client-control: connect: No such file or directory$" "it reports the connect error"

# An internal function is not reachable through the shared library.
cat >"$work/internal.c" <<'EOF'
const void *vmsig__wire_kind(unsigned kind);
int main(void) { return vmsig__wire_kind(0) != 0; }
EOF
# shellcheck disable=SC2086
t_exit 1 "a program calling an internal vmsig__ function does not link" \
	$CC -o "$work/internal" "$work/internal.c" $flags
t_like "$T_OUT" "undefined reference to .vmsig__wire_kind" "the linker names the hidden symbol"

helper=$(find "$dest" -name vmsig-helper -type f | head -n1)
t_like "$(ldd "$helper" 2>&1 | grep libvmsig)" "libvmsig\.so\.1 => $libdir/libvmsig\.so\.1 " \
	"the installed vmsig-helper links the installed libvmsig.so.1"
t_exit 0 "and runs (vmsig-helper --help)" "$helper" --help
t_done
