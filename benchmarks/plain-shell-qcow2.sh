#!/bin/sh
# The baseline for benchmarks/qcow2.sh: the same work as pipelines/debian-bookworm-qcow2.json
# (same packages, configuration, disk layout and bootloader), done by a plain shell script
# on the host as root with no containers and, unless DEB_CACHE is given, no cache.
# Usage: plain-shell-qcow2.sh OUTPUT_DIR [DEB_CACHE]   (writes OUTPUT_DIR/debian-bookworm.qcow2)
# DEB_CACHE: a directory of .debs mmdebstrap takes from and adds to (its own documented hooks).
# Needs: mmdebstrap fdisk e2fsprogs dosfstools mtools grub-pc-bin grub-efi-amd64-bin qemu-utils python3
set -eu
out=$(realpath "$1")
mkdir -p "$out"
debs=${2:-}
set --
if [ -n "$debs" ]; then
  mkdir -p "$debs"; debs=$(realpath "$debs")
  # mmdebstrap runs hooks with the tree as $1: single quotes on purpose.
  # shellcheck disable=SC2016
  set -- --skip=essential/unlink,download/empty --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
    --setup-hook="sync-in $debs /var/cache/apt/archives/" --customize-hook="sync-out /var/cache/apt/archives $debs"
fi
work=$(mktemp -d /var/tmp/plain-shell.XXXXXX)
trap 'rm -rf "$work"' EXIT
uuid=76a22bf4-f153-4541-b6c7-0332c0dfaeac
tree=$work/tree
disk=$work/disk.raw

# The tree: Debian, with FSTYPE for the initramfs written before the kernel is installed.
# dpkg skips fsync, as the debootstrap and apt stages do (and the setting does not stay in the tree).
# The hooks are scripts mmdebstrap runs with the tree as $1: single quotes on purpose.
# shellcheck disable=SC2016
mmdebstrap --quiet --variant=minbase \
  --include=systemd-sysv,udev,kmod,e2fsprogs,passwd,initramfs-tools,linux-image-amd64,openssh-server \
  --dpkgopt=force-unsafe-io --customize-hook='rm "$1/etc/dpkg/dpkg.cfg.d/99mmdebstrap"' \
  --setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && echo FSTYPE=ext4 > "$1/etc/initramfs-tools/conf.d/fstype.conf"' \
  "$@" bookworm "$tree" http://deb.debian.org/debian
echo debian-oci > "$tree/etc/hostname"
# A crypt hash, not an expansion.
# shellcheck disable=SC2016
chroot "$tree" useradd -m -u 1000 -G sudo -s /bin/bash \
  -p '$6$GUaQwKcdTVaVV6Rr$9wbGx92ysJJI4xpojZSop6N8gOpTd7UAGBirNTbvf4vKFPKiSIHuHZjcKcl6uRJ7NYk6tqvesDqafSSsK4wcg.' debian
echo "UUID=$uuid / ext4 errors=remount-ro 0 1" > "$tree/etc/fstab"
chroot "$tree" systemctl enable --quiet serial-getty@ttyS0.service
chroot "$tree" systemctl set-default --quiet multi-user.target
kver=$(basename "$tree"/boot/vmlinuz-* | sed 's/^vmlinuz-//')
mkdir -p "$tree/boot/grub"
cat > "$tree/boot/grub/grub.cfg" <<EOF
set timeout=1
set default=0
insmod all_video
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
menuentry 'Debian GNU/Linux, with Linux $kver' {
	search --no-floppy --fs-uuid --set=root $uuid
	linux /boot/vmlinuz-$kver root=UUID=$uuid ro console=tty0 console=ttyS0,115200
	initrd /boot/initrd.img-$kver
}
EOF

# The disk: GPT with BIOS boot (1 MiB at 1 MiB), ESP (100 MiB at 2 MiB), root (the rest but the last MiB).
truncate -s 2G "$disk"
printf 'label: gpt\nunit: sectors\nstart=2048, size=2048, type=21686148-6E49-704E-6564-65654E656564\nstart=4096, size=204800, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nstart=208896, size=3983360, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709\n' \
  | sfdisk --quiet --no-reread --no-tell-kernel "$disk"
mkfs.ext4 -q -F -L root -U "$uuid" -d "$tree" \
  -E offset=$((208896 * 512)),nodiscard,lazy_itable_init=1,lazy_journal_init=1 "$disk" $((3983360 / 2))k
# $root is GRUB's variable, not the shell's.
# shellcheck disable=SC2016
printf 'search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)/boot/grub\n' "$uuid" > "$work/early.cfg"
modules="part_gpt part_msdos ext2 search search_fs_uuid normal configfile echo test linux boot gzio serial terminal all_video sleep reboot halt ls cat"
# shellcheck disable=SC2086
grub-mkimage -O x86_64-efi -c "$work/early.cfg" -p /boot/grub -o "$work/BOOTX64.EFI" $modules
mkfs.vfat -F 32 -s 1 -n ESP --offset 4096 "$disk" $((204800 / 2)) >/dev/null
mmd -i "$disk@@$((4096 * 512))" ::/EFI ::/EFI/BOOT
mcopy -i "$disk@@$((4096 * 512))" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
# shellcheck disable=SC2086
grub-mkimage -O i386-pc -c "$work/early.cfg" -p /boot/grub -o "$work/core.img" $modules biosdisk
# What grub-bios-setup does: boot code into the MBR pointing at core.img at LBA 2048.
python3 - "$disk" "$work/core.img" <<'EOF'
import struct, sys
disk, core_path = sys.argv[1:]
core = bytearray(open(core_path, "rb").read())
core[500:508] = struct.pack("<Q", 2049)
boot = bytearray(open("/usr/lib/grub/i386-pc/boot.img", "rb").read(440))
boot[0x5C:0x64] = struct.pack("<Q", 2048)
boot[0x66:0x68] = b"\x90\x90"
with open(disk, "r+b") as f:
    f.write(boot)
    f.seek(2048 * 512)
    f.write(core)
EOF
qemu-img convert -f raw -O qcow2 -o compat=1.1 "$disk" "$out/debian-bookworm.qcow2"
