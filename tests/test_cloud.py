"""The cloud image: pipelines/debian-bookworm-cloud-qcow2.json, proven by cloud-init with a NoCloud seed.

The image is built once in the shared store after the flagship (its first
stages are the flagship's, so they are cache hits there) and booted once, on a disk grown to
6 GiB, with a seed that names the host, adds a user with the test's own ssh
key and runs one command.  The test then logs in over ssh, on a port of
127.0.0.1 only, and checks what a user of a cloud would.
"""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from helpers import REPO, boot_to_login, free_port, run_build

pytestmark = pytest.mark.slow

CLOUD = REPO / "pipelines" / "debian-bookworm-cloud-qcow2.json"
GIB = 1024 ** 3
HOSTNAME = "seeded-by-test"


def test_cloud_init_names_the_host_adds_the_key_runs_the_command_and_grows_the_root(flagship, shared_store,
                                                                                     tmp_path):
    pipeline = json.loads(CLOUD.read_text())
    built = run_build(pipeline, shared_store, tmp_path / "out")
    assert built.returncode == 0, built.stderr[-3000:]
    image = tmp_path / "out" / pipeline["assembler"]["options"]["filename"]
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(key)], check=True)
    user_data = tmp_path / "user-data"
    user_data.write_text(textwrap.dedent(f"""\
        #cloud-config
        hostname: {HOSTNAME}
        users:
          - name: tester
            shell: /bin/bash
            sudo: ALL=(ALL) NOPASSWD:ALL
            ssh_authorized_keys:
              - {key.with_suffix('.pub').read_text().strip()}
        runcmd:
          - echo "runcmd ran as $(id -un)" > /var/tmp/runcmd-was-here
        """))
    port = free_port()
    ssh = ["ssh", "-p", str(port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
           "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"]
    seen = {}

    def logged_in() -> None:
        # The login prompt can come before sshd; cloud-init's runcmd runs in its last stage, which --wait waits for.
        for _ in range(30):
            shown = subprocess.run([*ssh, "-i", str(key), "tester@127.0.0.1",
                                    "cloud-init status --wait; hostname; cat /var/tmp/runcmd-was-here; "
                                    "df -B1 --output=size / | tail -1; sudo awk -F: '$2 ~ /^[$]/ {print $1}' "
                                    "/etc/shadow"], capture_output=True, text=True, timeout=300)
            if shown.returncode != 255:
                break
        seen["shown"] = shown
        seen["password"] = subprocess.run([*ssh, "-o", "PubkeyAuthentication=no", "tester@127.0.0.1", "true"],
                                          capture_output=True, text=True, timeout=60)

    boot_to_login(image, "bios", tmp_path, hostname=HOSTNAME, while_up=logged_in,
                  boot_args=("--seed", str(user_data), "--size", "6G", "--ssh", str(port)))
    shown = seen["shown"]
    assert shown.returncode == 0, shown.stderr
    # `cloud-init status --wait` prints a dot a second while it waits.
    lines = [line for line in (line.strip(" .") for line in shown.stdout.splitlines()) if line]
    assert lines[:3] == ["status: done", HOSTNAME, "runcmd ran as root"], lines
    root_size = int(lines[3])
    assert 5.5 * GIB < root_size < 6 * GIB, f"the root filesystem did not grow to the 6 GiB disk: {root_size}"
    assert lines[4:] == [], f"users with a password: {lines[4:]}"
    assert seen["password"].returncode == 255 and "Permission denied (publickey)" in seen["password"].stderr
