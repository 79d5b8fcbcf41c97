#!/usr/bin/env bash
# e2e: vmsig under load against the real QEMU (issue 10 items 1, 2, 4, 7),
# with tests/load/vmsig-load. No guest kernel: -S, a memfd backend, QMP.
#   burst    250 controls HELLO at once under max-controls=256: all get in;
#            300 at once: 256 get in, the rest read -EMFILE, none a bare EOF
#   flood    (root) 1000 silent connections of uid 65534, reopened as soon
#            as closed; 4 retrying clients of uid 0 and `vmsig-helper
#            status` x10 all get in within one handshake timeout. The same
#            flood from uid 0 is measured and reported (docs/protocol.rst
#            "Admission": one uid is not told apart from itself)
#   turns    A pipelines 20,000 stop/cont, B's NOPs meanwhile, at
#            queue-limit 256 and 65536: per NOP, A's commands run between
#            B's send and B's REPLY are bounded by the 16-frame turn; B's
#            round trip is printed as a benchmark note, never tested
#   fdlimit  max-controls that cannot fit the soft fd limit: QEMU refuses
#            to start and says what to change; one that fits: connections
#            near the limit read BYE(-EMFILE), QMP answers, a reset's
#            MEMCTX is still published with its fds
# VMSIG_LOAD_USE_ENV=1 keeps the caller's VMSIG_QEMU and QEMU_MODULE_DIR
# (a scratch module build); VMSIG_LOAD_BUILD is the vmsig build directory
# (default build/native).
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
. "$VMSIG_ROOT/tests/e2e/tap.sh"
if [ "${VMSIG_LOAD_USE_ENV:-0}" != 1 ]; then
	vmsig_qemu_env >/dev/null || exit 1
fi
B=${VMSIG_LOAD_BUILD:-$VMSIG_ROOT/build/native}
LOAD=$B/tests/load/vmsig-load
H=$B/helper/vmsig-helper
[ -x "$LOAD" ] || {
	echo "not ok 1 - no $LOAD (build the native tree)"
	exit 1
}

work=$(mktemp -d /tmp/vmsig-load.XXXXXX)
chmod 755 "$work" # uid 65534 reaches the socket of the flood's QEMU
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

# qemu NAME VMSIG-OPTIONS [NOFILE]: start a VM (-S, no guest) with its vmsig
# socket at $work/NAME.sock and QMP at $work/NAME.qmp, optionally under a
# soft open-file limit; wait for the socket. Sets QPID.
qemu() {
	local name=$1 opts=$2 nofile=${3:-}
	(
		[ -n "$nofile" ] && ulimit -n "$nofile" # soft and hard: QEMU 10 raises soft to hard
		exec "$VMSIG_QEMU" -accel tcg -m 128 -display none -nodefaults -S -name "$name" \
			-object memory-backend-memfd,id=ram0,size=128M,share=on \
			-machine pc,memory-backend=ram0 \
			-qmp "unix:$work/$name.qmp,server=on,wait=off" \
			-object "vmsig,id=vs0,path=$work/$name.sock,$opts"
	) >"$work/$name.log" 2>&1 &
	QPID=$!
	pids+=("$QPID")
	local i
	for i in $(seq 100); do
		[ -S "$work/$name.sock" ] && [ -S "$work/$name.qmp" ] && return 0
		kill -0 "$QPID" 2>/dev/null || break
		sleep 0.1
	done
	sed 's/^/# /' "$work/$name.log"
	return 1
}
qstop() { kill "$QPID" 2>/dev/null; wait "$QPID" 2>/dev/null; }

# field LINE KEY: the value of KEY=value in a vmsig-load result line
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
# check DESC EXPR LINE: ok if the arithmetic EXPR holds; LINE as diagnostics
check() { (($2)); t_report $? "$1" "$3"; }
note() { printf '%s\n' "$@" | sed 's/^/# /'; }

uid=$(id -u)
printf 'uid:%s endpoints=0 caps=all\n' "$uid" >"$work/all.grants"

# --- 1. bursts
if qemu burst "grants=$work/all.grants,max-controls=256"; then
	r=$("$LOAD" -s "$work/burst.sock" burst 250)
	note "$r"
	check "burst: 250 HELLOs at once under max-controls=256 all get WELCOME" \
		"$(field "$r" welcome) == 250" "$r"
	check "burst 250: no bare EOF, no other refusal" \
		"$(field "$r" bare_eof) + $(field "$r" emfile) + $(field "$r" other_bye) + $(field "$r" timeout) == 0" "$r"
	sleep 0.5 # the 250 are closed and detached
	r=$("$LOAD" -s "$work/burst.sock" burst 300)
	note "$r"
	check "burst: 300 at once: max-controls=256 of them get in" \
		"$(field "$r" welcome) >= 250 && $(field "$r" welcome) <= 256" "$r"
	check "burst 300: every other one reads REPLY/BYE(-EMFILE), none a bare EOF" \
		"$(field "$r" welcome) + $(field "$r" emfile) == 300 && $(field "$r" bare_eof) == 0" "$r"
	qstop
else
	t_report 1 "burst: QEMU starts"
fi

# --- 2. floods
if [ "$uid" != 0 ]; then
	echo "ok $((T_N + 1)) # SKIP flood: needs root (a second uid for the flood)"
	T_N=$((T_N + 1))
else
	printf 'uid:0 endpoints=0 caps=all\nuid:65534 endpoints=0 caps=OBSERVE\n' >"$work/flood.grants"
	if qemu flood "grants=$work/flood.grants,max-controls=256"; then
		chmod 666 "$work/flood.sock"
		r=$("$LOAD" -s "$work/flood.sock" flood --flood 1000 --flood-uid 65534 --clients 4 \
			--seconds 6 --timeout 5000 --helper "$H")
		note "$r"
		check "flood from uid 65534: every attempt of 4 retrying uid-0 clients got in and was answered" \
			"$(field "$r" failed) == 0 && $(field "$r" ok) > 100" "$r"
		check "flood: each within one handshake timeout (5000 ms)" \
			"$(field "$r" max_ms | cut -d. -f1) < 5000" "$r"
		check "flood: vmsig-helper status succeeded 10 of 10" \
			"$(field "$r" helper_ok) == 10" "$r"
		check "flood: the flood really churned (its connections were closed and reopened)" \
			"$(field "$r" flood_closed) > 1000" "$r"
		# The same flood from the legitimate clients' own uid: measured, not
		# asserted (docs/protocol.rst "Admission": not told apart).
		r=$("$LOAD" -s "$work/flood.sock" flood --flood 1000 --flood-uid 0 --clients 4 \
			--seconds 4 --timeout 5000 --helper "$H")
		note "same-uid flood (documented: shares that uid's slots): $r"
		t_report 0 "flood from the clients' own uid measured: $(field "$r" ok) of $(field "$r" attempts) attempts in, helper $(field "$r" helper_ok)/10"
		qstop
	else
		t_report 1 "flood: QEMU starts"
	fi
fi

# --- 7. turns
for ql in 256 65536; do
	if qemu "turns$ql" "grants=$work/all.grants,queue-limit=$ql"; then
		r=$("$LOAD" -s "$work/turns$ql.sock" turns --count 20000)
		note "$r"
		check "turns ql=$ql: A's 20,000 pipelined stop/cont all answered, in full" \
			"$(field "$r" a_replies) == 20000 && $(field "$r" a_errors) == 0" "$r"
		# A runs at most 3 turns of 16 frames per dispatch (its readiness,
		# its resume from a pause, the listener's turn timer), and B's NOP
		# is read by the next dispatch at the latest: 2 * 3 * 16.
		check "turns ql=$ql: at most 96 of A's commands ran while B waited for a NOP (before: all A had sent)" \
			"$(field "$r" max_between) <= 96 && $(field "$r" nops) - $(field "$r" b_lossy_windows) >= 10" "$r"
		note "benchmark (not a test): B's NOP round trip at queue-limit $ql while A floods:" \
			"p50 $(field "$r" b_p50_ms) ms, p99 $(field "$r" b_p99_ms) ms, max $(field "$r" b_max_ms) ms"
		qstop
	else
		t_report 1 "turns ql=$ql: QEMU starts"
	fi
done

# --- 4. the fd budget
# 2 * 256 + 64 + 8 > 512: refused at creation, saying what to change
(ulimit -n 512 && exec "$VMSIG_QEMU" -accel tcg -m 128 -display none -nodefaults -S \
	-object "vmsig,id=vs0,path=$work/nofit.sock,grants=$work/all.grants,max-controls=256") \
	>"$work/nofit.log" 2>&1 </dev/null &
nofit=$!
pids+=("$nofit")
for _ in $(seq 50); do kill -0 "$nofit" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$nofit" 2>/dev/null; then
	kill "$nofit" # still running after 5 s: it did not refuse
	wait "$nofit"
	rc=0
else
	wait "$nofit"
	rc=$?
fi
out=$(cat "$work/nofit.log")
check "fdlimit: max-controls=256 under a soft limit of 512 fds: QEMU refuses to start" "$rc != 0" "$out"
t_like "$out" "max-controls=256 does not fit the open file limit .*soft limit 512.*lower max-controls or raise the limit" \
	"fdlimit: the error names max-controls, the limit and the fix"
# 2 * 220 + 64 + 8 = 512: fits; fill it until connections are refused
if qemu fd "grants=$work/all.grants,max-controls=220,handshake-timeout=30000" 512; then
	r=$("$LOAD" -s "$work/fd.sock" fdlimit --qmp "$work/fd.qmp" --pid "$QPID" --attach 220 --silent 300)
	note "$r"
	check "fdlimit: connections near the limit read BYE(-EMFILE) (\"near its file descriptor limit\"), none a bare EOF" \
		"$(field "$r" near_limit_bye) >= 1 && $(field "$r" bare_eof) == 0" "$r"
	check "fdlimit: QEMU keeps 64 fds for itself (at most 512 - 64 open)" \
		"$(field "$r" qemu_fds_full) <= 448" "$r"
	check "fdlimit: QMP query-status answers at the limit" "$(field "$r" qmp_ok) == 1" "$r"
	check "fdlimit: a reset at the limit still publishes its MEMCTX, status 0, with fds" \
		"$(field "$r" memctx_gen1) > $(field "$r" memctx_gen0) && $(field "$r" memctx_status) == 0 && $(field "$r" memctx_fds) >= 1" "$r"
	qstop
else
	t_report 1 "fdlimit: QEMU starts with max-controls=220 under 512 fds"
fi

# --- inflight (item 5): QEMU as an unprivileged user (no CAP_SYS_RESOURCE: the
# kernel bounds its descriptors in flight by RLIMIT_NOFILE, here 1024), 60
# controls re-subscribe to MEMCTX 40 times each and never read; a
# well-behaved MEMCTX control must still get the map and answers. Measured
# before the fix: the hoarders held 1045 fds in flight and the well-behaved
# control got no MEMCTX and no reply; after: 73 fds, and it works.
if [ "$uid" = 0 ] && command -v setpriv >/dev/null; then
	q=$work/unpriv
	mkdir -p "$q/bin" "$q/run"
	cp "$VMSIG_QEMU" "$q/bin/" && cp "$QEMU_MODULE_DIR"/*.so "$q/bin/" 2>/dev/null
	chmod -R a+rX "$q/bin"
	chmod 777 "$q/run"
	printf 'uid:0 endpoints=0 caps=all\n' >"$q/grants"
	chmod 644 "$q/grants"
	(
		ulimit -n 1024
		QEMU_MODULE_DIR=$q/bin exec setpriv --reuid=65534 --regid=65534 --clear-groups \
			"$q/bin/qemu-system-x86_64" -L /usr/share/seabios -L /usr/share/qemu \
			-accel tcg -m 128 -display none -nodefaults -S \
			-object memory-backend-memfd,id=ram0,size=128M,share=on \
			-machine pc,memory-backend=ram0 \
			-object "vmsig,id=vs0,path=$q/run/s.sock,grants=$q/grants"
	) >"$work/unpriv.log" 2>&1 &
	QPID=$!
	pids+=("$QPID")
	for _ in $(seq 100); do [ -S "$q/run/s.sock" ] && break; sleep 0.1; done
	r=$("$LOAD" -s "$q/run/s.sock" inflight 60 40)
	note "$r"
	check "inflight: QEMU as uid 65534 at 1024 fds, 60 MEMCTX hoarders: a well-behaved control gets the map with its fds" \
		"$(field "$r" good_memctx) == 1 && $(field "$r" good_fds) >= 1" "$r"
	check "inflight: and its command is answered (not dropped)" "$(field "$r" good_nop) == 1" "$r"
	check "inflight: the hoarders hold about one map each in flight (at most 3 fds each), not one per re-subscription" \
		"$(field "$r" hoarder_fds) <= 3 * $(field "$r" attached)" "$r"
	qstop
else
	t_report 0 "inflight # SKIP needs root and setpriv to run QEMU as another uid"
fi

t_done
