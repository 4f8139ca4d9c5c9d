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

# pvk_dev_detach FTYPE BTYPE ID: hot-unplug as `xl block-detach`/`network-detach` do: the
# backend goes offline and Closing, both ends close, then the nodes are removed
pvk_dev_detach() {
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
