#!/bin/sh
# The baseline for benchmarks/iso.py: the work of pipelines/debian-bookworm-live-iso.json (same packages,
# configuration, squashfs compression, GRUB menu and ISO) done by a plain shell script on the host as root, with
# no containers and no cache. It is the recipe of the live-ISO research (grub-mkrescue under faketime), with
# mmdebstrap writing a directory and mksquashfs making the squashfs, as root does it; the research, rootless,
# had mmdebstrap write the squashfs through tar2sqfs, which cannot take the pipeline's zstd level.
# Usage: plain-shell-live-iso.sh OUTPUT_DIR   (writes OUTPUT_DIR/live.iso)
# Needs: mmdebstrap squashfs-tools grub-common grub-pc-bin grub-efi-amd64-bin xorriso mtools faketime
set -eu
out=$(realpath "$1")
mkdir -p "$out"
work=$(mktemp -d /var/tmp/plain-live.XXXXXX)
trap 'rm -rf "$work"' EXIT
epoch=1704067200
tree=$work/tree
iso=$work/iso
mkdir -p "$iso/live" "$iso/boot/grub"

# The hooks are scripts mmdebstrap runs with the tree as $1: single quotes on purpose.
# shellcheck disable=SC2016
SOURCE_DATE_EPOCH=$epoch mmdebstrap --quiet --variant=minbase \
  --include=systemd-sysv,udev,kmod,e2fsprogs,passwd,initramfs-tools,linux-image-amd64,openssh-server,live-boot,zstd \
  --dpkgopt=force-unsafe-io --customize-hook='rm "$1/etc/dpkg/dpkg.cfg.d/99mmdebstrap"' \
  --setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && echo FSTYPE=ext4 > "$1/etc/initramfs-tools/conf.d/fstype.conf"' \
  bookworm "$tree" http://deb.debian.org/debian
echo debian-live > "$tree/etc/hostname"
# A crypt hash, not an expansion.
# shellcheck disable=SC2016
chroot "$tree" useradd -m -u 1000 -G sudo -s /bin/bash \
  -p '$6$GUaQwKcdTVaVV6Rr$9wbGx92ysJJI4xpojZSop6N8gOpTd7UAGBirNTbvf4vKFPKiSIHuHZjcKcl6uRJ7NYk6tqvesDqafSSsK4wcg.' debian
chroot "$tree" systemctl enable --quiet serial-getty@ttyS0.service
chroot "$tree" systemctl set-default --quiet multi-user.target

cp -L "$tree/vmlinuz" "$iso/live/vmlinuz"
cp -L "$tree/initrd.img" "$iso/live/initrd.img"
SOURCE_DATE_EPOCH=$epoch mksquashfs "$tree" "$iso/live/filesystem.squashfs" -noappend -no-progress -quiet \
  -comp zstd -Xcompression-level 9 > /dev/null
cat > "$iso/boot/grub/grub.cfg" <<'GRUB'
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
insmod all_video
set timeout=1
set default=0
menuentry 'Live system' {
	linux /live/vmlinuz boot=live components console=tty0 console=ttyS0,115200n8
	initrd /live/initrd.img
}
GRUB
TZ=UTC faketime -f "$(date -u -d "@$epoch" '+%Y-%m-%d %H:%M:%S')" grub-mkrescue -o "$out/live.iso" "$iso" -- \
  -volid DEBIAN_LIVE -volume_date all_file_dates "$(date -u -d "@$epoch" +%Y%m%d%H%M%S)00" 2> "$work/xorriso.log" \
  || { cat "$work/xorriso.log" >&2; exit 1; }
