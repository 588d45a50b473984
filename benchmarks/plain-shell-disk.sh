#!/bin/sh
# The baseline for benchmarks/disks.py: pipelines/debian-trixie-uki-qcow2.json's disk (the same packages and
# configuration, an ESP and a growing ext4 root, systemd-boot and a UKI signed with a db key) made by a plain
# shell script as root, without containers: mmdebstrap for the tree, then ukify, sbsign and systemd-repart
# --offline by hand. systemd-repart >= 255 and ukify come from the host on trixie, else from a trixie tool
# root this script makes with mmdebstrap (TOOLS, kept between runs like a package cache).
# Usage: plain-shell-disk.sh OUTPUT_DIR DB_KEY DB_CRT [DEB_CACHE [TOOLS]]   (writes OUTPUT_DIR/disk.qcow2)
# Needs: mmdebstrap qemu-utils openssl (and on bookworm, network for the tool root once)
set -eu
out=$(realpath "$1")
key=$(realpath "$2")
crt=$(realpath "$3")
debs=${4:-}
tools=${5:-/var/tmp/plain-shell-disk-tools}
mkdir -p "$out"
mirror=http://deb.debian.org/debian
work=$(mktemp -d /var/tmp/plain-shell-disk.XXXXXX)
cleanup() {
  for mounted in work proc dev; do umount "$tools/$mounted" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
set --
if [ -n "$debs" ]; then
  mkdir -p "$debs"; debs=$(realpath "$debs")
  # mmdebstrap runs hooks with the tree as $1: single quotes on purpose.
  # shellcheck disable=SC2016
  set -- --skip=essential/unlink,download/empty --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
    --setup-hook="sync-in $debs /var/cache/apt/archives/" --customize-hook="sync-out /var/cache/apt/archives $debs"
fi
tree=$work/tree

# The tree, as the example's first seven stages make it.
# shellcheck disable=SC2016
mmdebstrap --quiet --variant=minbase \
  --include=systemd-sysv,udev,kmod,e2fsprogs,passwd,initramfs-tools,linux-image-amd64,btrfs-progs,cryptsetup-initramfs,grub-efi-amd64-signed,shim-signed,sudo,systemd-boot-efi,systemd-repart \
  --dpkgopt=force-unsafe-io --customize-hook='rm "$1/etc/dpkg/dpkg.cfg.d/99mmdebstrap"' \
  --setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && echo FSTYPE=ext4 > "$1/etc/initramfs-tools/conf.d/fstype.conf"' \
  "$@" trixie "$tree" "$mirror"
echo debian-oci > "$tree/etc/hostname"
# A crypt hash, not an expansion.
# shellcheck disable=SC2016
chroot "$tree" useradd -m -u 1000 -G sudo -s /bin/bash \
  -p '$6$GUaQwKcdTVaVV6Rr$9wbGx92ysJJI4xpojZSop6N8gOpTd7UAGBirNTbvf4vKFPKiSIHuHZjcKcl6uRJ7NYk6tqvesDqafSSsK4wcg.' debian
chroot "$tree" systemctl enable --quiet serial-getty@ttyS0.service
chroot "$tree" systemctl set-default --quiet multi-user.target

# The tools: the host's if new enough, else a trixie root to chroot into with the work directory bound in.
run=""
if ! command -v systemd-repart >/dev/null || [ "$(systemd-repart --version | sed -n 's/^systemd \([0-9]*\).*/\1/p')" -lt 255 ] \
    || ! command -v ukify >/dev/null; then
  if [ ! -x "$tools/usr/bin/systemd-repart" ]; then
    mmdebstrap --quiet --variant=apt \
      --include=systemd-repart,systemd-ukify,python3-pefile,sbsigntool,dosfstools,mtools,e2fsprogs,btrfs-progs \
      trixie "$tools" "$mirror"
  fi
  mkdir -p "$tools/work"
  mount --bind "$work" "$tools/work"
  mount -t proc proc "$tools/proc"
  mount --bind /dev "$tools/dev"
  run="chroot $tools"
  cp "$key" "$work/db.key"; cp "$crt" "$work/db.crt"
  key=/work/db.key; crt=/work/db.crt
fi
inner() { if [ -n "$run" ]; then echo "/work/$1"; else echo "$work/$1"; fi; }

# The UKI of the tree's kernel and systemd-boot, both signed; loader.conf; fstab, the growing root's repart.d.
kver=$(basename "$tree"/boot/vmlinuz-* | sed 's/^vmlinuz-//')
mkdir -p "$work/esp/EFI/BOOT" "$work/esp/EFI/Linux" "$work/esp/loader" "$work/etc/repart.d" "$work/defs"
rootuuid=$(cat /proc/sys/kernel/random/uuid)
$run ukify build --linux="$(inner "tree/boot/vmlinuz-$kver")" --initrd="$(inner "tree/boot/initrd.img-$kver")" \
  --cmdline="root=PARTUUID=$rootuuid ro console=tty0 console=ttyS0,115200" \
  --os-release=@"$(inner tree/usr/lib/os-release)" --uname="$kver" \
  --stub="$(inner tree/usr/lib/systemd/boot/efi/linuxx64.efi.stub)" \
  --secureboot-private-key="$key" --secureboot-certificate="$crt" --signtool=sbsign \
  --output="$(inner "esp/EFI/Linux/linux-$kver.efi")" >/dev/null
$run sbsign --key "$key" --cert "$crt" --output "$(inner esp/EFI/BOOT/BOOTX64.EFI)" \
  "$(inner tree/usr/lib/systemd/boot/efi/systemd-bootx64.efi)"
printf 'timeout 0\neditor no\n' > "$work/esp/loader/loader.conf"
echo "PARTUUID=$rootuuid / ext4 errors=remount-ro,x-systemd.growfs 0 1" > "$work/etc/fstab"
printf '[Partition]\nType=esp\nWeight=0\n' > "$work/etc/repart.d/00-esp.conf"
printf '[Partition]\nType=root\n' > "$work/etc/repart.d/01-root.conf"

# The disk: systemd-repart with the tree, the ESP's files, and the disk's own fstab and repart.d.
cat > "$work/defs/00-esp.conf" <<EOF
[Partition]
Type=esp
Format=vfat
SizeMinBytes=512M
SizeMaxBytes=512M
CopyFiles=$(inner esp):/
EOF
cat > "$work/defs/01-root.conf" <<EOF
[Partition]
Type=root
Format=ext4
UUID=$rootuuid
CopyFiles=$(inner tree):/
CopyFiles=$(inner etc/fstab):/etc/fstab
CopyFiles=$(inner etc/repart.d):/etc/repart.d
ExcludeFiles=$(inner tree/etc/fstab)
EOF
$run systemd-repart --offline=yes --sector-size=512 --empty=create --size=2G --dry-run=no --no-pager \
  --definitions="$(inner defs)" "$(inner disk.raw)" >/dev/null
qemu-img convert -O qcow2 "$work/disk.raw" "$out/disk.qcow2"
