"""The Debian stages against real containers and the real Debian mirror.

One bookworm minbase tree is built once (module fixture) in the shared store;
every test runs its stage on top of it in a small pipeline that shares that
prefix, so the debootstrap stage is a cache hit after the first build.  Each
result is checked the way a user would: with the tree's own dpkg, systemctl,
getent, stat, inside the tree image.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from helpers import depends_closure, osbuild, podman, sbom_of, sbom_packages, store_state, tree_entry, tree_run

DEBOOTSTRAP = {"name": "org.osbuild.debootstrap",
               "options": {"suite": "bookworm", "variant": "minbase", "packages": ["systemd-sysv", "locales"]}}
# openssl passwd -6 -salt osbuildoci secret
HASH = "$6$osbuildoci$KFGbsu7J57sVVB9n9.VJKvYxOfI6N6nhvrO5GahnK/L3gs8jM4AvQZxjdul8beFEwGdy6BJ.Hqh2qqvsm5B7p/"
# What apt may leave behind besides its locks and empty partial/ directories: nothing.
LEFTOVERS = "find /var/cache/apt /var/lib/apt/lists -mindepth 1 -not -name lock -not -name partial -not -name archives"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGr5Zq0W4oJeF6bXx5JdNlMEl6F0pZ0Wj0mH3jQKx8bT alice@example"


@pytest.fixture(scope="module")
def base(shared_store, stage_images, tmp_path_factory) -> list[dict]:
    """Build the bookworm base tree once; tests prepend the returned stages to their own."""
    folder = tmp_path_factory.mktemp("debian-base")
    path = folder / "base.json"
    path.write_text(json.dumps({"name": "debian-base", "stages": [DEBOOTSTRAP]}))
    proc = osbuild("build", path, "--store", shared_store, "-o", folder / "out", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [DEBOOTSTRAP]


def on_base(build, base, *stages: dict):
    """Build base + stages; the debootstrap prefix must come from the cache."""
    result = build({"name": "debian-test", "stages": [*base, *stages]})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "org.osbuild.debootstrap" not in result.ran
    return result


def sh(store, image: str, script: str) -> str:
    return tree_run(store, image, "sh", "-c", script)


def tree_file(store, image: str, path: str) -> str:
    return tree_entry(store, image, path)[1].decode()


def layer_sizes(store, image: str) -> list[int]:
    """Sizes in bytes of the image's layers, newest first."""
    return [entry["size"] for entry in json.loads(podman(store, "history", "--format", "json", image).stdout)]


def test_debootstrap_makes_a_debian_tree(base, build, shared_store):
    result = build({"name": "debian-base", "stages": base})
    assert result.returncode == 0 and result.ran == []
    image = result.image
    assert "Status: install ok installed" in tree_run(shared_store, image, "dpkg", "-s", "systemd-sysv", "locales")
    assert sh(shared_store, image, ". /etc/os-release; echo $VERSION_CODENAME") == "bookworm\n"
    host_arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout
    assert tree_run(shared_store, image, "dpkg", "--print-architecture") == host_arch
    assert tree_run(shared_store, image, "cat", "/etc/apt/sources.list") == \
        "deb http://deb.debian.org/debian bookworm main\n"
    # Set-group-id files of other groups keep their bit (this takes CAP_FSETID in the stage).
    assert tree_run(shared_store, image, "stat", "-c", "%a %G", "/usr/bin/chage") == "2755 shadow\n"
    # Later stages chroot into the tree and need its device nodes (CAP_MKNOD).
    null, _ = tree_entry(shared_store, image, "/dev/null")
    assert null.ischr() and (null.devmajor, null.devminor) == (1, 3)
    assert sh(shared_store, image, LEFTOVERS) == ""
    assert sh(shared_store, image, "wc -c < /etc/machine-id") == "0\n"
    # The date of the Release file its packages came from: a label, shown by `store list`.
    date = json.loads(podman(shared_store, "image", "inspect", image).stdout)[0]["Labels"][
        "org.osbuild-oci.release-date"]
    assert re.fullmatch(r"20[2-9][0-9]-[01][0-9]-[0-3][0-9]T[0-9:]{8}Z", date), date
    rows = json.loads(osbuild("store", "list", "--json", "--store", shared_store).stdout)
    assert next(row for row in rows if row["image"] == image)["release_date"] == date
    # dpkg's unsafe-io was for the build only.
    assert sh(shared_store, image, "grep -rl unsafe-io /etc/dpkg /etc/apt; echo status $?") == "status 1\n", \
        "grep found no unsafe-io, and no error"


def test_debootstrap_leaves_no_container_hostname_or_resolver(base, build, shared_store):
    result = build({"name": "debian-base", "stages": base})
    assert tree_entry(shared_store, result.image, "/etc/hostname") is None
    assert tree_entry(shared_store, result.image, "/etc/resolv.conf") is None


@pytest.mark.slow
def test_apt_installs_and_removes_and_keeps_the_layer_lean(base, build, shared_store):
    install = {"name": "org.osbuild.apt", "options": {"packages": ["openssh-server"]}}
    result = on_base(build, base, install)
    image = result.image
    assert "Status: install ok installed" in tree_run(shared_store, image, "dpkg", "-s", "openssh-server")
    # The layer is lean: no downloaded packages, no *.bin caches, no package lists.
    assert sh(shared_store, image, LEFTOVERS) == ""
    top = layer_sizes(shared_store, image)[0]
    assert top < 30_000_000, f"apt layer is {top} bytes: caches or lists were left in it"
    # What the stage lent the tree for the run is gone again; systemd's postinst made up no machine id.
    assert sh(shared_store, image, "ls /usr/sbin/policy-rc.d /etc/resolv.conf 2>&1 | grep -c 'No such'") == "2\n"
    assert sh(shared_store, image, "wc -c < /etc/machine-id") == "0\n"
    # No ssh host keys in the image: ssh.service makes each machine's own (test_boot boots it).
    ssh = tree_run(shared_store, image, "ls", "/etc/ssh").split()
    assert "sshd_config" in ssh and not [name for name in ssh if name.startswith("ssh_host_")], ssh
    dropin = "/etc/systemd/system/ssh.service.d/osbuild-oci-host-keys.conf"
    assert "ssh-keygen -A" in tree_file(shared_store, image, dropin)
    # The SBOM lists what dpkg lists; the stage added exactly openssh-server and what it depends on.
    listed = "${Package}=${Version}:${Architecture}\n"
    before = sbom_of(shared_store, on_base(build, base).tree)
    after = sbom_of(shared_store, result.tree)
    assert sbom_packages(after) == set(tree_run(shared_store, image, "dpkg-query", "-W", "-f", listed).split())
    added = {entry.split("=", 1)[0] for entry in sbom_packages(after) - sbom_packages(before)}
    assert "openssh-server" in added and added - {"openssh-server"} <= depends_closure(after, "openssh-server")

    removed = on_base(build, base, install, {"name": "org.osbuild.apt",
                                             "options": {"remove": ["openssh-server"], "update": False}})
    assert removed.ran == ["org.osbuild.apt"]
    status = tree_run(shared_store, removed.image, "dpkg-query", "-W", "-f", "${Status}", "openssh-server")
    assert status == "deinstall ok config-files"


def test_apt_with_sources_for_this_run_only(base, build, shared_store):
    sources = ["deb http://deb.debian.org/debian bookworm main"]
    result = on_base(build, base, {"name": "org.osbuild.apt", "options": {"packages": ["less"], "sources": sources}})
    assert "Status: install ok installed" in tree_run(shared_store, result.image, "dpkg", "-s", "less")
    # What the stage lent the tree for its run is gone from the layer (a container's /run would be podman's).
    assert tree_entry(shared_store, result.image, "/run/osbuild-apt-sources.list") is None
    assert "osbuild" not in tree_run(shared_store, result.image, "ls", "-A", "/etc/apt/sources.list.d")


def test_apt_failure_names_the_package(base, build):
    result = build({"name": "debian-test", "stages": [*base, {"name": "org.osbuild.apt",
                                                              "options": {"packages": ["no-such-package-xyz"]}}]})
    assert result.returncode == 1
    assert "Unable to locate package no-such-package-xyz" in result.stderr
    assert "Traceback" not in result.stderr


def test_systemd_enables_disables_masks_and_sets_default(base, build, shared_store):
    options = {"enabled_services": ["systemd-networkd.service"], "disabled_services": ["e2scrub_reap.service"],
               "masked_services": ["systemd-pstore.service"], "default_target": "multi-user.target"}
    image = on_base(build, base, {"name": "org.osbuild.systemd", "options": options}).image
    assert tree_run(shared_store, image, "readlink", "/etc/systemd/system/multi-user.target.wants/"
                    "systemd-networkd.service") == "/lib/systemd/system/systemd-networkd.service\n"
    assert tree_run(shared_store, image, "readlink", "/etc/systemd/system/systemd-pstore.service") == "/dev/null\n"
    # is-enabled's status is part of its answer: 0, one of them is enabled.
    states = sh(shared_store, image, "systemctl is-enabled systemd-networkd e2scrub_reap systemd-pstore; echo $?")
    assert states.split() == ["enabled", "disabled", "masked", "0"]
    assert tree_run(shared_store, image, "systemctl", "get-default") == "multi-user.target\n"


def test_hostname(base, build, shared_store):
    image = on_base(build, base, {"name": "org.osbuild.hostname", "options": {"hostname": "web1.example.com"}}).image
    assert tree_file(shared_store, image, "/etc/hostname") == "web1.example.com\n"
    assert "127.0.1.1\tweb1.example.com web1\n" in tree_file(shared_store, image, "/etc/hosts")


def test_locale_is_set_and_generated(base, build, shared_store):
    image = on_base(build, base, {"name": "org.osbuild.locale", "options": {"language": "de_DE.UTF-8"}}).image
    assert tree_run(shared_store, image, "cat", "/etc/default/locale") == "LANG=de_DE.UTF-8\n"
    assert "de_DE.utf8" in tree_run(shared_store, image, "locale", "-a").split()


def test_timezone(base, build, shared_store):
    image = on_base(build, base, {"name": "org.osbuild.timezone", "options": {"zone": "Europe/Berlin"}}).image
    assert tree_run(shared_store, image, "readlink", "/etc/localtime") == "/usr/share/zoneinfo/Europe/Berlin\n"
    assert tree_run(shared_store, image, "cat", "/etc/timezone") == "Europe/Berlin\n"
    assert sh(shared_store, image, "date -d @0 +%Z") == "CET\n"


def test_timezone_missing_from_the_tree_is_refused_clearly(base, build):
    result = build({"name": "debian-test", "stages": [*base, {"name": "org.osbuild.timezone",
                                                              "options": {"zone": "Mars/Olympus_Mons"}}]})
    assert result.returncode == 1
    assert "time zone 'Mars/Olympus_Mons' does not exist in the tree's /usr/share/zoneinfo" in result.stderr
    assert "Traceback" not in result.stderr


def test_users_groups_passwords_and_keys(base, build, shared_store):
    options = {"groups": {"admins": {"gid": 2000}},
               "users": {"alice": {"uid": 1500, "gid": 1500, "groups": ["admins", "sudo"], "shell": "/bin/bash",
                                   "password": HASH, "key": KEY, "description": "Alice"},
                         "bob": {}},
               "root_password": HASH}
    image = on_base(build, base, {"name": "org.osbuild.users", "options": options}).image
    assert tree_run(shared_store, image, "getent", "passwd", "alice") == "alice:x:1500:1500:Alice:/home/alice:/bin/bash\n"
    assert tree_run(shared_store, image, "id", "-Gn", "alice").split() == ["alice", "sudo", "admins"]
    assert tree_run(shared_store, image, "getent", "group", "admins") == "admins:x:2000:alice\n"
    shadow = tree_run(shared_store, image, "cat", "/etc/shadow")
    hashes = {line.split(":")[0]: line.split(":")[1] for line in shadow.splitlines()}
    assert hashes["alice"] == HASH and hashes["root"] == HASH and hashes["bob"] == "!"
    assert tree_run(shared_store, image, "stat", "-c", "%a %U %G", "/home/alice/.ssh",
                    "/home/alice/.ssh/authorized_keys") == "700 alice alice\n600 alice alice\n"
    assert tree_run(shared_store, image, "cat", "/home/alice/.ssh/authorized_keys") == KEY + "\n"
    assert tree_run(shared_store, image, "stat", "-c", "%U", "/home/bob/.bashrc") == "bob\n"


def test_fstab(base, build, shared_store):
    options = {"filesystems": [
        {"uuid": "76a22bf4-f153-4541-b6c7-0332c0dfaeac", "path": "/", "vfs_type": "ext4",
         "options": "errors=remount-ro", "passno": 1},
        {"uuid": "7B77-95E7", "path": "/boot/efi", "vfs_type": "vfat", "options": "umask=0077", "passno": 2},
        {"label": "data", "path": "/srv", "vfs_type": "ext4"}]}
    image = on_base(build, base, {"name": "org.osbuild.fstab", "options": options}).image
    assert tree_run(shared_store, image, "cat", "/etc/fstab") == (
        "UUID=76a22bf4-f153-4541-b6c7-0332c0dfaeac\t/\text4\terrors=remount-ro\t0\t1\n"
        "UUID=7B77-95E7\t/boot/efi\tvfat\tumask=0077\t0\t2\n"
        "LABEL=data\t/srv\text4\tdefaults\t0\t0\n")


def test_copy_owner_names_resolve_in_the_tree(base, build, shared_store):
    # systemd-network and systemd-journal exist in the tree (systemd's sysusers), not in the stage image.
    options = {"files": [
        {"path": "/etc/network-app.conf", "content": "x=1\n", "mode": "0640",
         "owner": "systemd-network", "group": "systemd-journal"},
        {"path": "/usr/local/bin/hello", "content_base64": "IyEvYmluL3NoCmVjaG8gaGVsbG8K", "mode": "2755",
         "group": "systemd-journal"},
        {"path": "/bin/in-usr-bin", "content": "merged\n"}],
        "symlinks": [{"path": "/etc/app.d/current", "target": "/etc/network-app.conf"}]}
    image = on_base(build, base, {"name": "org.osbuild-oci.files", "options": options}).image
    ids = sh(shared_store, image, "getent passwd systemd-network | cut -d: -f3; getent group systemd-journal | cut -d: -f3")
    uid, gid = ids.split()
    assert tree_run(shared_store, image, "stat", "-c", "%a %u %g", "/etc/network-app.conf") == f"640 {uid} {gid}\n"
    assert tree_run(shared_store, image, "cat", "/etc/network-app.conf") == "x=1\n"
    assert tree_run(shared_store, image, "stat", "-c", "%a %U %G", "/usr/local/bin/hello") == \
        "2755 root systemd-journal\n"
    assert tree_run(shared_store, image, "/usr/local/bin/hello") == "hello\n"
    # /bin is the tree's symlink to usr/bin: the path is resolved inside the tree.
    assert tree_run(shared_store, image, "cat", "/usr/bin/in-usr-bin") == "merged\n"
    assert tree_run(shared_store, image, "readlink", "/etc/app.d/current") == "/etc/network-app.conf\n"
    assert sh(shared_store, image, "ls /tmp") == ""


def test_script_runs_inside_the_tree(base, build, shared_store):
    script = "set -e\nuseradd -u 1234 scripted\necho \"$(id -u scripted)\" > /etc/from-script\n" \
             "runuser -u scripted -- touch /tmp/made-by-scripted\nmv /tmp/made-by-scripted /etc/\n"
    image = on_base(build, base, {"name": "org.osbuild.script", "options": {"script": script}}).image
    assert tree_run(shared_store, image, "cat", "/etc/from-script") == "1234\n"
    assert tree_run(shared_store, image, "stat", "-c", "%U", "/etc/made-by-scripted") == "scripted\n"
    assert sh(shared_store, image, "ls /tmp") == ""

    perl = on_base(build, base, {"name": "org.osbuild.script", "options": {
        "interpreter": "/usr/bin/perl", "script": "open(F, '>', '/etc/perl-was-here'); print F \"yes\\n\";"}})
    assert tree_run(shared_store, perl.image, "cat", "/etc/perl-was-here") == "yes\n"


def test_script_failure_fails_the_build(base, build):
    result = build({"name": "debian-test", "stages": [*base, {"name": "org.osbuild.script",
                                                              "options": {"script": "echo about to fail; exit 3"}}]})
    assert result.returncode == 1
    assert "exited with status 3" in result.stderr
    assert "Traceback" not in result.stderr


BAD_OPTIONS = [
    ("org.osbuild.debootstrap", {"suite": "bookworm", "variant": "tiny"}, "stages[1].options.variant: 'tiny' is not one of"),
    ("org.osbuild.debootstrap", {"mirror": "http://deb.debian.org/debian"}, "stages[1].options: 'suite' is a required"),
    ("org.osbuild.apt", {"packages": "openssh-server"}, "stages[1].options.packages: expected array, got string"),
    ("org.osbuild.systemd", {"enabled_services": ["ssh service"]}, "stages[1].options.enabled_services[0]:"),
    ("org.osbuild.hostname", {"hostname": "-bad-"}, "stages[1].options.hostname:"),
    ("org.osbuild.locale", {"language": "en_US.UTF-8; rm -rf /"}, "stages[1].options.language:"),
    ("org.osbuild.timezone", {"zone": "../../etc/passwd"}, "stages[1].options.zone:"),
    ("org.osbuild.users", {"users": {"alice": {"uid": "1000"}}},
     "stages[1].options.users.alice.uid: expected integer, got string"),
    ("org.osbuild.fstab", {"filesystems": [{"path": "/", "vfs_type": "ext4"}]}, "stages[1].options.filesystems[0]: give exactly one of: uuid, label, device"),
    ("org.osbuild-oci.files", {"files": [{"path": "etc/relative", "content": "x"}]}, "stages[1].options.files[0].path:"),
    ("org.osbuild.script", {"script": "true", "network": True}, "stages[1].options.network: unknown property"),
]


@pytest.mark.parametrize("stage,options,expected", BAD_OPTIONS,
                         ids=[f"{s}-{i}" for i, (s, _, _) in enumerate(BAD_OPTIONS)])
def test_bad_options_are_refused_before_anything_runs(base, build, shared_store, stage, options, expected):
    before = store_state(shared_store)
    result = build({"name": "bad", "stages": [DEBOOTSTRAP, {"name": stage, "options": options}]})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert [(e["event"], e["status"]) for e in result.events] == [("build-failed", 2)], "nothing started"
    assert store_state(shared_store) == before, "no container ran and nothing was stored"


# A package line of apt's download log ("Get:3 URL bookworm/main amd64 cowsay all 3.03+dfsg2-8 [21.4 kB]");
# index lines ("Get:2 URL bookworm/main amd64 Packages [8790 kB]") have two fields fewer.
PACKAGE_DOWNLOAD = re.compile(r"^Get:\d+ (\S+ ){6}\[", re.MULTILINE)


def test_a_fresh_store_with_a_warm_package_cache_downloads_no_package(tmp_path, stage_images):
    cache = tmp_path / "packages"
    doc = {"name": "package-cache", "stages": [
        {"name": "org.osbuild.debootstrap", "options": {"suite": "bookworm", "variant": "minbase"}},
        {"name": "org.osbuild.apt", "options": {"packages": ["cowsay"]}}]}
    (tmp_path / "p.json").write_text(json.dumps(doc))

    def build(store: str) -> subprocess.CompletedProcess:
        proc = osbuild("build", tmp_path / "p.json", "--store", tmp_path / store, "--package-cache", cache, "--json")
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    first = build("store1")
    assert PACKAGE_DOWNLOAD.search(first.stderr), "the first build downloads (or the regex counts nothing)"
    assert len(list(cache.glob("*.deb"))) > 90, "minbase and cowsay went into the cache"
    second = build("store2")
    assert PACKAGE_DOWNLOAD.findall(second.stderr) == [], "every .deb came from the package cache"
    assert "Need to get 0 B/" in second.stderr
    image = json.loads(second.stdout.splitlines()[-1])["image"]
    assert tree_run(tmp_path / "store2", image, "sh", "-c",
                    "find / -xdev -name '*.deb'; test ! -e /run/osbuild || echo /run/osbuild") == ""
    assert tree_entry(tmp_path / "store2", image, "/run/osbuild/cache") is None
