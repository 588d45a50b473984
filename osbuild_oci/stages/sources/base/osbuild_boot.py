"""What org.osbuild.grub2 and the disk assembler share: the tree's kernels, newest first, its kernel command line
from org.osbuild.kernel-cmdline, and GRUB's menu of them.

The grub2 stage writes the default layout's /boot/grub/grub.cfg into the tree;
the disk assembler writes the one a described layout needs (its /boot may be a
partition of its own, its root encrypted or in a btrfs subvolume) onto the disk.
Both menus come from here, so they list the same kernels the same way.
"""

import os
import re

import osbuild_stage
from osbuild_stage import StageError

GRUB_TERMINALS = ("terminal_input", "terminal_output")
# Where org.osbuild.kernel-cmdline leaves the kernel's options.
CMDLINE = "/etc/kernel/cmdline"
# What kernel_opts' schema allows: nothing GRUB's script language would read as quoting or syntax.
SAFE_OPTIONS = re.compile(r"[^\n\r'\"\\{};$`]*")


def version_key(version: str) -> list:
    """Sort key of a kernel version: numbers as numbers, so 6.10 comes after 6.9."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", version)]


def kernels(boot: str) -> list[str]:
    """The versions of the kernels (vmlinuz-VERSION) in the directory boot, newest first."""
    found = [name[len("vmlinuz-"):] for name in os.listdir(boot) if name.startswith("vmlinuz-")]
    if not found:
        raise StageError("the tree's /boot has no vmlinuz-VERSION: install a kernel (e.g. linux-image-amd64) first")
    return sorted(found, key=version_key, reverse=True)


def tree_cmdline(tree: str) -> list[str]:
    """The words org.osbuild.kernel-cmdline left in the tree's /etc/kernel/cmdline, none without the file.

    The file is the tree's, so it is checked as kernel_opts is: it lands inside GRUB's script or a UKI.
    """
    path = osbuild_stage.in_tree(tree, CMDLINE)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        text = f.read().strip()
    if not SAFE_OPTIONS.fullmatch(text):
        raise StageError(f"the tree's {CMDLINE} holds characters GRUB's script would interpret (newline, quote, "
                         "braces, backslash, ';', '$' or '`'): write it with org.osbuild.kernel-cmdline")
    return text.split()


def last_of_each(words: list[str]) -> str:
    """The command line with a word that comes again kept only in its last place: osbuild pipelines give
    kernel-cmdline and the bootloader the same options, the kernel takes the last of a repeated option, and the
    last console= is /dev/console."""
    return " ".join(word for i, word in enumerate(words) if word not in words[i + 1:])


def grub_menu(boot: str, settings: dict, search_uuid: str, boot_path: str, cmdline: str, name: str) -> str:
    """A grub.cfg: GRUB's settings (osbuild's config: timeout, serial, terminal_input, terminal_output), then one
    entry per kernel in the directory boot, newest first, which finds the filesystem holding it by search_uuid and
    loads it from boot_path there (/boot on a root filesystem, empty on a /boot partition of its own)."""
    lines = [f"set timeout={settings.get('timeout', 0)}", "set default=0", "insmod all_video"]
    if "serial" in settings:
        lines.append(settings["serial"])
    for terminal in GRUB_TERMINALS:
        if terminal in settings:
            lines.append(f"{terminal} {' '.join(settings[terminal])}")
    for version in kernels(boot):
        lines += [f"menuentry '{name}, with Linux {version}' {{",
                  f"\tsearch --no-floppy --fs-uuid --set=root {search_uuid}",
                  f"\tlinux {boot_path}/vmlinuz-{version} {cmdline}"]
        if os.path.exists(os.path.join(boot, f"initrd.img-{version}")):
            lines.append(f"\tinitrd {boot_path}/initrd.img-{version}")
        lines.append("}")
    return "\n".join(lines) + "\n"
