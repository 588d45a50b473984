"""systemd-boot and unified kernel images: ukify joins the tree's kernel, initrd, os-release and the layout's
command line behind the tree's systemd stub; with a db key of the user's own, sbsign signs systemd-boot and
ukify the images, so the firmware starts them with Secure Boot enforced."""

from __future__ import annotations

import os
import shutil

import osbuild_boot
import osbuild_stage
from osbuild_stage import run

from .common import at_epoch, write_file

EFI = "/usr/lib/systemd/boot/efi"
PACKAGE = "install systemd-boot-efi (systemd-boot and its stub) for bootloader systemd-boot"


def files(tree: str, arch: dict, esp: str, images: str, cmdline: str, timeout: int, signing: tuple[str, str] | None,
          tmp: str) -> dict[str, str]:
    """The boot files by their path on the booted system (esp and images are the mountpoints of the ESP and of
    the partition holding /EFI/Linux), written under tmp."""
    suffix = arch["efi_suffix"]
    stub = osbuild_stage.require(tree, f"{EFI}/linux{suffix}.efi.stub", PACKAGE)
    boot_loader = osbuild_stage.require(tree, f"{EFI}/systemd-boot{suffix}.efi", PACKAGE)
    os_release = osbuild_stage.require(tree, "/etc/os-release", "the tree has no os-release")
    sign = ["--secureboot-private-key", signing[0], "--secureboot-certificate", signing[1],
            "--signtool", "sbsign"] if signing else []
    boot = osbuild_stage.require(tree, "/boot", "install a kernel before this assembler")
    made = {}
    for version in osbuild_boot.kernels(boot):
        output = os.path.join(tmp, "uki", f"linux-{version}.efi")
        os.makedirs(os.path.dirname(output), exist_ok=True)
        initrd = os.path.join(boot, f"initrd.img-{version}")
        run(["ukify", "build", f"--linux={os.path.join(boot, f'vmlinuz-{version}')}",
             *([f"--initrd={initrd}"] if os.path.exists(initrd) else []), f"--cmdline={cmdline}",
             f"--os-release=@{os_release}", f"--uname={version}", f"--stub={stub}", *sign, f"--output={output}"])
        made[os.path.join(images, "EFI/Linux", f"linux-{version}.efi")] = output
    loader = os.path.join(tmp, "uki", arch["efi_file"])
    if signing:
        run(["sbsign", "--key", signing[0], "--cert", signing[1], "--output", loader, boot_loader])
    else:
        shutil.copyfile(boot_loader, loader)
    for made_file in (*made.values(), loader):
        at_epoch(made_file)
    made[os.path.join(esp, "EFI/BOOT", arch["efi_file"])] = loader
    made[os.path.join(esp, "loader/loader.conf")] = os.path.join(tmp, "uki", "loader.conf")
    write_file(made[os.path.join(esp, "loader/loader.conf")], f"timeout {timeout}\neditor no\n")
    return made
