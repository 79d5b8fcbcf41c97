# tests/e2e/tap.sh: tiny TAP producer for the e2e tests (sourced).
#   t_ok DESC CMD...          ok if CMD succeeds
#   t_is GOT WANT DESC        ok if GOT == WANT
#   t_like GOT REGEX DESC     ok if GOT matches the extended REGEX
#   t_exit WANT DESC CMD...   ok if CMD exits with status WANT; its output is in $T_OUT
#   t_done                    prints the plan, exits 1 if anything failed
T_N=0
T_FAIL=0
t_report() { # STATUS DESC [DIAG]
	T_N=$((T_N + 1))
	if [ "$1" = 0 ]; then
		echo "ok $T_N - $2"
	else
		T_FAIL=$((T_FAIL + 1))
		echo "not ok $T_N - $2"
		[ -n "${3:-}" ] && printf '%s\n' "$3" | sed 's/^/# /'
	fi
	return 0
}
t_ok() {
	local desc=$1 out
	shift
	out=$("$@" 2>&1)
	t_report $? "$desc" "$out"
}
t_is() { [ "$1" = "$2" ]; t_report $? "$3" "got '$1', want '$2'"; }
t_like() { grep -qE -- "$2" <<<"$1"; t_report $? "$3" "got '$1', want /$2/"; } # no pipe: grep -q ending early must not be SIGPIPE under pipefail
t_exit() {
	local want=$1 desc=$2 rc
	shift 2
	T_OUT=$("$@" 2>&1)
	rc=$?
	[ "$rc" = "$want" ]
	t_report $? "$desc" "exit $rc, want $want; output: $T_OUT"
}
t_done() {
	echo "1..$T_N"
	[ "$T_FAIL" = 0 ]
}
