"""What a Debian stage leaves out of its layer: the build's logs and caches, and the ids and keys its
package scripts made up; what an earlier stage put there on purpose stays."""

from __future__ import annotations

from helpers import load_program

stage = load_program("stages", "org.osbuild.apt", "stage").osbuild_stage


def write(tree, path: str, text: str = "x") -> None:
    (tree / path).parent.mkdir(parents=True, exist_ok=True)
    (tree / path).write_text(text)


def test_made_during_the_run_is_removed_kept_from_before_stays(tmp_path):
    write(tmp_path, "etc/ssh/ssh_host_ed25519_key", "chosen by the user")
    with stage.forgetting_build(str(tmp_path)):
        for path in ("var/log/dpkg.log", "var/log/apt/history.log", "var/cache/debconf/config.dat-old",
                     "var/lib/systemd/random-seed", "etc/ssh/ssh_host_rsa_key", "etc/ssh/ssh_host_rsa_key.pub",
                     "etc/machine-id", "var/cache/debconf/config.dat"):
            write(tmp_path, path)
    left = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert left == {"etc/ssh/ssh_host_ed25519_key", "etc/machine-id", "var/cache/debconf/config.dat",
                    "etc/systemd/system/ssh.service.d/osbuild-oci-host-keys.conf"}
    assert (tmp_path / "etc/machine-id").read_text() == "", "systemd's first-boot mark"
    assert "ssh-keygen -A" in (tmp_path / "etc/systemd/system/ssh.service.d/osbuild-oci-host-keys.conf").read_text()


def test_a_machine_id_set_before_is_kept(tmp_path):
    write(tmp_path, "etc/machine-id", "0123456789abcdef0123456789abcdef\n")
    with stage.forgetting_build(str(tmp_path)):
        pass
    assert (tmp_path / "etc/machine-id").read_text() == "0123456789abcdef0123456789abcdef\n"
    assert not (tmp_path / "etc/systemd").exists(), "no keys removed, no drop-in"
