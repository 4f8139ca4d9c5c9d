#!/bin/sh
# pvkit dom0 init: bring up the Xen toolstack, then run the scenario from the payload disk.
export PATH=/usr/lib/xen-4.17/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2> /dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug 2> /dev/null
mount -t xenfs xenfs /proc/xen
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
hostname dom0
echo "PVKIT-STAGE dom0-userspace"
mkdir -p /run/xen /run/xenstored /var/log/xen/console /var/lib/xen /var/lib/xenstored
ip link set lo up
for m in $(cat /etc/pvkit/modules 2> /dev/null); do
	modprobe "$m" || echo "PVKIT-FATAL cannot load module $m"
done
xenstored --pid-file /run/xenstored.pid || echo "PVKIT-FATAL xenstored did not start"
xenconsoled --log=guest --log-dir=/var/log/xen/console --timestamp=none \
	|| echo "PVKIT-FATAL xenconsoled did not start"
xen-init-dom0 > /tmp/xen-init-dom0.log 2>&1 || {
	cat /tmp/xen-init-dom0.log
	echo "PVKIT-FATAL xen-init-dom0 failed"
}
echo "PVKIT-STAGE toolstack-up"
mkdir -p /pvkit
if tar -xf /dev/vdb -C /pvkit 2> /tmp/payload.err; then
	sh /pvkit/dom0.sh
else
	cat /tmp/payload.err
	echo "PVKIT-FATAL cannot read the scenario payload from /dev/vdb"
fi
echo "PVKIT-STAGE shutdown"
sync
busybox poweroff -f
# init must not exit: wait for the hypervisor to stop the machine
while true; do
	sleep 1000
done
