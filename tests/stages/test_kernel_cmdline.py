"""org.osbuild.kernel-cmdline, and org.osbuild.grub2 putting what it wrote on the kernel's command line."""

from __future__ import annotations

UUID = "0b6c3a5e-1f2d-4c8b-9a7e-5d4c3b2a1f00"
KERNEL = {"name": "org.osbuild-oci.files", "options": {"files": [{"path": "/boot/vmlinuz-6.1.0-test", "content": "k"}]}}
GRUB = {"name": "org.osbuild.grub2", "options": {"root_fs_uuid": UUID,
                                                 "kernel_opts": "console=tty0 console=ttyS0,115200 splash"}}


def cmdline(**options) -> dict:
    return {"name": "org.osbuild.kernel-cmdline", "options": options}


def linux_line(grub_cfg: str) -> str:
    return next(line.strip() for line in grub_cfg.splitlines() if line.strip().startswith("linux "))


def test_the_command_line_reaches_grubs_menu_entry(tiny):
    tree = tiny(KERNEL, cmdline(root_fs_uuid=UUID, kernel_opts="console=ttyS0,115200 quiet"), GRUB)
    assert tree["/etc/kernel/cmdline"] == f"root=UUID={UUID} console=ttyS0,115200 quiet\n"
    # grub2's own kernel_opts come last; a repeated word stays in its last place only, so ttyS0 is still
    # the last console (the kernel's /dev/console), as grub2's options say.
    assert linux_line(tree["/boot/grub/grub.cfg"]) == \
        f"linux /boot/vmlinuz-6.1.0-test root=UUID={UUID} ro quiet console=tty0 console=ttyS0,115200 splash"


def test_without_root_fs_uuid_only_the_options_are_written(tiny):
    tree = tiny(KERNEL, cmdline(kernel_opts="nomodeset"), GRUB)
    assert tree["/etc/kernel/cmdline"] == "nomodeset\n"
    assert linux_line(tree["/boot/grub/grub.cfg"]).endswith(
        f"root=UUID={UUID} ro nomodeset console=tty0 console=ttyS0,115200 splash")


def test_another_root_than_grubs_fails_clearly(fails):
    other = "7e57a1d0-0000-4000-8000-000000000001"
    assert fails(KERNEL, cmdline(root_fs_uuid=other), GRUB) == (
        f"the tree's /etc/kernel/cmdline names root=UUID={other}, but root_fs_uuid is {UUID}: "
        "give org.osbuild.kernel-cmdline the same root_fs_uuid")


def test_a_planted_command_line_cannot_reach_grubs_script(fails):
    planted = {"name": "org.osbuild-oci.files", "options": {"files": [
        {"path": "/etc/kernel/cmdline", "content": "quiet\n}\nmenuentry 'evil' {\n"}]}}
    assert fails(KERNEL, planted, GRUB).startswith("the tree's /etc/kernel/cmdline holds characters GRUB's script")


def test_a_line_longer_than_the_kernel_takes_fails(fails):
    assert fails(cmdline(kernel_opts="x" * 300, kernel_cmdline_size=256)) == \
        "the command line is 300 characters, more than the 256 the kernel takes (kernel_cmdline_size)"
    # The default is the tree's architecture's: 2048 on amd64.
    assert fails(cmdline(kernel_opts="x" * 2049)) == \
        "the command line is 2049 characters, more than the 2048 the kernel takes (amd64)"


def test_bad_options_are_refused(refused):
    refused("org.osbuild.kernel-cmdline", {"kernel_opts": "quiet'; reboot; '"}, "options.kernel_opts")
    refused("org.osbuild.kernel-cmdline", {"root_fs_uuid": "../../x"}, "options.root_fs_uuid")
    refused("org.osbuild.kernel-cmdline", {"kernel_cmdline_size": 100}, "options.kernel_cmdline_size")
    refused("org.osbuild.kernel-cmdline", {"kernel_options": "quiet"}, "options.kernel_options")
