#!/usr/bin/env bash
# Builds the virtual device's disk images (vm/doc.go) from Debian's
# packages only, without loop mounts: mmdebstrap into a folder, the
# gpio-sim module built for the image's kernel, the overlay in
# vm/image/overlay, then mke2fs -d. Two images of the one system:
#   root.img  the root file system alone (the device tests give the VM its
#             boot partition as a second disk), cloud-init disabled;
#   card.img  a card as Raspberry Pi OS ships it: an MBR, partition 1 the
#             FAT32 boot partition (label bootfs, with cmdline.txt),
#             partition 2 the root file system, cloud-init on. The result is cached in $IOTAGENT_VM_CACHE (default
# ~/.cache/iotagent-vm) under a key of this script, the overlay, the
# module's sources and the package list; a second run with the same inputs
# only prints the directory. Prints the image directory (root.img,
# card.img, vmlinuz, initrd.img, kernel-version) on stdout, its progress and timings
# on stderr.
#
# Needs, as root: mmdebstrap, e2fsprogs, dosfstools, mtools, fdisk, and for the kernel module
# linux-source-6.1 and linux-headers-<the image's kernel> (Debian's
# linux-headers-amd64 installs the current one). .ci/run installs them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${IOTAGENT_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iotagent-vm}
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# What a Raspberry Pi OS Lite system has that the agent meets: systemd with
# udev, dbus and logind, polkit (the reboot job), the TPM's udev rules
# (group tss), the tools fsck needs for both file systems, and cloud-init,
# which Raspberry Pi OS (Trixie) runs from the boot partition's files, with
# what its modules use there: locales, sudo, openssh-server (installed and
# disabled, as on Raspberry Pi OS Lite until SSH is turned on).
packages=systemd-sysv,udev,dbus,polkitd,linux-image-amd64,kmod,ca-certificates,adduser,init-system-helpers,tpm-udev,dosfstools,e2fsprogs,iproute2,procps,less,cloud-init,locales,sudo,openssh-server
size=3G

log() { printf '%s build-image: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap into a folder keeps file owners only as root)"
for c in mmdebstrap mke2fs mkfs.fat mcopy sfdisk make gcc tar; do
	command -v "$c" >/dev/null || die "$c is missing: apt-get install -y mmdebstrap e2fsprogs dosfstools mtools fdisk make gcc"
done

key=$(
	{
		cat "$0"
		(cd "$here" && find overlay gpio-sim -type f -print0 | sort -z | xargs -0 sha256sum)
		echo "$packages $suite $mirror $security $size"
	} | sha256sum | cut -c1-16
)
out=$cache/$key
if [ -f "$out/ready" ]; then
	log "cached: $out"
	echo "$out"
	exit 0
fi

work=$cache/$key.tmp
rm -rf "$work"
mkdir -p "$work"
root=$work/rootfs
t0=$SECONDS

log "mmdebstrap $suite ($packages)"
# The root disk is virtio: the initramfs the kernel's package makes must
# hold its drivers (a list in modules.d, which no package owns).
mmdebstrap --quiet --variant=minbase --include="$packages" \
	--setup-hook='mkdir -p "$1/usr/share/initramfs-tools/modules.d" && printf "virtio_pci\nvirtio_blk\next4\n" >"$1/usr/share/initramfs-tools/modules.d/virtual-device"' \
	"$suite" "$root" \
	"deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main" >&2
t1=$SECONDS
log "mmdebstrap: $((t1 - t0)) s"

kver=$(ls "$root/lib/modules")
[ "$(echo "$kver" | wc -w)" = 1 ] || die "want one kernel in the image, got: $kver"
headers=/usr/src/linux-headers-$kver
[ -d "$headers" ] || die "$headers is missing: apt-get install -y linux-headers-$kver (the image's kernel; linux-headers-amd64 is the current one)"
src=$(ls /usr/src/linux-source-6.1.tar.* 2>/dev/null | head -1)
[ -n "$src" ] || die "/usr/src/linux-source-6.1.tar.xz is missing: apt-get install -y linux-source-6.1"

log "gpio-sim for $kver from $src"
mod=$work/gpio-sim
mkdir -p "$mod"
tar -xf "$src" -C "$mod" --strip-components=1 \
	linux-source-6.1/drivers/gpio/gpio-sim.c linux-source-6.1/drivers/gpio/gpiolib.h linux-source-6.1/kernel/irq/irq_sim.c
mv "$mod/drivers/gpio/gpio-sim.c" "$mod/gpio-sim-main.c"
mv "$mod/drivers/gpio/gpiolib.h" "$mod/kernel/irq/irq_sim.c" "$mod/"
grep -q 'handle_simple_irq(irq_to_desc(irqnum));' "$mod/irq_sim.c" || die "irq_sim.c changed: the patch for irq_to_desc no longer applies"
sed -i 's/handle_simple_irq(irq_to_desc(irqnum));/generic_handle_irq_safe(irqnum);/' "$mod/irq_sim.c"
cp "$here/gpio-sim/Kbuild" "$mod/"
make -s -C "$headers" M="$mod" modules >&2
install -D -m 0644 "$mod/gpio-sim.ko" "$root/lib/modules/$kver/updates/gpio-sim.ko"
chroot "$root" depmod "$kver"
t2=$SECONDS
log "gpio-sim: $((t2 - t1)) s"

log "overlay and set-up"
cp -a "$here/overlay/." "$root/"
# The groups Raspberry Pi OS has for its hardware (tss comes with tpm-udev).
for g in gpio i2c; do chroot "$root" addgroup --system --quiet "$g"; done
chroot "$root" passwd --delete root >/dev/null
systemctl --root="$root" enable systemd-networkd.service systemd-networkd-wait-online.service \
	gpio-sim-board.service vmctl.service serial-getty@ttyS0.service >&2
systemctl --root="$root" disable ssh.service >&2
# Raspberry Pi OS comes with its locale generated; cloud-init's locale
# module sets en_US.UTF-8 unless told otherwise.
sed -i -E 's/^# *((en_GB|en_US)\.UTF-8 UTF-8)/\1/' "$root/etc/locale.gen"
chroot "$root" locale-gen >&2
rm -rf "$root/var/cache/apt/archives/"*.deb
t3=$SECONDS
log "set-up: $((t3 - t2)) s"

log "root.img and card.img ($size root, ext4) from the folder"
cp "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$work/initrd.img"
echo "$kver" >"$work/kernel-version"
touch "$root/etc/cloud/cloud-init.disabled"
mke2fs -q -t ext4 -L rootfs -d "$root" "$work/root.img" "$size" >&2
rm "$root/etc/cloud/cloud-init.disabled"
# The card: 1 MiB for the MBR, 256 MiB FAT32, then the root file system.
card=$work/card.img
truncate -s $((1 + 256))M "$card"
truncate -s +"$size" "$card"
printf 'label: dos\nstart=2048, size=256MiB, type=c\ntype=83\n' | sfdisk --quiet "$card" >&2
mkfs.fat --offset 2048 -F 32 -s 4 -n bootfs "$card" $((256 * 1024)) >&2
# What the Raspberry Pi's firmware reads from the boot partition; the VM's
# launcher reads cmdline.txt the same way at each (re)boot.
echo "console=ttyS0,115200 root=LABEL=rootfs rootfstype=ext4 ro fsck.repair=yes rootwait net.ifnames=0 panic=5" >"$work/cmdline.txt"
MTOOLS_SKIP_CHECK=1 mcopy -i "$card@@1M" "$work/cmdline.txt" ::cmdline.txt
rm "$work/cmdline.txt"
mke2fs -q -t ext4 -L rootfs -E offset=$((257 * 1024 * 1024)) -d "$root" "$card" "$size" >&2
rm -rf "$root" "$mod"
t4=$SECONDS
log "mke2fs: $((t4 - t3)) s; images built in $((t4 - t0)) s"

touch "$work/ready"
rm -rf "$out"
mv "$work" "$out"
echo "$out"
