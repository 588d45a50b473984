"""A described disk: the files its booted system needs from the layout (fstab, crypttab, /etc/repart.d, the boot
loader's), then systemd-repart, then GRUB's BIOS boot code."""

from __future__ import annotations

import os

import osbuild_boot
import osbuild_stage
from osbuild_stage import StageError

from . import grub, repart, secureboot, uki
from .common import at_epoch, write_file
from .layout import Layout

GROW_HINT = "install systemd-repart (trixie: the systemd-repart package) for a partition that grows"


def os_name(tree: str) -> str:
    """The tree's NAME from os-release, for the boot menu's entries."""
    path = osbuild_stage.in_tree(tree, "/etc/os-release")
    if os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("NAME="):
                    return line[5:].strip().strip("\"'").replace("'", "")
    return "Linux"


def grub_settings(options: dict) -> dict:
    """GRUB's menu settings in org.osbuild.grub2's terms."""
    settings = {"timeout": options.get("timeout", 0)}
    if "serial" in options:
        settings.update(serial=options["serial"], terminal_input=["serial", "console"],
                        terminal_output=["serial", "console"])
    return settings


class Files:
    """Files the assembler writes for the booted system, by their path there, staged under a directory."""

    def __init__(self, staging: str):
        self.staging = staging
        self.paths: dict[str, str] = {}

    def write(self, path: str, content: str | bytes) -> None:
        local = os.path.join(self.staging, path.lstrip("/"))
        write_file(local, content)
        self.paths[path] = local

    def copy(self, path: str, local: str) -> None:
        self.paths[path] = local


def command_line(tree: str, layout: Layout, options: dict) -> str:
    """The layout's root, then the tree's /etc/kernel/cmdline (org.osbuild.kernel-cmdline) and kernel_opts.  The
    layout decides the root: a root= that stage wrote names a filesystem of another disk, and is dropped."""
    from_tree = [word for word in osbuild_boot.tree_cmdline(tree) if not word.startswith("root=")]
    return layout.kernel_cmdline(from_tree + options.get("kernel_opts", "").split())


def grub_files(tree: str, options: dict, arch: dict, layout: Layout, cmdline: str, files: Files,
               tmp: str) -> str | None:
    """grub.cfg on the filesystem holding /boot and GRUB's EFI files on the ESP; the BIOS core.img, if any."""
    boot_fs = layout.boot_mount.partition
    prefix = f"{layout.boot_path()}/grub"
    boot = osbuild_stage.require(tree, "/boot", "install a kernel before this assembler")
    files.write("/boot/grub/grub.cfg", osbuild_boot.grub_menu(boot, grub_settings(options), boot_fs.fs_id,
                                                              layout.boot_path(), cmdline, os_name(tree)))
    early = os.path.join(tmp, "early.cfg")
    write_file(early, grub.early_config(boot_fs.fs_id, prefix))
    modules = (grub.FILESYSTEM_MODULES[boot_fs.filesystem],)
    if layout.esp is not None:
        esp = layout.esp.mountpoint
        if options.get("secure_boot", False):
            for path, source in secureboot.esp_files(tree, arch, boot_fs.fs_id, prefix).items():
                if isinstance(source, bytes):
                    files.write(f"{esp}/{path}", source)
                else:
                    files.copy(f"{esp}/{path}", source)
        else:
            efi_binary = os.path.join(tmp, arch["efi_file"])
            grub.image(arch["efi"], early, efi_binary, modules)
            at_epoch(efi_binary)
            files.copy(f"{esp}/EFI/BOOT/{arch['efi_file']}", efi_binary)
    if layout.by_type("bios-boot") is None:
        return None
    core_img = os.path.join(tmp, "core.img")
    grub.image("i386-pc", early, core_img, ("biosdisk", *modules))
    return core_img


def build(tree: str, options: dict, arch: dict, size: int, image: str, tmp: str) -> None:
    """The described layout into image, a new file of size bytes."""
    bootloader = options.get("bootloader", "grub")
    layout = Layout(options["partitions"], options["root_fs_uuid"], bootloader)
    if options.get("secure_boot") and layout.esp is None:
        raise StageError("secure_boot: Secure Boot is a UEFI boot; add an esp partition")
    files = Files(os.path.join(tmp, "generated"))
    files.write("/etc/fstab", layout.fstab())
    if layout.encrypted:
        files.write("/etc/crypttab", layout.crypttab())
    growth = layout.growth()
    if growth:
        osbuild_stage.require(tree, "/usr/bin/systemd-repart", GROW_HINT)
    for name, text in growth.items():
        files.write(f"/etc/repart.d/{name}", text)
    cmdline = command_line(tree, layout, options)
    core_img = None
    if layout.bootable and bootloader == "systemd-boot":
        secure = options.get("secure_boot") or None
        signing = (osbuild_stage.secret(secure["key"]), osbuild_stage.secret(secure["certificate"])) if secure else None
        images = (layout.by_type("xbootldr") or layout.esp).mountpoint
        for path, local in uki.files(tree, arch, layout.esp.mountpoint, images, cmdline, options.get("timeout", 0),
                                     signing, tmp).items():
            files.copy(path, local)
    elif layout.bootable:
        core_img = grub_files(tree, options, arch, layout, cmdline, files, tmp)
    keys = [part.key for part in layout.partitions if part.key]
    made = repart.make(layout, tree, files.paths, image, size, options["root_fs_uuid"], arch["systemd"],
                       {"secret": keys[0]} if keys else None, tmp)
    if core_img is not None:
        bios = made[layout.by_type("bios-boot").label]
        grub.install_bios_boot(image, core_img, bios["offset"], bios["raw_size"])
