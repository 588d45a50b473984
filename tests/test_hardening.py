"""Run as root, a stage image gets no more power than the allowlist, whatever its labels ask."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from helpers import build_stage, stage_podman, store_state, write_stage

GREEDY = '''#!/usr/bin/python3
import osbuild_stage

def greedy(tree, options):
    print("greedy stage ran")

osbuild_stage.main(greedy)
'''

# name_to_handle_at on a file of the host's filesystem (the output bind mount), then
# open_by_handle_at: the call behind the "shocker" escape, which needs CAP_DAC_READ_SEARCH.
SHOCKER = '''#!/usr/bin/python3
import ctypes, errno, os, sys, osbuild_stage

def shocker(tree, options, output):
    libc = ctypes.CDLL(None, use_errno=True)
    path = os.path.join(output, "probe")
    open(path, "w").close()
    handle = ctypes.create_string_buffer(8 + 128)
    ctypes.c_uint.from_buffer(handle).value = 128
    mount_id = ctypes.c_int()
    if libc.name_to_handle_at(-100, path.encode(), handle, ctypes.byref(mount_id), 0) != 0:
        raise OSError(ctypes.get_errno(), "name_to_handle_at")
    fd = libc.open_by_handle_at(os.open(output, os.O_RDONLY), handle, os.O_RDONLY)
    result = "opened" if fd >= 0 else errno.errorcode[ctypes.get_errno()]
    with open(os.path.join(output, "result"), "w") as f:
        f.write(result)

osbuild_stage.main(shocker)
'''


def test_a_label_asking_for_cap_sys_admin_is_refused_before_anything_runs(build, tmp_path, new_stage_names,
                                                                         shared_store):
    name = new_stage_names("test.greedy")
    source = tmp_path / "source"
    write_stage(source, name, GREEDY, labels={"org.osbuild-oci.capabilities": "CAP_CHOWN CAP_SYS_ADMIN"})
    assert build_stage(source, name).returncode == 0
    pipeline = {"name": "greedy", "stages": [{"name": "org.osbuild.noop", "options": {"greedy": 1}},
                                             {"name": name}]}
    warm = build({"name": "warm", "stages": [{"name": "org.osbuild.noop", "options": {"warm": 1}}]})
    assert warm.returncode == 0, warm.stderr
    before = store_state(shared_store)
    refused = build(pipeline)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert f"stages[1].name: stage image localhost/osbuild-oci/{name}:latest asks for CAP_SYS_ADMIN" in lines[0]
    assert "org.osbuild-oci.capabilities" in lines[0] and "--allow-capability CAP_SYS_ADMIN" in lines[0]
    assert store_state(shared_store) == before, "nothing ran and the store is unchanged"

    allowed = build(pipeline, None, None, "--allow-capability", "CAP_SYS_ADMIN")
    assert allowed.returncode == 0, allowed.stderr
    assert "--allow-capability CAP_SYS_ADMIN" in allowed.stderr, "a lifted allowlist is said out loud"


@pytest.mark.skipif(os.geteuid() != 0, reason="the escape it guards against needs real root")
def test_an_assembler_cannot_open_host_files_by_handle(build, tmp_path, new_stage_names):
    name = new_stage_names("test.shocker")
    source = tmp_path / "source"
    write_stage(source, name, SHOCKER, kind="assemblers",
                labels={"org.osbuild-oci.capabilities": "CAP_DAC_OVERRIDE"})
    assert build_stage(source, name).returncode == 0
    result = build({"name": "shocker", "stages": [], "assembler": {"name": name}}, None, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "result").read_text() == "EPERM"


# -- nothing written through: a hostile assembler's output -------------------------------------

LEAVE = '''#!/usr/bin/python3
import os, socket, stat, osbuild_stage

def leave(tree, options, output):
    case, victim = options["case"], options["victim"]
    def at(*parts):
        return os.path.join(output, *parts)
    with open(at("x.img"), "w") as f:
        f.write("image")
    if case == "link-as-the-sbom":
        os.symlink(victim, at("x.img.spdx.json"))
    elif case == "link-below":
        os.mkdir(at("sub"))
        os.symlink(victim, at("sub", "inner"))
    elif case == "fifo":
        os.mkfifo(at("pipe"))
    elif case == "socket":
        socket.socket(socket.AF_UNIX).bind(at("sock"))
    elif case == "device":
        os.mknod(at("sda"), 0o666 | stat.S_IFBLK, os.makedev(8, 0))
    elif case == "special-bits":
        os.chmod(at("x.img"), 0o4755)
        os.mkdir(at("shared"))
        os.chmod(at("shared"), 0o3777)
        with open(at("shared", "tool"), "w") as f:
            f.write("tool")
        os.chmod(at("shared", "tool"), 0o2750)

osbuild_stage.main(leave)
'''


@pytest.fixture(scope="module")
def leaving_assembler(tmp_path_factory, stage_images):
    """An assembler that leaves in its output what the case asks (a link to the host's VICTIM, a FIFO, a socket,
    a device node, setuid and sticky bits), with CAP_MKNOD for the node: a user must grant that by name."""
    from helpers import remove_default_images, stage_ref, unique_name
    name = unique_name("test.leave")
    root = tmp_path_factory.mktemp("leave")
    write_stage(root / "source", name, LEAVE, kind="assemblers", labels={"org.osbuild-oci.capabilities": "CAP_MKNOD"})
    build_stage(root / "source", name)
    victim = root / "victim"
    victim.write_text("the host's own file\n")
    yield name, victim
    remove_default_images(stage_ref(name))


def _leave(leaving_assembler, case: str) -> dict:
    name, victim = leaving_assembler
    return {"name": f"leave-{case}", "stages": [{"name": "org.osbuild.noop", "options": {"leave": 1}}],
            "assembler": {"name": name, "options": {"filename": "x.img", "case": case, "victim": str(victim)}}}


@pytest.mark.parametrize("case, named", [("link-as-the-sbom", "'x.img.spdx.json', a symbolic link"),
                                         ("link-below", "'sub/inner', a symbolic link"),
                                         ("fifo", "'pipe', a FIFO"), ("socket", "'sock', a socket"),
                                         ("device", "'sda', a device")])
def test_an_output_holding_anything_but_files_and_folders_fails_naming_it_and_writes_nothing_through(
        build, tmp_path, leaving_assembler, case, named):
    _, victim = leaving_assembler
    result = build(_leave(leaving_assembler, case), None, tmp_path / "out", "--allow-capability", "CAP_MKNOD")
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: the output holds {named}: an assembler's output may only be regular files and "
                      "directories"], result.stderr
    assert victim.read_text() == "the host's own file\n", "the host wrote through the assembler's link"
    assert list((tmp_path / "out").iterdir()) == [], "nothing of a refused output reaches -o"


@pytest.mark.skipif(os.geteuid() != 0, reason="SUDO_UID is root's: an ordinary user's outputs are already theirs")
def test_an_output_reaches_o_without_special_bits_and_owned_by_the_sudo_user_built_or_cached(
        build, tmp_path, leaving_assembler):
    """Under sudo, every file and every folder made for -o belongs to the user who ran sudo, whether the
    assembler ran or its kept output was copied; setuid, setgid and sticky bits never arrive."""
    sudo = {"SUDO_UID": "4242", "SUDO_GID": "4343"}
    pipeline = tmp_path / "special-bits.json"
    pipeline.write_text(json.dumps(_leave(leaving_assembler, "special-bits")))
    seen = {}
    for run in ("built", "cached"):
        result = build(pipeline, None, tmp_path / run / "new" / "out", "--allow-capability", "CAP_MKNOD", env=sudo)
        assert result.returncode == 0, result.stderr
        assert result.of("assembler-done")[0]["source"] == ("store" if run == "cached" else "built")
        seen[run] = {str(path.relative_to(tmp_path / run)): (oct(path.stat().st_mode), path.stat().st_uid,
                                                             path.stat().st_gid)
                     for path in [tmp_path / run / "new", *sorted((tmp_path / run / "new").rglob("*"))]}
    assert seen["built"] == seen["cached"], seen
    umask = os.umask(0)
    os.umask(umask)
    assert seen["built"] == {  # what reaches -o is made under the user's umask, as cp makes it
        "new": (oct(0o40755 & ~umask), 4242, 4343), "new/out": (oct(0o40755 & ~umask), 4242, 4343),
        "new/out/shared": (oct(0o40777 & ~umask), 4242, 4343), "new/out/shared/tool": ("0o100750", 4242, 4343),
        "new/out/x.img": ("0o100755", 4242, 4343), "new/out/x.img.spdx.json": ("0o100644", 4242, 4343)}, seen


# -- nothing read through: a hostile tree's dpkg database ---------------------------------------

PLANT = '''#!/usr/bin/python3
import os, osbuild_stage

def plant(tree, options):
    case, host = options["case"], options["host"]
    os.makedirs(os.path.join(tree, "var/lib/dpkg"))
    os.makedirs(os.path.join(tree, "usr/share/doc/hello"))
    status = os.path.join(tree, "var/lib/dpkg/status")
    name = {"absolute-name": host, "dotdot-name": "../../../../../../../.." + host}.get(case, "hello")
    if case == "status-link":
        os.symlink(host + "/status", status)
    elif case == "status-dev-zero":
        os.symlink("/dev/zero", status)
    elif case == "status-fifo":
        os.mkfifo(status)
    elif case == "status-sparse":
        with open(status, "wb") as f:
            f.truncate(1 << 40)
    else:
        with open(status, "w") as f:
            f.write(f"Package: {name}\\nStatus: install ok installed\\nVersion: 1\\nArchitecture: all\\n")
    if case == "copyright-link":
        os.symlink(host + "/copyright", os.path.join(tree, "usr/share/doc/hello/copyright"))

osbuild_stage.main(plant)
'''
LEAK = "leaked-host-secret"


@pytest.fixture(scope="module")
def plant_stage(tmp_path_factory, stage_images):
    """A stage that makes the tree's dpkg database hostile as asked, and the host directory it points at."""
    from helpers import remove_default_images, stage_ref, unique_name
    name = unique_name("test.plant")
    root = tmp_path_factory.mktemp("plant")
    write_stage(root / "source", name, PLANT, labels={"org.osbuild-oci.capabilities": "CAP_DAC_OVERRIDE"})
    build_stage(root / "source", name)
    host = root / "host"
    host.mkdir()
    (host / "status").write_text(f"Package: {LEAK}\nStatus: install ok installed\nVersion: 1\n")
    (host / "copyright").write_text("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
                                    f"Files: *\nLicense: {LEAK}\n")
    yield name, host
    remove_default_images(stage_ref(name))


def _build_with_timeout(pipeline: dict, store, tmp_path, timeout: float = 180):
    """The build as a user runs it, killed if it hangs (a FIFO once made it wait for ever)."""
    from helpers import osbuild_popen
    path = tmp_path / "p.json"
    path.write_text(json.dumps(pipeline))
    proc = osbuild_popen("build", path, "--store", store, "--json")
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"the build still ran after {timeout} s")
    return proc.returncode, out, err


@pytest.mark.parametrize("case, why", [("status-link", "is a symbolic link"),
                                       ("status-dev-zero", "is a symbolic link"),
                                       ("status-fifo", "is not a regular file"),
                                       ("status-sparse", "holds 1099511627776 bytes"),
                                       ("absolute-name", "is no Debian package name"),
                                       ("dotdot-name", "is no Debian package name")])
def test_a_hostile_dpkg_status_fails_the_build_in_one_line_without_reading_the_host(plant_stage, shared_store,
                                                                                    tmp_path, case, why):
    name, host = plant_stage
    code, out, err = _build_with_timeout({"name": "hostile", "stages": [
        {"name": name, "options": {"case": case, "host": str(host)}}]}, shared_store, tmp_path)
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "var/lib/dpkg/status" in errors[0] and why in errors[0], err
    assert "Traceback" not in err and LEAK not in out + err
    assert '"stage-done"' not in out, "nothing is stored under the stage's id"


def test_a_copyright_link_out_of_the_tree_is_noassertion_in_the_sbom(plant_stage, shared_store, tmp_path):
    from helpers import osbuild, sbom_of
    name, host = plant_stage
    code, out, err = _build_with_timeout({"name": "hostile", "stages": [
        {"name": name, "options": {"case": "copyright-link", "host": str(host)}}]}, shared_store, tmp_path)
    assert code == 0, err
    tree = json.loads(out.splitlines()[-1])["tree"]
    document = sbom_of(shared_store, tree)
    assert [(p["name"], p["licenseDeclared"]) for p in document["packages"] if p.get("externalRefs")] == \
        [("hello", "NOASSERTION")]
    assert LEAK not in osbuild("sbom", tree, "--store", shared_store).stdout


# -- signatures that cannot be rolled back, attachments within limits ----------------------------

def _registry_build(pipeline: dict, store, tmp_path, *extra: str):
    from helpers import run_build
    result = run_build(pipeline, store, tmp_path / f"out-{len(list(tmp_path.iterdir()))}", "--no-tls-verify", *extra)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def _files(content: str, base: str | None = None) -> dict:
    return {"name": f"app-{content}", **({"base": base} if base else {}),
            "stages": [{"name": "org.osbuild-oci.files", "options": {"files": [{"path": "/srv/v", "content": content}]}}]}


def test_a_tag_rolled_back_to_an_older_signed_image_is_refused_naming_both_dates(registry, tmp_path, stage_images):
    import re
    import time
    import uuid

    from helpers import osbuild, skopeo_inspect, tree_entry
    assert osbuild("key", "generate", tmp_path / "team").returncode == 0
    sign, trust = ("--sign-key", tmp_path / "team.key"), ("--trust-key", tmp_path / "team.pub")
    repo = f"{registry[0]}/rollback{uuid.uuid4().hex[:8]}/app"
    ref = f"{repo}:stable"
    assert _registry_build(_files("old"), tmp_path / "publisher", tmp_path, "--push", ref, *sign).returncode == 0
    old = skopeo_inspect(ref)["Digest"]
    time.sleep(1.1)  # signing times are in seconds
    assert _registry_build(_files("new"), tmp_path / "publisher", tmp_path, "--push", ref, *sign).returncode == 0

    consumer = _files("app", base=ref)
    first = _registry_build(consumer, tmp_path / "consumer", tmp_path, *trust)
    assert first.returncode == 0, first.stderr
    assert tree_entry(tmp_path / "consumer", first.image, "/srv/v")[1] == b"app"
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", f"docker://{repo}@{old}",
                    f"docker://{ref}"], check=True, capture_output=True)
    rolled = _registry_build(consumer, tmp_path / "consumer", tmp_path, *trust)
    assert rolled.returncode == 1, rolled.stderr
    line = rolled.stderr.strip().splitlines()[-1]
    dates = re.findall(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line)
    assert line.startswith(f"error: cannot trust {ref}") and "a rollback?" in line and len(dates) == 2, line
    assert dates[0] < dates[1] and f"it was signed {dates[0]}, before the signature of {dates[1]}" in line
    # The record is the store's: a fresh store has seen nothing newer (docs/decisions/026-signatures-are-refused-when-older-than-what-was-accepted.md).
    fresh = _registry_build(consumer, tmp_path / "fresh", tmp_path, *trust)
    assert fresh.returncode == 0, fresh.stderr

    # The SBOM attachment is signed for its own tag: another tree's SBOM put in its place is refused.
    assert osbuild("sbom", ref, "--no-tls-verify", *trust).returncode == 0
    other = _registry_build(_files("other"), tmp_path / "publisher", tmp_path, "--push", f"{repo}:other", *sign)
    assert other.returncode == 0, other.stderr
    other_digest = skopeo_inspect(f"{repo}:other")["Digest"]
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                    f"docker://{repo}:{other_digest.replace(':', '-')}.sbom",
                    f"docker://{repo}:{old.replace(':', '-')}.sbom"], check=True, capture_output=True)
    swapped = osbuild("sbom", ref, "--no-tls-verify", *trust)
    assert swapped.returncode == 1 and f"it is signed as {repo}:{other_digest.replace(':', '-')}.sbom" in swapped.stderr
    assert osbuild("sbom", ref, "--no-tls-verify").returncode == 0, "without trust keys the registry is trusted"


def test_an_oversized_signature_artifact_is_an_untrusted_cache_miss(registry, tmp_path, stage_images):
    import hashlib
    import uuid

    from helpers import osbuild, skopeo_inspect
    assert osbuild("key", "generate", tmp_path / "team").returncode == 0
    repo = f"{registry[0]}/oversized{uuid.uuid4().hex[:8]}/trees"
    pipeline = _files("big")
    pushed = _registry_build(pipeline, tmp_path / "publisher", tmp_path, "--cache-to", repo,
                             "--sign-key", tmp_path / "team.key")
    assert pushed.returncode == 0, pushed.stderr
    digest = skopeo_inspect(f"{repo}:{pushed.tree}")["Digest"]
    layout = tmp_path / "layout"
    (layout / "blobs/sha256").mkdir(parents=True)

    def blob(data: bytes) -> dict:
        (layout / "blobs/sha256" / hashlib.sha256(data).hexdigest()).write_bytes(data)
        return {"digest": f"sha256:{hashlib.sha256(data).hexdigest()}", "size": len(data)}
    payload = {"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", **blob(b"x" * (5 << 20)),
               "annotations": {"dev.cosignproject.cosign/signature": "c2ln"}}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": [payload],
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(b"{}")}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(json.dumps(manifest).encode())}]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}",
                    f"docker://{repo}:{digest.replace(':', '-')}.sig"], check=True, capture_output=True)
    pulled = _registry_build(pipeline, tmp_path / "consumer", tmp_path, "--cache-from", repo,
                             "--trust-key", tmp_path / "team.pub")
    assert pulled.returncode == 0, pulled.stderr
    assert [e["reason"] for e in pulled.of("cache-untrusted")] == [
        f"its signature artifact {repo}:{digest.replace(':', '-')}.sig is malformed: a blob of 5242880 bytes is "
        "not within 0 to 4194304"]
    assert pulled.ran == ["org.osbuild-oci.files"]


@pytest.mark.parametrize("annotation", ["run.oci.keep_original_groups=1", "io.podman.annotations.privileged=TRUE"])
def test_a_stage_image_with_a_runtime_annotation_is_refused_before_anything_runs(build, tmp_path, new_stage_names,
                                                                                shared_store, annotation):
    name = new_stage_names("test.annotated")
    folder = write_stage(tmp_path / "source", name, GREEDY)
    schema = json.dumps(json.loads((folder / "schema.json").read_text()), separators=(",", ":"))
    assert stage_podman("build", "--quiet", "--annotation", annotation, "--label", "org.osbuild-oci.kind=stage",
                        "--label", f"org.osbuild-oci.schema={schema}", "-t", f"localhost/osbuild-oci/{name}:latest",
                        str(folder)).returncode == 0
    warm = build({"name": "warm", "stages": [{"name": "org.osbuild.noop", "options": {"warm": 1}}]})
    assert warm.returncode == 0, warm.stderr
    before = store_state(shared_store)
    refused = build({"name": "annotated", "stages": [{"name": name}]})
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"error: {tmp_path}/out-1.json: stages[0]: image localhost/osbuild-oci/{name}:latest carries the "
        f"annotation {annotation.split('=')[0]}, which the container runtime acts on (run.oci.*, io.podman.*, "
        "io.containers.* are refused): rebuild it without, or use another image"]
    assert store_state(shared_store) == before, "nothing ran and the store is unchanged"
