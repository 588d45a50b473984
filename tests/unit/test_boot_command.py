"""`osbuild-oci boot` treats the image as input: what qemu is told to open, and what the guest may reach.

qemu itself is not started here (tests/test_boot.py boots for real); qemu-img makes the hostile images.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from osbuild_oci.errors import UserError
from osbuild_oci.tools.boot import Accel, Boot, Firmware, command


def qcow2(path: Path, *options: str) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *options, str(path), "64M"], check=True)
    return path


def argv(tmp_path: Path, **given) -> list[str]:
    return command(Boot(accel=Accel.TCG, **given), tmp_path)


def test_a_plain_disk_gets_no_network_and_is_never_written(tmp_path):
    line = argv(tmp_path, image=qcow2(tmp_path / "disk.qcow2"))
    assert line[line.index("-nic") + 1] == "none"
    assert "-snapshot" in line
    assert f"file={tmp_path / 'disk.qcow2'},format=qcow2,if=virtio" in line


def test_a_symlink_is_refused(tmp_path):
    qcow2(tmp_path / "disk.qcow2")
    (tmp_path / "link.qcow2").symlink_to(tmp_path / "disk.qcow2")
    with pytest.raises(UserError, match="is a symbolic link"):
        argv(tmp_path, image=tmp_path / "link.qcow2")


@pytest.mark.parametrize("options, named", [
    (("-b", "/etc/shadow", "-F", "raw"), "/etc/shadow"),
    (("-o", "data_file=/etc/shadow,data_file_raw=on"), "/etc/shadow"),
])
def test_a_qcow2_that_names_another_file_is_refused(tmp_path, options, named):
    if "data_file" in options[1]:
        # qemu-img creates the data file itself: point it at a file of the test's own, then rename the claim.
        options = ("-o", f"data_file={tmp_path / 'data'},data_file_raw=on")
        named = str(tmp_path / "data")
    image = qcow2(tmp_path / "hostile.qcow2", *options)
    with pytest.raises(UserError, match="refers to another file") as err:
        argv(tmp_path, image=image)
    assert named in str(err.value)


def test_a_comma_in_the_name_cannot_add_drive_options(tmp_path):
    image = qcow2(tmp_path / "a,file=x.qcow2")
    line = argv(tmp_path, image=image)
    assert f"file={tmp_path}/a,,file=x.qcow2,format=qcow2,if=virtio" in line


def test_ssh_forwards_only_from_the_hosts_loopback(tmp_path):
    line = argv(tmp_path, image=qcow2(tmp_path / "disk.qcow2"), ssh_port=2222)
    assert line[line.index("-nic") + 1] == "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2222-:22"


def test_secure_boot_is_ovmfs_secure_build_on_q35_with_smm(tmp_path):
    line = argv(tmp_path, image=qcow2(tmp_path / "disk.qcow2"), firmware=Firmware.SECURE_BOOT)
    assert "q35,smm=on" in line and "driver=cfi.pflash01,property=secure,value=on" in line
    assert any(arg.endswith("/usr/share/OVMF/OVMF_CODE_4M.ms.fd") for arg in line)
    variables = tmp_path / "VARS.fd"
    assert variables.read_bytes() == Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd").read_bytes(), "a private copy"


def test_enroll_needs_secure_boot(tmp_path):
    (tmp_path / "db.crt").write_text("")
    with pytest.raises(UserError, match="give --secure-boot too"):
        argv(tmp_path, image=qcow2(tmp_path / "disk.qcow2"), enroll=(tmp_path / "db.crt",))


def test_an_iso_boots_as_a_cdrom_unless_told_otherwise(tmp_path):
    iso = tmp_path / "live.iso"
    with open(iso, "wb") as f:
        f.truncate(64 * 1024)
        f.seek(0x8001)
        f.write(b"CD001")
    assert f"file={iso},format=raw,media=cdrom,readonly=on" in argv(tmp_path, image=iso)
    assert f"file={iso},format=raw,if=virtio" in argv(tmp_path, image=iso, cdrom=False)


def test_a_grown_boot_uses_a_private_overlay_of_the_asked_size(tmp_path):
    image = qcow2(tmp_path / "disk.qcow2")
    line = argv(tmp_path, image=image, size=6 * 1024 ** 3)
    overlay = tmp_path / "grown.qcow2"
    assert f"file={overlay},format=qcow2,if=virtio" in line
    info = subprocess.run(["qemu-img", "info", str(overlay)], capture_output=True, text=True, check=True).stdout
    assert "virtual size: 6 GiB" in info and str(image) in info
