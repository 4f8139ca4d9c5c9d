#!/bin/busybox sh
# pvkit domU init (also the native baseline): run the scenario's domU tests, print KTAP.
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin /run
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2> /dev/null
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug 2> /dev/null
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
hostname domU
ip link set lo up
echo "PVKIT-STAGE domU-userspace"
for m in $(cat /etc/pvkit/modules 2> /dev/null); do
	modprobe "$m" || echo "# cannot load module $m"
done
sh /pvkit/domU.sh
echo "PVKIT-STAGE domU-done"
if grep -q 'pvkit.mode=native' /proc/cmdline; then
	echo "PVKIT-DONE"
	sync
	poweroff -f
fi
# the toolstack's reboot and poweroff (xl reboot, xl shutdown) reach this init through the
# kernel's orderly_reboot/orderly_poweroff, which run /sbin/reboot or /sbin/poweroff: busybox
# signals init (TERM, USR2); a shell as init would ignore them
trap 'sync; reboot -f' TERM
trap 'sync; poweroff -f' USR2
while true; do
	sleep 1000 &
	wait $!
done
