#!/bin/bash
# Second stage of the boot test (tests/boot.rs), run by `unshare` inside new
# pid, mount, uts, ipc, net and cgroup namespaces, on the pty that `script`
# made: builds a root from an overlay of the host's / and execs systemd as
# PID 1 of the pid namespace.
#
#   stage2.sh WORK
#
# WORK holds `ovl/upper` and `ovl/work` (kept between boots, so a reboot
# keeps what the last boot installed) and `ovl/merged`; this stage writes
# its host pid (the future PID 1) to WORK/pid. Nothing is written to the
# host's root.
set -eu
work=$1
root=$work/ovl/merged
console=$(tty)
read -r host_pid _ < /proc/self/stat
echo "$host_pid" > "$work/pid"

mount -t overlay overlay \
    -o "lowerdir=/,upperdir=$work/ovl/upper,workdir=$work/ovl/work" "$root"

# Kernel interfaces: a proc of the new pid namespace with /proc/sys read
# only, sysfs read only, and a cgroup2 tree rooted at the test's cgroup.
mount -t proc proc "$root/proc"
mount --bind "$root/proc/sys" "$root/proc/sys"
mount -o remount,bind,ro "$root/proc/sys"
if [ -e "$root/proc/sysrq-trigger" ]; then
    mount --bind -o ro "$root/proc/sysrq-trigger" "$root/proc/sysrq-trigger"
fi
mount -t sysfs -o ro sysfs "$root/sys"
mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup"

# A small /dev: the harmless host devices, the pty as the console
# (systemd wants one), and a devpts instance of its own.
mount -t tmpfs -o mode=755 tmpfs "$root/dev"
for dev in null zero full random urandom tty; do
    touch "$root/dev/$dev"
    mount --bind "/dev/$dev" "$root/dev/$dev"
done
touch "$root/dev/console"
mount --bind "$console" "$root/dev/console"
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs tmpfs "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"

cd "$root"
mkdir -p oldroot
pivot_root . oldroot
cd /
umount -l /oldroot
rmdir /oldroot || true

export container=other
exec /lib/systemd/systemd --system --unit=multi-user.target </dev/console >/dev/console 2>&1
