# pvkit guest library (POSIX sh: dash in dom0, busybox sh in the domU).
# Tests print KTAP; a test's output lines `metric NAME VALUE UNIT` and `info TEXT` become KTAP
# diagnostics, and on failure the tail of its output does too.
PVK_N=0
[ -f /pvkit/env.sh ] && . /pvkit/env.sh
export PATH=/pvkit/bin:$PATH
PVK_DOMU=pvkit-domU
PVK_GUEST_LOG=/var/log/xen/console/guest-$PVK_DOMU.log

pvk_stage() {
	echo "PVKIT-STAGE $1" > /dev/console
}

pvk_fatal() {
	echo "PVKIT-FATAL $*" > /dev/console
}

pvk_begin() {
	echo "KTAP version 1"
	echo "# Subtest: $1"
	echo "1..$2"
}

# pvk_run NAME TIMEOUT SCRIPT: run one test script with a time limit and report it
pvk_run() {
	PVK_N=$((PVK_N + 1))
	_out=/tmp/pvk-out.$PVK_N
	timeout "$2" sh "$3" > "$_out" 2>&1
	_rc=$?
	grep '^metric ' "$_out" | sed 's/^metric /# metric: /'
	grep '^info ' "$_out" | sed 's/^info /# /'
	if [ "$_rc" -eq 0 ]; then
		echo "ok $PVK_N $1"
	elif [ "$_rc" -eq 77 ]; then
		echo "ok $PVK_N $1 # SKIP $(tail -n 1 "$_out")"
	else
		[ "$_rc" -eq 124 ] || [ "$_rc" -eq 143 ] && echo "# timed out after $2 s"
		tail -n 30 "$_out" | grep -v '^metric \|^info ' | sed 's/^/# /'
		echo "# exit status $_rc"
		echo "not ok $PVK_N $1"
	fi
}

# pvk_wait SECONDS COMMAND...: poll until the command succeeds
pvk_wait() {
	_limit=$1
	shift
	_i=0
	while [ "$_i" -lt "$_limit" ]; do
		"$@" > /dev/null 2>&1 && return 0
		sleep 1
		_i=$((_i + 1))
	done
	echo "still false after $_limit s: $*"
	return 1
}

pvk_domid() {
	xl domid "$PVK_DOMU"
}

# the domU's state letters from `xl list` (r, b, p, s, c, d), empty if it is gone
pvk_domu_state() {
	xl list "$PVK_DOMU" 2>/dev/null | awk 'NR == 2 { gsub(/-/, "", $5); print $5 }'
}

# a value the domU printed on its console as `pvkit-value NAME VALUE`
pvk_domu_value() {
	tr -d '\r' < "$PVK_GUEST_LOG" | sed -n "s/^pvkit-value $1 //p" | tail -n 1
}

# tell the other side a value through the domU console: `pvkit-value NAME VALUE`
pvk_tell() {
	echo "pvkit-value $1 $2" > /dev/console
}

# dom0: wait until the domU has told a value, then print it
pvk_wait_value() {
	_i=0
	while [ "$_i" -lt "$2" ]; do
		_v=$(pvk_domu_value "$1")
		[ -n "$_v" ] && { echo "$_v"; return 0; }
		sleep 1
		_i=$((_i + 1))
	done
	echo "the domU did not tell '$1' within $2 s" >&2
	return 1
}
