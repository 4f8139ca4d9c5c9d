# pvkit guest library (POSIX sh: dash in dom0, busybox sh in the domU).
# Tests print KTAP; a test's output lines `metric NAME VALUE UNIT` and `info TEXT` become KTAP
# diagnostics, and on failure the tail of its output does too.
PVK_N=0
[ -f /pvkit/env.sh ] && . /pvkit/env.sh
export PATH=/pvkit/bin:$PATH
PVK_DOMU=pvkit-domU
PVK_GUEST_LOG=/var/log/xen/console/guest-$PVK_DOMU.log

# a test's measured value and free-text remark, turned into KTAP diagnostics by pvk_run
metric() {
	echo "metric $*"
}

info() {
	echo "info $*"
}

# pvk_requested VAR WHAT: skip the test (KTAP SKIP) unless $VAR is unset or 1
pvk_requested() {
	eval "_v=\${$1:-1}"
	[ "$_v" = 1 ] || { echo "$2 not requested ($1=$_v)"; exit 77; }
}

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

# the domU's state column from `xl list` (e.g. -b----, --p---), or "gone"
pvk_domu_state() {
	_s=$(xl list "$PVK_DOMU" 2> /dev/null | awk 'NR == 2 { print $5 }')
	echo "${_s:-gone}"
}

# succeeds while the domU lives and is not paused: running (r), blocked (b), or
# runnable and waiting for a physical CPU (------, common under TCG while dom0 runs xl);
# fails when it is paused, shut down, crashed, dying or gone
pvk_domu_alive() {
	_s=$(pvk_domu_state)
	info state "$_s"
	case "$_s" in gone | *p* | *s* | *c* | *d*) return 1 ;; esac
	return 0
}

# a value the domU printed on its console as `pvkit-value NAME VALUE`
pvk_domu_value() {
	tr -d '\r' < "$PVK_GUEST_LOG" | sed -n "s/^pvkit-value $1 //p" | tail -n 1
}

# tell the other side a value through the domU console: `pvkit-value NAME VALUE`
pvk_tell() {
	echo "pvkit-value $1 $2" > /dev/console
}

# dom0: pvk_wait_value NAME SECONDS [OLD]: wait until the domU has told NAME a value (other
# than OLD), then print it
pvk_wait_value() {
	_i=0
	while [ "$_i" -lt "$2" ]; do
		_v=$(pvk_domu_value "$1")
		[ -n "$_v" ] && [ "$_v" != "${3:-}" ] && { echo "$_v"; return 0; }
		sleep 1
		_i=$((_i + 1))
	done
	echo "the domU did not tell '$1' within $2 s" >&2
	return 1
}

# --- benchmark helpers: each prints `metric NAME.rK VALUE UNIT` for K = 1..$PVK_REPEATS ---

# fixed-work sysbench runs; the value is sysbench's "total time" in ms
pvk_sysbench() {
	_events=$(awk -v s="${PVK_SCALE:-1}" 'BEGIN { printf "%d", 4000 * s + 1 }')
	_k=1
	while [ "$_k" -le "${PVK_REPEATS:-3}" ]; do
		for _w in cpu memory threads; do
			case $_w in
			cpu) _args="cpu --cpu-max-prime=2000 --events=$_events" ;;
			memory) _args="memory --memory-block-size=4K --memory-total-size=$((_events / 10 + 1))M --events=0" ;;
			threads) _args="threads --threads=4 --events=$((_events / 4 + 1))" ;;
			esac
			# shellcheck disable=SC2086
			_t=$(sysbench $_args --time=0 run | awk '/total time:/ { sub("s", "", $3); print $3 * 1000 }')
			[ -n "$_t" ] || { echo "sysbench $_w gave no total time"; return 1; }
			echo "metric sysbench_$_w.r$_k $_t ms"
		done
		_k=$((_k + 1))
	done
}

# fio on a block device, O_DIRECT. The jobs are data: $PVK_FIO_JOBS lists
# NAME:RW:BS:ENGINE:IODEPTH:NUMJOBS (blkbench passes its JOBS table); by default sequential
# 1 MiB read/write and 4 KiB random read/write, psync, one job. Sequential jobs move the
# device size, random 4 KiB jobs an eighth of it; NUMJOBS jobs split both (disjoint ranges,
# bandwidth summed). pvk_fio DEV [PREFIX]: metrics are named PREFIXfio_<NAME>.rK
PVK_FIO_DEFAULT_JOBS="seq_read:read:1M:psync:1:1 seq_write:write:1M:psync:1:1 \
rand_read:randread:4k:psync:1:1 rand_write:randwrite:4k:psync:1:1"
pvk_fio() {
	_size=$(awk -v s="${PVK_SCALE:-1}" 'BEGIN { m = int(256 * s); if (m < 64) m = 64; if (m > 128) m = 128; print m }')
	_k=1
	while [ "$_k" -le "${PVK_REPEATS:-3}" ]; do
		for _job in ${PVK_FIO_JOBS:-$PVK_FIO_DEFAULT_JOBS}; do
			_name=${_job%%:*} _r=${_job#*:}
			_rw=${_r%%:*} _r=${_r#*:}
			_bs=${_r%%:*} _r=${_r#*:}
			_engine=${_r%%:*} _r=${_r#*:}
			_depth=${_r%%:*} _jobs=${_r#*:}
			_io=$_size
			[ "$_bs" = 4k ] && _io=$((_size / 8))
			_bw=$(pvk_tool fio --name="$_name" --filename="$1" --rw="$_rw" --bs="$_bs" \
				--size="$((_size / _jobs))M" --io_size="$((_io / _jobs))M" \
				--offset_increment="$((_size / _jobs))M" --numjobs="$_jobs" --group_reporting \
				--direct=1 --ioengine="$_engine" --iodepth="$_depth" --randseed=42 \
				--output-format=terse --terse-version=3 | awk -F';' -v rw="$_rw" \
				'{ if (rw ~ /read/) print $7; else print $48 }')
			[ -n "$_bw" ] || { echo "fio $_name gave no bandwidth"; return 1; }
			echo "metric ${2}fio_$_name.r$_k $(awk -v b="$_bw" 'BEGIN { printf "%.2f", b / 1024 }') MB/s"
		done
		_k=$((_k + 1))
	done
}

# iperf3 to a server, fixed 3 s of guest time per repeat; Mbit/s at the receiver
pvk_iperf() {
	_k=1
	while [ "$_k" -le "${PVK_REPEATS:-3}" ]; do
		_r=$(iperf3 -c "$1" -p 5201 -t 3 -f m | awk '/receiver/ { print $(NF-2) }')
		[ -n "$_r" ] || { echo "iperf3 to $1 gave no result"; return 1; }
		echo "metric iperf3_tcp.r$_k $_r Mbit/s"
		_k=$((_k + 1))
	done
}

# pvk_iperf_jobs SERVER PREFIX [K]: the network bench jobs against an iperf3 server (port
# 5201), 3 s of guest time each: TCP to the server and from it (-R), Mbit/s at the receiver;
# UDP with 64-byte payloads sent flat out, thousand datagrams per second received; metrics
# PREFIXiperf3_tcp_tx.rK, PREFIXiperf3_tcp_rx.rK, PREFIXiperf3_udp_64.rK for repeat K, or for
# K = 1..$PVK_REPEATS
pvk_iperf_jobs() {
	_k=${3:-1}
	while [ "$_k" -le "${3:-${PVK_REPEATS:-3}}" ]; do
		for _job in tcp_tx tcp_rx; do
			_args=
			[ "$_job" = tcp_rx ] && _args=-R
			# shellcheck disable=SC2086
			_r=$(iperf3 -c "$1" -p 5201 -t 3 -f m $_args | awk '/receiver/ { print $(NF-2) }')
			[ -n "$_r" ] || { echo "iperf3 $_job to $1 gave no result"; return 1; }
			echo "metric ${2}iperf3_$_job.r$_k $_r Mbit/s"
		done
		_r=$(iperf3 -c "$1" -p 5201 -t 3 -u -l 64 -b 0 | awk '/receiver/ {
			for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\/[0-9]+$/) { split($i, n, "/") }
			for (i = 1; i <= NF; i++) if ($i == "sec") { split($(i-1), t, "-") }
			if (t[2] > 0) printf "%.2f", (n[2] - n[1]) / t[2] / 1000 }')
		[ -n "$_r" ] || { echo "iperf3 udp_64 to $1 gave no result"; return 1; }
		echo "metric ${2}iperf3_udp_64.r$_k $_r kpps"
		_k=$((_k + 1))
	done
}

# pvstat: run a command between a counter reset and a read; print each op the command
# caused as `metric pvstat.<op> <calls> calls` (kernel booted with "pvstat")
pvk_pvstat() {
	_dir=/sys/kernel/debug/pvstat
	[ -r $_dir/counts ] || { echo "no $_dir/counts (kernel without pvstat, or not booted with pvstat)"; return 1; }
	echo 1 > $_dir/reset
	"$@" > /dev/null 2>&1 || { echo "workload failed: $*"; return 1; }
	awk '$2 > 0 { print "metric pvstat." $1 " " $2 " calls" }' $_dir/counts
}

# a fixed process workload: N fork+exec of a trivial program
pvk_forks() {
	_i=0
	while [ "$_i" -lt "$1" ]; do
		/bin/true || true
		_i=$((_i + 1))
	done
}

# big guest programs come on a tools disk (a tar: bin/, lib/) that dom0 sees as /dev/vdc and
# passes to the domU; unpack it once, then run a program with its own libraries
pvk_tools() {
	[ -x /opt/tools/bin/fio ] && return 0
	mkdir -p /opt/tools
	for _dev in "$@"; do
		[ -b "$_dev" ] && tar -xf "$_dev" -C /opt/tools && return 0
	done
	echo "no tools disk among: $*"
	return 1
}

pvk_tool() {
	_name=$1
	shift
	/opt/tools/lib/ld-linux-x86-64.so.2 --library-path /opt/tools/lib "/opt/tools/bin/$_name" "$@"
}

# pvstat per microbenchmark: the paravirt ops each one caused, one run at $PVK_SCALE, as
# `metric pvstat:<benchmark>:<op> <calls> calls`
pvk_pvstat_each() {
	for _b in $(pvbench -l); do
		if [ -n "$PVK_MICRO" ]; then
			case " $PVK_MICRO " in *" $_b "*) ;; *) continue ;; esac
		fi
		pvk_pvstat pvbench -r 1 -s "${PVK_SCALE:-1}" "$_b" > /tmp/pvstat.$_b || return 1
		sed "s/^metric pvstat\./metric pvstat:$_b:/" /tmp/pvstat.$_b
	done
}

# --- split devices, created the way the toolstack (libxl) does (dom0) ---

# sets _d (the domU's domid), _fe and _be (the frontend and backend XenStore paths) from
# FTYPE BTYPE ID
_pvk_dev_nodes() {
	_d=$(pvk_domid) || return 1
	_fe=/local/domain/$_d/device/$1/$3
	_be=/local/domain/0/backend/$2/$_d/$3
}

# after _pvk_dev_nodes: the frontend and backend directories with libxl's permissions (the
# domU owns its frontend, dom0 its backend, each may read the other) and the keys every
# device has; the caller adds its own keys, then _pvk_dev_start
_pvk_dev_create() {
	xenstore-exists "/local/domain/$_d/device/$1" || {
		xenstore-write "/local/domain/$_d/device/$1" ""
		xenstore-chmod "/local/domain/$_d/device/$1" "n$_d" r0
	}
	xenstore-write "$_be" ""
	xenstore-chmod "$_be" n0 "r$_d"
	xenstore-write "$_be/frontend" "$_fe" "$_be/frontend-id" "$_d" "$_be/online" 1
	xenstore-write "$_fe" ""
	xenstore-chmod "$_fe" "n$_d" r0
	xenstore-write "$_fe/backend" "$_be" "$_fe/backend-id" 0
}

# the `state` nodes, written last, when the rest is in place; frontend first: xen-blkback
# unregisters a device whose frontend has no state yet
_pvk_dev_start() {
	xenstore-write "$_fe/state" 1
	xenstore-write "$_be/state" 1
}

# the devices pvk_blk_attach and pvk_net_attach made, one a line ("blk|net FTYPE BTYPE ID
# ARGS..."), so that a domU that comes back under a new domid (restored, migrated) gets them
# again: pvk_devs_forget OLD_DOMID, then pvk_reattach
PVK_DEVS=/run/pvk-devices

# _pvk_dev_record KIND FTYPE BTYPE ID ARGS...: remember a device (once)
_pvk_dev_record() {
	_pvk_dev_unrecord "$2" "$3" "$4"
	echo "$*" >> $PVK_DEVS
}

# _pvk_dev_unrecord FTYPE BTYPE ID
_pvk_dev_unrecord() {
	[ -f $PVK_DEVS ] || return 0
	grep -v "^[a-z]* $1 $2 $3 " $PVK_DEVS > $PVK_DEVS.new || true
	mv $PVK_DEVS.new $PVK_DEVS
}

# pvk_dev_detach FTYPE BTYPE ID: hot-unplug as `xl block-detach`/`network-detach` do: the
# backend goes offline and Closing, both ends close, then the nodes are removed
pvk_dev_detach() {
	_pvk_dev_unrecord "$@"
	_pvk_dev_nodes "$@" || return 1
	xenstore-write "$_be/online" 0 "$_be/state" 5
	pvk_wait 30 sh -c "[ \"\$(xenstore-read $_be/state 2> /dev/null)\" = 6 ] || ! xenstore-exists $_be" \
		|| echo "backend $_be did not reach Closed (state $(xenstore-read "$_be/state" 2> /dev/null))"
	xenstore-rm "$_be" "$_fe" 2> /dev/null
	echo "detached $1/$3"
}

# pvk_blk_attach FTYPE BTYPE ID FILE [MODE]: give the domU a disk backed by FILE: the frontend
# node device/FTYPE/ID (pvblk or vbd) and the backend node backend/BTYPE/DOMID/ID (pvblk:
# pvblk-back serves FILE itself; vbd: xen-blkback serves a loop device over FILE)
pvk_blk_attach() {
	_pvk_dev_nodes "$@" || return 1
	_params=$4
	_phys=
	if [ "$2" = vbd ]; then
		_params=$(losetup -f --show "$4") || return 1
		_phys=$(stat -L -c '%t:%T' "$_params")
	fi
	_pvk_dev_create "$1"
	xenstore-write "$_be/params" "$_params" "$_be/mode" "${5:-w}" "$_be/type" phy \
		"$_be/device-type" disk "$_be/removable" 0 "$_be/dev" "$1-$3"
	[ -n "$_phys" ] && xenstore-write "$_be/physical-device" "$_phys"
	xenstore-write "$_fe/virtual-device" "$3" "$_fe/device-type" disk
	_pvk_dev_start
	_pvk_dev_record blk "$1" "$2" "$3" "$4" "${5:-w}"
	echo "attached $1/$3 <-> $2 backend $_be ($_params)"
}

# pvk_blk_detach FTYPE BTYPE ID: pvk_dev_detach, and the loop device goes
pvk_blk_detach() {
	_pvk_dev_nodes "$@" || return 1
	_params=$(xenstore-read "$_be/params" 2> /dev/null)
	pvk_dev_detach "$@"
	case $_params in /dev/loop*) losetup -d "$_params" ;; esac
}

# the backend's network interface for a vif: vif<domid>.<id> (xen-netback, or pvnet-back with
# devtype=vif), pvnetb<domid>.<id> (pvnet-back)
_pvk_vif_name() {
	case $1 in
	vif) echo "vif$2.$3" ;;
	*) echo "${1}b$2.$3" ;;
	esac
}

# pvk_net_attach FTYPE BTYPE ID MAC BRIDGE: give the domU a network interface on BRIDGE, as
# libxl_nic does: frontend node device/FTYPE/ID (pvnet or vif) with handle, mac; backend node
# backend/BTYPE/DOMID/ID (vif: xen-netback, pvnet: pvnet-back) with mac, bridge, handle,
# script, type and an empty hotplug-status (the backend connects only once the hotplug
# script set it to "connected"); then, once the backend waits in InitWait, runs the hotplug
# script (vif-bridge online) on its interface as libxl does
pvk_net_attach() {
	_pvk_dev_nodes "$@" || return 1
	_pvk_dev_create "$1"
	xenstore-write "$_be/mac" "$4" "$_be/bridge" "$5" "$_be/handle" "$3" \
		"$_be/script" /etc/xen/scripts/vif-bridge "$_be/type" vif "$_be/hotplug-status" ""
	xenstore-write "$_fe/handle" "$3" "$_fe/mac" "$4" "$_fe/trusted" 1
	_pvk_dev_start
	_pvk_dev_record net "$@"
	pvk_net_hotplug "$@"
}

# pvk_net_hotplug FTYPE BTYPE ID: wait for the backend's InitWait and its interface, then run
# vif-bridge online (it bridges the interface and writes hotplug-status "connected")
pvk_net_hotplug() {
	_pvk_dev_nodes "$@" || return 1
	_if=$(_pvk_vif_name "$2" "$_d" "$3")
	pvk_wait 30 sh -c "[ \"\$(xenstore-read $_be/state 2> /dev/null)\" = 2 ] && [ -e /sys/class/net/$_if ]" \
		|| { echo "backend $_be: no InitWait or no $_if"; return 1; }
	XENBUS_PATH=$_be vif=$_if /etc/xen/scripts/vif-bridge online || {
		echo "vif-bridge online failed for $_if"; return 1; }
	echo "attached $1/$3 <-> $2 backend $_be ($_if on $(xenstore-read "$_be/bridge"))"
}

# pvk_net_detach FTYPE BTYPE ID: pvk_dev_detach, then vif-bridge offline as libxl runs it
pvk_net_detach() {
	_pvk_dev_nodes "$@" || return 1
	_if=$(_pvk_vif_name "$2" "$_d" "$3")
	_bridge=$(xenstore-read "$_be/bridge" 2> /dev/null)
	pvk_dev_detach "$@"
	if [ -n "$_bridge" ] && [ -e "/sys/class/net/$_if" ]; then
		ip link set "$_if" nomaster 2> /dev/null
		ip link set "$_if" down 2> /dev/null
	fi
	return 0
}

# pvk_wait_connected FTYPE BTYPE ID [SECONDS]: both ends of a device reach Connected (4)
pvk_wait_connected() {
	_pvk_dev_nodes "$@" || return 1
	pvk_wait "${4:-60}" sh -c "[ \"\$(xenstore-read $_fe/state 2> /dev/null)\" = 4 ] && [ \"\$(xenstore-read $_be/state 2> /dev/null)\" = 4 ]" || {
		echo "$1/$3: frontend state $(xenstore-read "$_fe/state" 2> /dev/null), backend state $(xenstore-read "$_be/state" 2> /dev/null)"
		return 1
	}
}

# dom0: pvk_devs_forget OLD_DOMID: the backends of the devices pvk made for a domain that is
# gone (saved, migrated away, shut down) are removed, their loop devices released
pvk_devs_forget() {
	[ -f $PVK_DEVS ] || return 0
	while read -r _k _ft _bt _id _rest <&3; do
		_be=/local/domain/0/backend/$_bt/$1/$_id
		_params=$(xenstore-read "$_be/params" 2> /dev/null) || _params=
		xenstore-rm "$_be" 2> /dev/null || true
		# still held by the backend: detached once it lets go (autoclear)
		case $_params in /dev/loop*) losetup -d "$_params" 2> /dev/null || true ;; esac
		[ -n "$(xenstore-list "/local/domain/0/backend/$_bt/$1" 2> /dev/null)" ] \
			|| xenstore-rm "/local/domain/0/backend/$_bt/$1" 2> /dev/null || true
		echo "forgot $_ft/$_id of domain $1 ($_bt backend)"
	done 3< $PVK_DEVS
	return 0
}

# dom0: pvk_reattach: the devices pvk made, for the domU's current domid
pvk_reattach() {
	[ -f $PVK_DEVS ] || return 0
	cp $PVK_DEVS $PVK_DEVS.replay
	while read -r _k _ft _bt _id _a1 _a2 <&3; do
		case $_k in
		blk) pvk_blk_attach "$_ft" "$_bt" "$_id" "$_a1" "$_a2" || return 1 ;;
		net) pvk_net_attach "$_ft" "$_bt" "$_id" "$_a1" "$_a2" || return 1 ;;
		esac
	done 3< $PVK_DEVS.replay
	rm -f $PVK_DEVS.replay
}

# dom0: pvk_moved OLD_DOMID: the domU runs paused under a new domid (xl restore -p, xl
# migrate -p): the old domain's pvk devices go, the new one gets them, then it runs
pvk_moved() {
	pvk_devs_forget "$1"
	pvk_reattach || return 1
	xl unpause "$PVK_DOMU"
}

# dom0: pvk_migrate [--debug]: a localhost live migration of the domU, no ssh: with `-s ''`
# xl runs the receiver command under sh -c with the stream on its stdin and stdout. The
# receiver (-e: it does not stay to watch the domain; -p: it leaves the domain paused) takes
# over the name; dom0 gives the new domain the devices pvk made (pvk_moved) and unpauses it.
# Both domains exist at once: xl's vifs of both sit on the bridge with the same MAC.
# xenconsoled names a console log after the domain's name when it connects the console, so
# the incoming domain's log is linked to the domU's. With --debug the sender sends every page
# again at the end for the receiver to compare ("verify pfn ... failed" when a page changed
# after the domain was suspended, e.g. a backend wrote it). The stream passes through dd on
# its way in, which counts its bytes. Appends "N OLD NEW T0 T1 T2 BYTES" (dom0 clock: start,
# xl done, devices and unpause done; the stream's size) to /tmp/pvk-migrations; xl's output
# in /tmp/pvk-migrate.N.log
pvk_migrate() {
	_old=$(pvk_domid) || return 1
	_n=$(($(cat /tmp/pvk-migrations 2> /dev/null | wc -l) + 1))
	_send=
	_recv="dd bs=64k 2> /tmp/pvk-migrate.$_n.dd | xl migrate-receive -e -p"
	[ "$1" = --debug ] && { _send=--debug; _recv="$_recv -d"; }
	ln -sf "guest-$PVK_DOMU.log" "/var/log/xen/console/guest-$PVK_DOMU--incoming.log"
	_t0=$(pvk_uptime)
	# shellcheck disable=SC2086
	xl migrate $_send -s '' "$PVK_DOMU" "$_recv" > /tmp/pvk-migrate.$_n.log 2>&1 || {
		tail -n 20 /tmp/pvk-migrate.$_n.log
		echo "xl migrate failed (migration $_n, domid $_old)"
		return 1
	}
	_t1=$(pvk_uptime)
	pvk_moved "$_old" > /tmp/pvk-moved.$_n.log 2>&1 || { cat /tmp/pvk-moved.$_n.log; return 1; }
	_t2=$(pvk_uptime)
	_bytes=$(awk '/bytes/ { print $1 }' /tmp/pvk-migrate.$_n.dd)
	echo "$_n $_old $(pvk_domid) $_t0 $_t1 $_t2 ${_bytes:-0}" >> /tmp/pvk-migrations
	info "migration $_n: domid $_old -> $(pvk_domid); xl migrate t=$_t0..$_t1, devices and unpause ..$_t2 s"
}

# dom0: seconds since boot (the clock of the guest programs' CLOCK_MONOTONIC stamps)
pvk_uptime() {
	cut -d' ' -f1 /proc/uptime
}

# dom0: pvk_bridge NAME ADDR/PREFIX: a bridge with an address, up
pvk_bridge() {
	ip link add "$1" type bridge && ip addr add "$2" dev "$1" && ip link set "$1" up
}

# dom0 serves /tmp/www (busybox httpd on port 8080, started by pvk_serve); the domU learns
# that something happened in dom0 from signal files there
pvk_serve() {
	mkdir -p /tmp/www/signal
	busybox httpd -p 8080 -h /tmp/www
}

# dom0: pvk_signal NAME: tell the domU (it waits with pvk_wait_signal)
pvk_signal() {
	touch "/tmp/www/signal/$1"
}

# domU: pvk_wait_signal NAME SECONDS DOM0_IP
pvk_wait_signal() {
	pvk_wait "$2" wget -q -O /dev/null "http://$3:8080/signal/$1"
}

# domU: the child of a xenbus device (e.g. vif-2, pvnet-1, vbd-51712) in a sysfs class
# directory (/sys/block, /sys/class/net)
_pvk_xenbus_child() {
	for _b in "$1"/*; do
		_x=$(readlink "$_b/device" 2> /dev/null) || continue
		[ "${_x##*/}" = "$2" ] && { echo "${_b##*/}"; return 0; }
	done
	return 1
}

# pvk_blk_trust FTYPE ID 0|1: the frontend's `trusted` node (0: it bounces data through its own
# pages, as xen-blkfront and pvblk-front do for an untrusted backend); before pvk_blk_attach
pvk_blk_trust() {
	_pvk_dev_nodes "$1" pvblk "$2" || return 1
	xenstore-write "$_fe/trusted" "$3"
	xenstore-chmod "$_fe/trusted" n0 "r$_d"
}

# dom0: what pvblk-back devices hold now, and the system-wide counts that must agree with it:
# event channel IRQs named pvblk-back, pvblk kthreads, allocated file handles
pvk_blk_resources() {
	_r=/sys/kernel/debug/pvblk-back/resources
	[ -r $_r ] || { echo "no $_r"; return 1; }
	echo "$(tr '\n' ' ' < $_r)irq_lines $(grep -c pvblk-back /proc/interrupts)" \
		"kthreads $(ps -e -o comm= | grep -c '^pvblk\.')"
}

# dom0: CPU time counters (USER+NICE+SYSTEM+IRQ+SOFTIRQ busy, total) from /proc/stat
pvk_cpu_ticks() {
	awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

# domU: the block device (e.g. xvda, pvblk0) of a xenbus device (e.g. vbd-51712, pvblk-1)
pvk_disk() {
	_pvk_xenbus_child /sys/block "$1"
}

# domU: the network interface (e.g. eth1) of a xenbus device (e.g. vif-2, pvnet-1)
pvk_nic() {
	_pvk_xenbus_child /sys/class/net "$1"
}

# domU: pvk_nic_up XENBUS_DEV ADDR/PREFIX [SECONDS]: wait for the device's interface, give it
# the address, bring it up and wait for its carrier (the backend connected)
pvk_nic_up() {
	pvk_wait "${3:-60}" sh -c ". /pvkit/lib.sh; pvk_nic $1" || return 1
	_nic=$(pvk_nic "$1")
	ip addr flush dev "$_nic"
	ip addr add "$2" dev "$_nic" || return 1
	ip link set "$_nic" up || return 1
	pvk_wait "${3:-60}" sh -c "[ \"\$(cat /sys/class/net/$_nic/carrier 2> /dev/null)\" = 1 ]" || {
		echo "$1 ($_nic): no carrier"; return 1; }
	echo "info $1 is $_nic ($(cat "/sys/class/net/$_nic/address")), $2"
}

# domU: sha256 of a whole block device, read with O_DIRECT (not from the page cache)
pvk_blk_sha() {
	dd if="/dev/$1" bs=1M iflag=direct 2> /dev/null | sha256sum | cut -d' ' -f1
}

# domU: data integrity on /dev/DEV with fio: random offsets and sizes (512 B..1 MiB) written
# and verified (crc32c) with O_DIRECT in the first 16 MiB, and written buffered with an fsync
# (a flush) every 4 writes in the next 16 MiB, then verified from the device after dropping
# the page cache; SEED makes each device's data different
pvk_blk_verify() {
	_common="--filename=/dev/$1 --ioengine=psync --bsrange=512-1M --size=16M --randseed=$2 \
		--verify=crc32c --verify_fatal=1 --output-format=terse --terse-version=3"
	# shellcheck disable=SC2086
	pvk_tool fio --name=direct --rw=randwrite --direct=1 $_common > /dev/null || {
		echo "O_DIRECT write+verify failed on $1"; return 1; }
	# shellcheck disable=SC2086
	pvk_tool fio --name=buffered --rw=randwrite --direct=0 --fsync=4 --offset=16M \
		--do_verify=0 $_common > /dev/null || { echo "buffered write failed on $1"; return 1; }
	echo 3 > /proc/sys/vm/drop_caches
	# shellcheck disable=SC2086
	pvk_tool fio --name=buffered --rw=randwrite --direct=1 --offset=16M --verify_only \
		$_common > /dev/null || { echo "verify after buffered write failed on $1"; return 1; }
	echo "fio verified $1: 16 MiB O_DIRECT + 16 MiB buffered with flushes"
}

# --- I/O in flight across a save, restore or migration (both guests) ---
# Block writers (pvblkpat) and paced TCP streams (pvstream) run in the background until
# pvk_io_stop; then every block and every byte is verified. Their output is in $PVK_IODIR.
PVK_IODIR=/tmp/pvk-io

# pvk_blkpat_start XENBUS_DEV SEED: pass after pass of known data over the disk, 16 writes of
# 256 KiB in flight, each pass read back and verified before the next, a pause of
# $PVK_BLKPAT_PAUSE_MS (default 100) between passes
pvk_blkpat_start() {
	mkdir -p $PVK_IODIR
	_dev=$(pvk_disk "$1") || { echo "no disk for $1"; return 1; }
	echo "$2" > $PVK_IODIR/blk.$1.seed
	setsid pvblkpat write "/dev/$_dev" "$2" $PVK_IODIR/stop 256 16 "${PVK_BLKPAT_PAUSE_MS:-100}" \
		> $PVK_IODIR/blk.$1 2>&1 &
	info "$1 ($_dev): writer started, seed $2"
}

# pvk_stream_recv NAME PORT: a receiver that checks every byte of one TCP stream
pvk_stream_recv() {
	mkdir -p $PVK_IODIR
	setsid pvstream recv "$2" 900 > $PVK_IODIR/rx.$1 2>&1 &
}

# pvk_stream_send NAME IP PORT: a paced stream (32 KiB every 20 ms) until pvk_io_stop; its
# pid in $PVK_IODIR/tx.NAME.pid
pvk_stream_send() {
	mkdir -p $PVK_IODIR
	setsid pvstream send "$2" "$3" $PVK_IODIR/stop 32 20 > $PVK_IODIR/tx.$1 2>&1 &
	echo $! > $PVK_IODIR/tx.$1.pid
}

# pvk_io_stop: the writers finish their pass, the senders close their streams
pvk_io_stop() {
	mkdir -p $PVK_IODIR
	touch $PVK_IODIR/stop
}

# _pvk_io_result FILE WORD SECONDS: wait for the result line a program prints when it ends
_pvk_io_result() {
	pvk_wait "$3" grep -q "^$2 " "$1" || { echo "no result in $1:"; cat "$1"; return 1; }
}

# pvk_blkpat_check XENBUS_DEV: the writer verified each of its passes as it went (a block
# that lost a write stopped it); its last pass read back through the frontend and verified
# block by block; metrics NAME.passes, NAME.max_stall_ms (the longest time no request
# completed, guest clock), NAME.bytes_verified; tells dom0 `blkpat.NAME` "SEED PASS" (for
# pvk_blkpat_verify of the backing file)
pvk_blkpat_check() {
	_f=$PVK_IODIR/blk.$1
	_pvk_io_result "$_f" passes 120 || return 1
	_seed=$(cat "$_f.seed")
	_pass=$(awk '$1 == "passes" { print $2 }' "$_f")
	pvk_tell "blkpat.$1" "$_seed $_pass"
	sed -n 's/^stall \([0-9]*\) at \(.*\)/info '"$1"': nothing completed for \1 ms from t=\2 s/p' "$_f"
	sed -n 's/^\(pass .*\)/info '"$1"': writer: \1/p' "$_f"
	awk -v n="$1" '$1 == "passes" { print "metric " n ".passes " $2 " passes"
		print "metric " n ".max_stall_ms " $6 " ms" }' "$_f"
	_bc_rc=0
	grep -q '^passes .* bad_blocks 0$' "$_f" || _bc_rc=1
	pvk_blkpat_verify "/dev/$(pvk_disk "$1")" "$1" "$_seed" "$_pass" || _bc_rc=1
	return $_bc_rc
}

# pvk_blkpat_verify DEV|FILE NAME SEED PASS: every block holds pass PASS's data
pvk_blkpat_verify() {
	_out=$(pvblkpat verify "$1" "$3" "$4")
	_bv_rc=$?
	echo "$_out" | sed "s/^/info $2: /"
	echo "$_out" | awk -v n="$2" '/^verified/ { print "metric " n ".bytes_verified " $2 " bytes" }'
	return $_bv_rc
}

# pvk_stream_check NAME: the receiver saw the whole stream, every byte right; metrics
# stream.NAME.bytes and stream.NAME.max_gap_ms (the longest time nothing arrived, in the
# receiver's clock), and each gap over 100 ms as info
pvk_stream_check() {
	_f=$PVK_IODIR/rx.$1
	_pvk_io_result "$_f" bytes 180 || return 1
	sed -n 's/^gap \([0-9]*\) at \(.*\)/info stream '"$1"': nothing for \1 ms from t=\2 s/p' "$_f"
	awk -v n="$1" '$1 == "bytes" { print "metric stream." n ".bytes " $2 " bytes"
		print "metric stream." n ".max_gap_ms " $6 " ms" }' "$_f"
	grep -q '^bytes [1-9][0-9]* bad 0 ' "$_f" || { echo "stream $1:"; cat "$_f"; return 1; }
}

# --- the lifecycle rig (save-restore, migrate): I/O in flight on all four frontends ---
# Disks of 8 MiB, each written by pvblkpat: xvda (vbd-51712: xen-blkfront + xen-blkback, from
# the xl config), pvblk/1 (pvblk-front + pvblk-back), xvdb (vbd-51728: xen-blkfront +
# pvblk-back). Networks, a pvstream each way on each: vif/0 (xen-netfront + xen-netback, from
# the xl config, on pvbrA, 192.0.2.0/24) and pvnet/1 (pvnet-front + pvnet-back, on pvbrB,
# 198.51.100.0/24). The scenario's [domU] config has the xl devices:
#   disk = [ 'format=raw, vdev=xvda, access=rw, target=/tmp/xvda.img' ]
#   vif = [ 'bridge=pvbrA, mac=00:16:3e:00:0d:01' ]
# XENBUS_DEV:IMAGE:SEED
PVK_RIG_DISKS="vbd-51712:xvda:11 pvblk-1:pvblk1:12 vbd-51728:xvdb:13"

# dom0, the [domU] setup: backends (pvblk-back with test hooks and a small buffer, so that
# delay_io leaves requests on its rings), images, bridges, the signal server, dom0's receivers
pvk_rig_setup() {
	modprobe xen-blkback && modprobe xen-netback || return 1
	insmod /pvkit/modules/pvblk-back.ko test_hooks=1 max_buffer_pages=512 || return 1
	insmod /pvkit/modules/pvnet-back.ko || return 1
	for _x in $PVK_RIG_DISKS; do
		_img=${_x#*:}
		dd if=/dev/zero of="/tmp/${_img%%:*}.img" bs=1M count=8 2> /dev/null || return 1
	done
	pvk_bridge pvbrA 192.0.2.1/24 && pvk_bridge pvbrB 198.51.100.1/24 || return 1
	pvk_serve
	pvk_stream_recv A 7101
	pvk_stream_recv B 7102
}

# dom0: the devices pvk makes, once the domU has loaded its frontends (pvk_rig_up)
pvk_rig_attach() {
	pvk_wait_value front_loaded 120 > /dev/null || return 1
	pvk_blk_attach pvblk pvblk 1 /tmp/pvblk1.img || return 1
	pvk_blk_attach vbd pvblk 51728 /tmp/xvdb.img || return 1
	pvk_net_attach pvnet pvnet 1 00:16:3e:00:0d:02 pvbrB || return 1
	pvk_rig_connected 60
}

# dom0: pvk_rig_connected SECONDS: all five devices of the domU connected
pvk_rig_connected() {
	for _x in "pvblk pvblk 1" "vbd pvblk 51728" "pvnet pvnet 1" "vbd vbd 51712" "vif vif 0"; do
		# shellcheck disable=SC2086
		pvk_wait_connected $_x "$1" || return 1
	done
}

# dom0: pvk_rig_delay SECONDS: pvblk-back answers late (test hook delay_io), so requests of
# pvblk/1 and xvdb stay on the rings over a suspend
pvk_rig_delay() {
	_d=$(pvk_domid) || return 1
	for _id in 1 51728; do
		echo "delay_io $1" > "/sys/kernel/debug/pvblk-back/$_d-$_id/inject" || return 1
	done
}

# dom0: the streams to the domU, once its receivers run
pvk_rig_streams_start() {
	pvk_wait_value io_running 180 > /dev/null || return 1
	pvk_stream_send A 192.0.2.2 7201
	pvk_stream_send B 198.51.100.2 7202
}

# dom0: pvk_rig_streams_stop SECONDS: when the domU stops its I/O, dom0 stops its streams
pvk_rig_streams_stop() {
	pvk_wait_value io_stopping "$1" > /dev/null || return 1
	pvk_io_stop
	for _s in A B; do
		_pvk_io_result $PVK_IODIR/tx.$_s bytes 120 || return 1
		info "stream $_s to the domU: $(cat $PVK_IODIR/tx.$_s)"
	done
}

# dom0, after: the backing files hold the last pass the domU wrote; dom0's receivers had
# every byte of the domU's streams
pvk_rig_verify_dom0() {
	_v0_rc=0
	for _x in $PVK_RIG_DISKS; do
		_dev=${_x%%:*}
		_img=${_x#*:}
		_img=${_img%%:*}
		_told=$(pvk_domu_value "blkpat.$_dev")
		[ -n "$_told" ] || { echo "the domU did not tell the pass of $_dev"; _v0_rc=1; continue; }
		# shellcheck disable=SC2086
		pvk_blkpat_verify "/tmp/$_img.img" "$_img.img" $_told || _v0_rc=1
	done
	pvk_stream_check A || _v0_rc=1
	pvk_stream_check B || _v0_rc=1
	return $_v0_rc
}

# dom0: pvk_rig_left_nothing OLD_DOMID: no backend node, device, interface, event channel
# interrupt or pvblk-back state of the old domain is left (pvblk-back frees a device once its
# delayed requests are done), and no zombie domain (grants still mapped)
pvk_rig_left_nothing() {
	_b=/local/domain/0/backend
	pvk_wait 90 sh -c "[ -z \"\$(xenstore-list $_b/vbd/$1 $_b/pvblk/$1 $_b/vif/$1 $_b/pvnet/$1 2> /dev/null)\" ]" \
		|| { xenstore-ls $_b; return 1; }
	pvk_wait 60 sh -c "! ls /sys/kernel/debug/pvblk-back | grep -q '^$1-'" \
		|| { ls /sys/kernel/debug/pvblk-back; return 1; }
	! ls /sys/class/net | grep -E "^(vif|pvnetb)$1\." || return 1
	! ls /sys/bus/xen-backend/devices | grep -E -- "-$1-" || return 1
	! grep -E "(vif|pvnetb)$1\." /proc/interrupts || return 1
	# a page of the domain still mapped in dom0 keeps it as a zombie, named (null)
	pvk_wait 60 sh -c "! xl list | grep -q '^(null)'" || { xl list; return 1; }
	info "nothing of domain $1 left in dom0; pvblk-back holds: $(pvk_blk_resources)"
}

# domU: the frontends (pvblk-front with the module parameters in $PVK_PVBLK_FRONT_ARGS), the
# disks and networks up
pvk_rig_up() {
	# shellcheck disable=SC2086
	insmod /pvkit/modules/pvblk-front.ko ${PVK_PVBLK_FRONT_ARGS:-} || return 1
	insmod /pvkit/modules/pvnet-front.ko || return 1
	pvk_tell front_loaded 1
	pvk_wait 150 sh -c '. /pvkit/lib.sh; pvk_disk vbd-51712 && pvk_disk pvblk-1 && pvk_disk vbd-51728' \
		|| return 1
	pvk_nic_up vif-0 192.0.2.2/24 150 && pvk_nic_up pvnet-1 198.51.100.2/24 150 || return 1
	pvk_wait 30 ping -c 1 -W 2 192.0.2.1 && pvk_wait 30 ping -c 1 -W 2 198.51.100.1
}

# domU: receivers, writers and senders start; dom0 is told (it starts its senders)
pvk_rig_io_start() {
	pvk_stream_recv A 7201
	pvk_stream_recv B 7202
	for _x in $PVK_RIG_DISKS; do
		pvk_blkpat_start "${_x%%:*}" "${_x##*:}" || return 1
	done
	pvk_stream_send A 192.0.2.1 7101
	pvk_stream_send B 198.51.100.1 7102
	pvk_tell io_running 1
}

# domU: the writers finish their pass, the streams both ways end
pvk_rig_io_stop() {
	pvk_io_stop
	pvk_tell io_stopping 1
	for _s in A B; do
		_pvk_io_result $PVK_IODIR/tx.$_s bytes 120 || return 1
		info "stream $_s to dom0: $(cat $PVK_IODIR/tx.$_s)"
	done
}

# domU: every disk read back and verified block by block, every byte of dom0's streams right
pvk_rig_verify_domU() {
	_vu_rc=0
	for _x in $PVK_RIG_DISKS; do
		pvk_blkpat_check "${_x%%:*}" || _vu_rc=1
	done
	pvk_stream_check A || _vu_rc=1
	pvk_stream_check B || _vu_rc=1
	return $_vu_rc
}

# domU: after a reboot (pvk_domu_next_boot), the rig again: the frontends load, every device
# connects, the first 4 MiB of both disks read back (what pvk_rig_mark wrote must be there),
# both networks ping dom0; tells dom0 `again` "TOKEN SHA_XVDA SHA_PVBLK PINGS" (TOKEN new
# each boot)
pvk_rig_again() {
	_tok=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
	_pings=0
	pvk_rig_up > /tmp/again.log 2>&1 && _pings=2
	pvk_tell again "$_tok $(pvk_rig_sha vbd-51712) $(pvk_rig_sha pvblk-1) $_pings"
}

# domU: pvk_rig_sha XENBUS_DEV: sha256 of the disk's first 4 MiB
pvk_rig_sha() {
	dd if="/dev/$(pvk_disk "$1")" bs=1M count=4 iflag=direct 2> /dev/null | sha256sum | cut -d' ' -f1
}

# domU: random data on the first 4 MiB of xvda and pvblk-1; tells dom0 `marked` "SHA SHA"
pvk_rig_mark() {
	for _dev in vbd-51712 pvblk-1; do
		dd if=/dev/urandom of="/dev/$(pvk_disk $_dev)" bs=1M count=4 oflag=direct 2> /dev/null || return 1
	done
	pvk_tell marked "$(pvk_rig_sha vbd-51712) $(pvk_rig_sha pvblk-1)"
}

# dom0: pvk_domu_next_boot FILE: from its next boot on (xl reboot, xl create) the domU runs
# FILE as its /pvkit/domU.sh instead of the scenario's tests (they ran once: a second KTAP
# document would not be parsed): a cpio appended to its initramfs (the kernel unpacks the
# parts in order, a later file wins)
pvk_domu_next_boot() {
	_r=/tmp/pvk-next-boot
	rm -rf $_r
	mkdir -p $_r/pvkit
	cp "$1" $_r/pvkit/domU.sh
	(cd $_r && find pvkit | busybox cpio -o -H newc 2> /dev/null | gzip) >> /pvkit/domU/initrd
	# zeros last, so that libxc loads the file as it is (images.INITRD_TAIL)
	head -c 512 /dev/zero >> /pvkit/domU/initrd
}

# dom0: pvk_domu_new_boot OLD_DOMID SECONDS: wait until the domU runs under a new domid, then
# give it the devices pvk made
pvk_domu_new_boot() {
	pvk_wait "$2" sh -c "_d=\$(xl domid $PVK_DOMU 2> /dev/null) && [ \"\$_d\" != $1 ]" || return 1
	pvk_devs_forget "$1"
	pvk_reattach
}

# --- resize (xl mem-set, xl vcpu-set) ---

# dom0: the domU's memory in MiB as Xen counts it (`xl list`: the pages it holds)
pvk_domu_mem() {
	xl list "$PVK_DOMU" | awk 'NR == 2 { print $3 }'
}

# dom0: pvk_mem_set MIB SECONDS: `xl mem-set`, then wait until the domain holds MIB (its
# balloon driver gave pages back or took them); metric mem_set_MIB_s
pvk_mem_set() {
	_from=$(pvk_domu_mem)
	_t0=$(pvk_uptime)
	xl mem-set "$PVK_DOMU" "${1}m" || return 1
	pvk_wait "$2" sh -c ". /pvkit/lib.sh; [ \"\$(pvk_domu_mem)\" = $1 ]" || {
		echo "memory still $(pvk_domu_mem) MiB, target $1 MiB"; return 1; }
	_t1=$(pvk_uptime)
	info "xl mem-set ${1}m: $_from -> $1 MiB in $(echo "$_t0 $_t1" | awk '{ print $2 - $1 }') s"
	metric "mem_set_${1}_s" "$(echo "$_t0 $_t1" | awk '{ print $2 - $1 }')" s
}

# dom0: pvk_vcpu_state N: "online" when Xen runs the domU's vCPU N (`xl vcpu-list` gives it a
# physical CPU), else "offline"
pvk_vcpu_state() {
	xl vcpu-list "$PVK_DOMU" | awk -v n="$1" 'NR > 1 && $3 == n {
		print ($4 == "-" ? "offline" : "online") }'
}

# domU: pvk_mem_start MIB: pvmem holds MIB of checked memory until pvk_io_stop, and the
# balloon's current_kb is sampled twice a second into $PVK_IODIR/current_kb
pvk_mem_start() {
	mkdir -p $PVK_IODIR
	setsid pvmem "$1" $PVK_IODIR/stop > $PVK_IODIR/mem 2>&1 &
	pvk_wait 60 grep -q '^ready' $PVK_IODIR/mem || { cat $PVK_IODIR/mem; return 1; }
	_b=/sys/devices/system/xen_memory/xen_memory0/info/current_kb
	[ -r $_b ] || { echo "no balloon driver ($_b)"; return 1; }
	setsid sh -c "while [ ! -e $PVK_IODIR/stop ]; do cat $_b; sleep 0.5; done" \
		> $PVK_IODIR/current_kb 2>&1 &
	info "pvmem holds $1 MiB; balloon at $(($(cat $_b) / 1024)) MiB"
}

# domU: pvk_balloon_check LOW HIGH FINAL: the balloon went down to LOW MiB and up to HIGH MiB
# and now holds FINAL, its target (sampled by pvk_mem_start); metrics balloon_min_mib and
# balloon_max_mib
pvk_balloon_check() {
	_b=/sys/devices/system/xen_memory/xen_memory0
	_min=$(sort -n $PVK_IODIR/current_kb | head -n 1)
	_max=$(sort -n $PVK_IODIR/current_kb | tail -n 1)
	metric balloon_min_mib $((_min / 1024)) MiB
	metric balloon_max_mib $((_max / 1024)) MiB
	info "balloon: $(wc -l < $PVK_IODIR/current_kb) samples, $((_min / 1024))..$((_max / 1024)) MiB, now $(($(cat $_b/info/current_kb) / 1024)) MiB of target $(($(cat $_b/target_kb) / 1024)) MiB"
	[ $((_min / 1024)) -le "$1" ] || { echo "the balloon never went down to $1 MiB"; return 1; }
	[ $((_max / 1024)) -ge "$2" ] || { echo "the balloon never went up to $2 MiB"; return 1; }
	[ "$(($(cat $_b/info/current_kb) / 1024))" = "$3" ] && [ "$(($(cat $_b/target_kb) / 1024))" = "$3" ]
}

# domU: pvmem ended with every page right (after pvk_io_stop); metrics mem.passes and
# mem.max_pass_ms
pvk_mem_check() {
	_pvk_io_result $PVK_IODIR/mem passes 120 || return 1
	awk '$1 == "passes" { print "metric mem.passes " $2 " passes"
		print "metric mem.max_pass_ms " $8 " ms"
		print "info pvmem: " $0 }' $PVK_IODIR/mem
	grep -q '^passes [1-9][0-9]* .* bad_pages 0 ' $PVK_IODIR/mem || { cat $PVK_IODIR/mem; return 1; }
}

# domU: busy time of cpuN in /proc/stat, in ticks of 10 ms (USER_HZ), empty when offline
_pvk_cpu_busy() {
	awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 }' /proc/stat
}

# domU: pvk_spin_check CPU SECONDS: two busy loops for SECONDS; CPU's busy time in /proc/stat
# must grow by a quarter of that at least (it runs them); metric cpuCPU_busy_s
pvk_spin_check() {
	_before=$(_pvk_cpu_busy "$1")
	[ -n "$_before" ] || { echo "cpu$1 is not online"; return 1; }
	sh -c 'while :; do :; done' &
	_s1=$!
	sh -c 'while :; do :; done' &
	_s2=$!
	sleep "$2"
	_on="$(awk '{ print $39 }' /proc/$_s1/stat) $(awk '{ print $39 }' /proc/$_s2/stat)"
	kill $_s1 $_s2
	_busy=$(($(_pvk_cpu_busy "$1") - _before))
	metric "cpu$1_busy_s" "$(echo "$_busy" | awk '{ print $1 / 100 }')" s
	info "two busy loops for $2 s: cpu$1 busy $(echo "$_busy" | awk '{ print $1 / 100 }') s, the loops last ran on CPUs $_on; online: $(cat /sys/devices/system/cpu/online)"
	[ "$_busy" -ge $(($2 * 25)) ]
}
