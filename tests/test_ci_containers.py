"""Where CI runs: the osbuild-oci image in an unprivileged container, and Kubernetes pods sharing one registry.

The image is built once (`osbuild-oci image build`) and loaded into the unprivileged test user's
storage.  Its containers run without --privileged and without an added capability, as root's
podman and as the user's, and build against the registry on 127.0.0.1.  The pods are the Job
pods `osbuild-oci kube job` prints, played by the user's `podman kube play` with podman 4.3's
stand-ins (docs/ci.md): a Pod of the Job's template, hostNetwork, privileged in place of
procMount (confined to the user's namespace), unique emptyDir names, and the Secrets as hostPath
directories.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from helpers import REPO, events_of, osbuild, skopeo_inspect

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="makes its own unprivileged user: run the suite as root")]

IMAGE = "localhost/osbuild-oci:latest"
TREE = "debian-bookworm-tree.json"
HTTP = "--no-tls-verify"
# What each container gets beyond podman's defaults: nothing but an unmasked /proc and /sys.
UNPRIVILEGED = ["--security-opt", "unmask=ALL"]
# slirp4netns's address of the host's 127.0.0.1 (allow_host_loopback): a rootless container with a network
# namespace of its own reaches the registry there (with the host's network, its /sys would be the host's).
HOST_LOOPBACK = "10.0.2.2"


@dataclass
class Side:
    """Who runs the image: root's podman or the unprivileged user's, and how its containers reach the registry."""

    name: str
    user: str | None
    network: str
    loopback: str

    def argv(self, *cmd: str) -> list[str]:
        if self.user is None:
            return list(cmd)
        home = pwd.getpwnam(self.user).pw_dir
        return ["runuser", "-u", self.user, "--", "env", "-i", f"HOME={home}", f"USER={self.user}",
                "PATH=/usr/bin:/bin:/usr/sbin:/sbin", *cmd]

    def run(self, *cmd: str, timeout: float = 1800, stdin=None) -> subprocess.CompletedProcess:
        cwd = pwd.getpwnam(self.user).pw_dir if self.user else "/"
        return subprocess.run(self.argv(*map(str, cmd)), capture_output=True, timeout=timeout, cwd=cwd, stdin=stdin)

    def image(self, work: Path, *args: str, entrypoint: list[str] | None = None,
              options: list[str] = UNPRIVILEGED) -> tuple[subprocess.CompletedProcess, list[dict]]:
        """`podman run` of the image with the work directory at /work; its result and --json events."""
        proc = self.run("podman", "run", "--rm", "--network", self.network, *options, "-v", f"{work}:/work:ro",
                        *(["--entrypoint", entrypoint[0]] if entrypoint else []), IMAGE,
                        *(entrypoint or [])[1:], *args)
        return proc, events_of(proc.stdout.decode(errors="replace"))


ROOT = Side("root", None, "host", "127.0.0.1")


@dataclass
class Shared:
    """The registry with the signed stage images, and a work directory every container may read."""

    registry: str
    work: Path
    side: dict[str, Side]

    def namespace(self, side: Side, name: str = "osbuild") -> str:
        """REGISTRY/NAME as SIDE's containers reach it.  osbuild holds the stage images and the pods' trees
        (kube job puts both under one namespace); root's and the user's trees go to their own."""
        return f"{self.registry.replace('127.0.0.1', side.loopback)}/{name}"

    @property
    def keys(self) -> list[str]:
        return ["--sign-key", "/work/keys/team.key", "--sign-passphrase-file", "/work/keys/pass",
                "--trust-key", "/work/keys/team.pub"]


@pytest.fixture(scope="module")
def image(stage_images) -> str:
    """`osbuild-oci image build` into root's storage (podman's layer cache makes a rebuild of unchanged
    sources quick)."""
    proc = osbuild("image", "build")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == IMAGE
    return IMAGE


@pytest.fixture(scope="module")
def user_side(image, test_user) -> Side:
    """The unprivileged user with root's image loaded (not built again)."""
    side = Side("user", test_user, "slirp4netns:allow_host_loopback=true", HOST_LOOPBACK)
    saved = subprocess.Popen(["podman", "save", image], stdout=subprocess.PIPE)
    loaded = side.run("podman", "load", "--quiet", stdin=saved.stdout)
    assert saved.wait() == 0 and loaded.returncode == 0, loaded.stderr
    yield side
    side.run("podman", "rmi", "--force", image)


@pytest.fixture(scope="module")
def shared(registry, user_side) -> Shared:
    """Stage images pushed and signed; pipelines and a key pair in a directory root's and the user's containers
    read (uid 1000 in either is neither root nor the user, hence the modes)."""
    work = Path(tempfile.mkdtemp(prefix="osbuild-oci-ci-", dir="/var/tmp"))
    work.chmod(0o755)
    (work / "keys").mkdir(mode=0o755)
    (work / "keys" / "pass").write_text("ci passphrase\n")
    made = osbuild("key", "generate", work / "keys" / "team", "--passphrase-file", work / "keys" / "pass")
    assert made.returncode == 0, made.stderr
    (work / "pipelines").mkdir(mode=0o755)
    for path in (REPO / "pipelines").glob("*.json"):
        shutil.copy(path, work / "pipelines" / path.name)
    for path in work.rglob("*"):
        if path.is_file():
            path.chmod(0o644)  # test-only: the private key too, as a Kubernetes Secret's files are by default
    address = registry[0]
    pushed = osbuild("stages", "push", f"{address}/osbuild", HTTP, "--sign-key", work / "keys" / "team.key",
                     "--sign-passphrase-file", work / "keys" / "pass")
    assert pushed.returncode == 0, pushed.stderr
    yield Shared(address, work, {"root": ROOT, "user": user_side})
    for store in work.glob("*-store"):
        osbuild("store", "delete", "--store", store)
    shutil.rmtree(work)


def stages_of(pipeline: Path) -> list[str]:
    return [stage["name"] for stage in json.loads(pipeline.read_text())["stages"]]


@pytest.fixture(scope="module")
def root_tree(shared) -> dict:
    """The Debian tree pipeline built in root's unprivileged container, trees signed and pushed."""
    ns, trees = shared.namespace(ROOT), f"{shared.namespace(ROOT, 'root')}/trees"
    proc, events = ROOT.image(shared.work, "build", f"/work/pipelines/{TREE}", "--json", "--stages-from", ns,
                              "--cache-from", trees, "--cache-to", trees, HTTP, *shared.keys)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"events": events, "stderr": proc.stderr.decode(errors="replace")}


def done(events: list[dict]) -> list[dict]:
    return [e for e in events if e["event"] == "stage-done"]


def test_unprivileged_container_as_root_builds_the_debian_tree_and_pushes_signed_trees(shared, root_tree):
    events = root_tree["events"]
    assert [e["stage"] for e in done(events) if not e["cached"]] == stages_of(REPO / "pipelines" / TREE)
    pushed = [e["image"] for e in events if e["event"] == "tree-pushed"]
    assert len(pushed) == 6 and not [e for e in events if e["event"] == "cache-untrusted"]
    final = [e for e in events if e["event"] == "build-done"][0]["tree"]
    digest = skopeo_inspect(f"{shared.registry}/root/trees:{final}")["Digest"]
    skopeo_inspect(f"{shared.registry}/root/trees:{digest.replace(':', '-')}.sig", "--raw")
    # The same tree id as this host's own plan of the pipeline: the container's stage images are the host's.
    planned = osbuild("inspect", REPO / "pipelines" / TREE, "--json", "--store", shared.work / "plan-store")
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["stages"][-1]["id"] == final


def test_unprivileged_container_as_the_user_builds_on_the_cached_tree(shared, root_tree):
    """Rootless podman runs the image rootless again inside: the user's container takes root's trees from
    the registry and runs one more stage itself."""
    side = shared.side["user"]
    ns, root_trees, trees = shared.namespace(side), f"{shared.namespace(side, 'root')}/trees", \
        f"{shared.namespace(side, 'user')}/trees"
    pipeline = json.loads((REPO / "pipelines" / TREE).read_text())
    pipeline["stages"].append({"name": "org.osbuild-oci.files",
                               "options": {"files": [{"path": "/etc/motd", "content": "built in a container\n"}]}})
    path = shared.work / "pipelines" / "tree-plus-one.json"
    path.write_text(json.dumps(pipeline))
    path.chmod(0o644)
    # No trust key: root's signatures name 127.0.0.1, which this container calls 10.0.2.2.
    proc, events = side.image(shared.work, "build", "/work/pipelines/tree-plus-one.json", "--json",
                              "--stages-from", ns, "--cache-from", root_trees, "--cache-to", trees, HTTP)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stages = done(events)
    assert [e["stage"] for e in stages if not e["cached"]] == ["org.osbuild-oci.files"]
    assert {e["source"] for e in stages if e["cached"]} == {root_trees}
    final = [e for e in events if e["event"] == "build-done"][0]["tree"]
    assert final == stages[-1]["id"] != stages[-2]["id"] == done(root_tree["events"])[-1]["id"]
    skopeo_inspect(f"{shared.registry}/user/trees:{final}")


@pytest.mark.parametrize("who", ["root", "user"])
def test_a_missing_privilege_is_named_by_the_doctor_not_a_409(shared, who):
    """Without the unmask: the entrypoint's doctor stops before anything runs; with the doctor bypassed (a CI
    system that overrides the entrypoint), the stage container's failure names the same cause."""
    side = shared.side[who]
    ns = shared.namespace(side)
    args = ["build", "/work/pipelines/noop.json", "--stages-from", ns, HTTP]
    proc, _ = side.image(shared.work, *args, options=[])
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 1 and stderr.startswith("error: /proc and /sys are masked"), stderr
    assert "unmask=ALL" in stderr and "procMount: Unmasked" in stderr and "Building" not in stderr
    if who == "user":
        return  # the same engine code as root's; the user's pull of the stage through slirp4netns is slow
    script = "osbuild-oci image prepare && exec osbuild-oci " + " ".join(args)
    proc, _ = side.image(shared.work, entrypoint=["sh", "-c", script], options=[])
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 1, stderr
    assert "operation not permitted" in stderr and "osbuild-oci doctor finds the cause: /proc and /sys are masked" in \
        stderr, stderr


@pytest.mark.parametrize("options, script, finding", [
    (["--security-opt", "no-new-privileges"], None, "no_new_privs is set"),
    (["--cap-drop", "SETUID"], None, "CAP_SETUID is not in the bounding set"),
    (["--image-volume", "ignore"], None, "cannot mount overlay at /var/lib/osbuild-oci/data"),
    (["--user", "0"], "setcap -r /usr/bin/newuidmap && chmod u+s /usr/bin/newuidmap && runuser -u builder -- "
                      "osbuild-oci doctor", "newuidmap have no file capabilities"),
    (["--user", "0"], "echo builder:1:999 > /etc/subuid && runuser -u builder -- osbuild-oci doctor",
     "builder has 999 subordinate uids"),
    (["--user", "0"], None, "running as root without CAP_SYS_ADMIN"),
])
def test_the_doctor_names_each_missing_privilege(shared, options, script, finding):
    """Each cause the research found, made on purpose in root's container (the /proc masked by default is above)."""
    entrypoint = ["sh", "-c", script] if script else ["osbuild-oci", "doctor"]
    proc, _ = ROOT.image(shared.work, entrypoint=entrypoint, options=[*UNPRIVILEGED, *options])
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 1 and [line for line in stderr.splitlines() if finding in line], stderr
    assert all(line.startswith(("error: ", "warning: ")) for line in stderr.splitlines()), stderr


# -- Kubernetes pods, played by the user's podman kube play --------------------------------------------------------

def pod_of(manifests: str, name: str, secrets: dict[str, Path]) -> str:
    """The kube job manifests as podman 4.3 can play them: the ConfigMap, and the Job's pod template as a Pod."""
    config, job = yaml.safe_load_all(manifests)
    spec = job["spec"]["template"]["spec"]
    spec["hostNetwork"] = True  # /dev/net/tun is 0600 here, and it reaches the registry on 127.0.0.1
    del spec["hostUsers"]  # podman 4.3 would make it --userns=auto, which needs ids the user does not have
    (container,) = spec["containers"]
    container["securityContext"]["privileged"] = True  # procMount is ignored before podman 4.7
    container["imagePullPolicy"] = "Never"
    for volume in spec["volumes"]:
        if "emptyDir" in volume:  # podman names the volume after it: unique, or pods share it
            for mount in container["volumeMounts"]:
                if mount["name"] == volume["name"]:
                    mount["name"] = f"{volume['name']}-{name}"
            volume["name"] = f"{volume['name']}-{name}"
        if "secret" in volume:  # podman 4.3 mis-decodes Secrets: their files, from a directory
            volume["hostPath"] = {"path": str(secrets[volume.pop("secret")["secretName"]]), "type": "Directory"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": job["metadata"]["labels"]},
           "spec": spec}
    return yaml.safe_dump_all([config, pod])


@dataclass
class Pod:
    name: str
    spec: Path
    started: float


class Pods:
    """Pods of `kube job` manifests, played and removed (volumes included) by the user."""

    def __init__(self, shared: Shared):
        self.shared, self.side, self.played = shared, shared.side["user"], []
        keys = shared.work / "keys"
        self.secrets = {"team-sign": shared.work / "secret-sign", "team-trust": shared.work / "secret-trust"}
        for secret, files in (("team-sign", {"cosign.key": "team.key", "cosign.password": "pass"}),
                              ("team-trust", {"cosign.pub": "team.pub"})):
            self.secrets[secret].mkdir(mode=0o755, exist_ok=True)
            for name, source in files.items():
                shutil.copy(keys / source, self.secrets[secret] / name)

    def play(self, pipeline: dict, *kube_args: str) -> Pod:
        name = f"ci-{uuid.uuid4().hex[:8]}"
        path = self.shared.work / f"{name}.json"
        path.write_text(json.dumps(pipeline))
        made = osbuild("kube", "job", path, "--image", IMAGE, "--registry", f"{self.shared.registry}/osbuild", HTTP,
                       *kube_args)
        assert made.returncode == 0, made.stderr
        spec = self.shared.work / f"{name}.yaml"
        spec.write_text(pod_of(made.stdout, name, self.secrets))
        spec.chmod(0o644)
        started = time.monotonic()
        proc = self.side.run("podman", "kube", "play", spec)
        assert proc.returncode == 0, proc.stderr
        self.played.append(spec)
        return Pod(name, spec, started)

    def wait(self, pod: Pod) -> tuple[int, list[dict], str, float]:
        """The pod's exit status, events, stderr and seconds from play to exit."""
        code = self.side.run("podman", "wait", f"{pod.name}-build")
        took = time.monotonic() - pod.started
        logs = self.side.run("podman", "logs", f"{pod.name}-build")
        return int(code.stdout), events_of(logs.stdout.decode(errors="replace")), logs.stderr.decode(errors="replace"), took

    def remove(self) -> None:
        for spec in self.played:  # the pods' infra containers would take podman's 10 s to stop
            self.side.run("podman", "pod", "rm", "--force", "--time", "0", spec.stem)
        volumes = self.side.run("podman", "volume", "ls", "--quiet").stdout.decode().split()
        ours = [v for v in volumes if any(v.endswith(f"-{s.stem}") or v.startswith("osbuild-oci-pipelines-")
                                          for s in self.played)]
        if ours:
            self.side.run("podman", "volume", "rm", "--force", *ours)


@pytest.fixture
def pods(shared):
    played = Pods(shared)
    yield played
    played.remove()


def small(tag: str, *last: str) -> dict:
    """A pipeline of cheap stages from the empty tree: a noop, then a file per LAST."""
    return {"name": f"small-{tag}", "stages": [{"name": "org.osbuild.noop", "options": {"tag": tag}},
                                               *({"name": "org.osbuild-oci.files",
                                                  "options": {"files": [{"path": f"/srv/{x}", "content": x}]}}
                                                 for x in last)]}


def test_pod_a_builds_and_signs_and_a_fresh_pod_b_runs_no_stage_and_checks_the_signatures(pods):
    pipeline = small(uuid.uuid4().hex, "a", "b")
    code, events, stderr, _ = pods.wait(pods.play(pipeline, "--sign-key-secret", "team-sign",
                                                  "--trust-key-secret", "team-trust"))
    assert code == 0, stderr[-3000:]
    assert [e["cached"] for e in done(events)] == [False] * 3
    pushed = [e["image"] for e in events if e["event"] == "tree-pushed"]
    assert len(pushed) == 3
    for ref in pushed:
        digest = skopeo_inspect(ref)["Digest"]
        skopeo_inspect(f"{ref.rsplit(':', 1)[0]}:{digest.replace(':', '-')}.sig", "--raw")

    code, events, stderr, _ = pods.wait(pods.play(pipeline, "--trust-key-secret", "team-trust"))
    assert code == 0, stderr[-3000:]
    assert [e["cached"] for e in done(events)] == [True] * 3, "pod B found every tree in the registry"
    assert {e["source"] for e in done(events)} == {f"{pods.shared.registry}/osbuild/trees"}
    assert not [e for e in events if e["event"] == "cache-untrusted"], "every signature checked out"


def verifies(shared: Shared, tree: str) -> subprocess.CompletedProcess:
    """Whether osbuild-oci takes the tree from the registry as a base under the team's key (an unsigned or
    wrongly signed base fails the build)."""
    pipeline = shared.work / f"verify-{tree[:12]}.json"
    pipeline.write_text(json.dumps({"name": "verify", "base": f"{shared.registry}/osbuild/trees:{tree}",
                                    "stages": []}))
    return osbuild("build", pipeline, "--store", shared.work / "verify-store", HTTP,
                   "--trust-key", shared.work / "keys" / "team.pub")


def test_two_pods_build_pipelines_sharing_a_prefix_at_once_and_every_tree_verifies(pods):
    tag = uuid.uuid4().hex
    first, second = small(tag, "prefix", "one"), small(tag, "prefix", "two")
    running = [pods.play(p, "--sign-key-secret", "team-sign", "--trust-key-secret", "team-trust")
               for p in (first, second)]
    results = [pods.wait(pod) for pod in running]
    for code, events, stderr, _ in results:
        assert code == 0, stderr[-3000:]
    trees = [[e["id"] for e in done(events)] for _, events, _, _ in results]
    assert trees[0][:2] == trees[1][:2] and trees[0][2] != trees[1][2], "a shared prefix, different last trees"
    listed = subprocess.run(["skopeo", "list-tags", "--tls-verify=false",
                             f"docker://{pods.shared.registry}/osbuild/trees"], capture_output=True, text=True)
    tags = {tag for tag in json.loads(listed.stdout)["Tags"] if len(tag) == 64}
    assert set(trees[0]) | set(trees[1]) <= tags
    for tree in sorted(tags):  # and pod A's, when it ran first: every tree the pods' registry holds
        proc = verifies(pods.shared, tree)
        assert proc.returncode == 0, f"tree {tree}: {proc.stderr}"
