"""`osbuild-oci kube job`: the manifests it prints are valid Kubernetes objects that say what the pod needs.

Pure logic (no containers): the YAML is parsed back with PyYAML and checked, strictly (no unknown
field), against the OpenAPI schemas kubernetes-validate bundles, for the oldest Kubernetes the
manifests need (1.33: backoffLimitPerIndex GA, user namespaces on by default) and the newest it knows.
"""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
import yaml

from helpers import REPO, osbuild

VERSIONS = ("1.33.0", kubernetes_validate.latest_version())
NOOP = REPO / "pipelines" / "noop.json"
QCOW2 = REPO / "pipelines" / "debian-bookworm-qcow2.json"
BASE = ["--image", "registry.example.com/osbuild-oci:1", "--registry", "registry.example.com/osbuild"]


def kube_job(*args) -> list[dict]:
    proc = osbuild("kube", "job", *args)
    assert proc.returncode == 0, proc.stderr
    return list(yaml.safe_load_all(proc.stdout))


def validate(documents: list[dict]) -> None:
    for document in documents:
        for version in VERSIONS:
            kubernetes_validate.validate(document, version, strict=True)


def pod(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


@pytest.mark.parametrize("extra", [
    [],
    ["--auth-secret", "regcred", "--sign-key-secret", "team-sign", "--trust-key-secret", "team-trust",
     "--trust-key-secret", "old-trust", "--arch", "arm64", "--storage", "20Gi"],
    ["--indexed", "--auth-secret", "regcred", "--no-tls-verify", "--baked-stages"],
])
def test_manifests_are_valid_kubernetes_objects(extra):
    documents = kube_job(NOOP, QCOW2, *BASE, *extra)
    validate(documents)
    config, *jobs = documents
    assert config["kind"] == "ConfigMap"
    assert [config["data"][f"{i}.json"] for i in range(2)] == [NOOP.read_text(), QCOW2.read_text()]
    assert [job["kind"] for job in jobs] == ["Job"] * (1 if "--indexed" in extra else 2)
    names = [job["metadata"]["name"] for job in jobs]
    assert len(set(names)) == len(names) and all(len(name) <= 63 for name in names)
    assert kube_job(NOOP, QCOW2, *BASE, *extra) == documents, "the same input gives the same objects"


def test_the_pod_runs_rootless_podman_in_its_own_user_namespace_and_shares_only_the_registry():
    config, noop_job, qcow2_job = kube_job(NOOP, QCOW2, *BASE)
    for job, pipeline in ((noop_job, "0.json"), (qcow2_job, "1.json")):
        spec = pod(job)
        assert spec["hostUsers"] is False and spec["restartPolicy"] == "Never"
        (container,) = spec["containers"]
        security = container["securityContext"]
        assert security["procMount"] == "Unmasked" and security["allowPrivilegeEscalation"] is True
        assert security["runAsUser"] == 1000 and "privileged" not in security
        assert "drop" not in security["capabilities"]
        args = container["args"]
        assert args[:2] == ["build", f"/pipelines/{pipeline}"]
        assert args[args.index("--stages-from") + 1] == "registry.example.com/osbuild"
        assert args[args.index("--cache-from") + 1] == args[args.index("--cache-to") + 1] == \
            "registry.example.com/osbuild/trees"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["pipelines"]["configMap"]["name"] == config["metadata"]["name"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        for path, volume in mounts.items():
            if "emptyDir" in volumes[volume]:
                assert volumes[volume]["emptyDir"]["sizeLimit"], f"{path} has no size limit"
        assert "emptyDir" in volumes[mounts["/var/lib/osbuild-oci"]]
    assert "-o" not in pod(noop_job)["containers"][0]["args"], "a tree pipeline has no output"
    qcow2 = pod(qcow2_job)["containers"][0]
    assert qcow2["args"][qcow2["args"].index("-o") + 1] == "/output"
    assert "/output" in {m["mountPath"] for m in qcow2["volumeMounts"]}


def test_bad_input_fails_the_job_at_once_and_a_failed_build_is_retried():
    _, job = kube_job(NOOP, *BASE)
    spec = job["spec"]
    assert spec["backoffLimit"] >= 1
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob",
                        "onExitCodes": {"containerName": "build", "operator": "In", "values": [2]}}
    assert all(1 not in rule.get("onExitCodes", {}).get("values", []) for rule in rules), "exit 1 counts, retried"
    _, indexed = kube_job(NOOP, QCOW2, *BASE, "--indexed")
    spec = indexed["spec"]
    assert (spec["completionMode"], spec["completions"], spec["backoffLimitPerIndex"]) == ("Indexed", 2, 2)
    assert spec["podFailurePolicy"]["rules"][0]["action"] == "FailIndex", "one bad pipeline fails its index only"
    container = pod(indexed)["containers"][0]
    assert container["args"][1] == "/pipelines/$(PIPELINE_INDEX).json"
    assert {"name": "PIPELINE_INDEX", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}} in container["env"]


def test_credentials_and_keys_come_from_secrets():
    _, job = kube_job(NOOP, *BASE, "--auth-secret", "regcred", "--sign-key-secret", "team-sign",
                      "--trust-key-secret", "team-trust", "--arch", "arm64")
    spec = pod(job)
    container = spec["containers"][0]
    volumes = {v["name"]: v["secret"] for v in spec["volumes"] if "secret" in v}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert volumes["registry-auth"] == {"secretName": "regcred",
                                        "items": [{"key": ".dockerconfigjson", "path": "auth.json"}]}
    assert env["REGISTRY_AUTH_FILE"] == f"{mounts['registry-auth']}/auth.json"
    args = container["args"]
    assert volumes["sign-key"]["secretName"] == "team-sign"
    assert args[args.index("--sign-key") + 1] == f"{mounts['sign-key']}/cosign.key"
    assert args[args.index("--sign-passphrase-file") + 1] == f"{mounts['sign-key']}/cosign.password"
    assert volumes["trust-key-0"] == {"secretName": "team-trust", "items": [{"key": "cosign.pub", "path": "cosign.pub"}]}
    assert args[args.index("--trust-key") + 1] == f"{mounts['trust-key-0']}/cosign.pub"
    assert spec["nodeSelector"] == {"kubernetes.io/arch": "arm64"}
    assert all(m.get("readOnly") for m in container["volumeMounts"] if m["name"] in volumes)


@pytest.mark.parametrize("args, message", [
    (["missing.json", *BASE], "missing.json: cannot read the pipeline"),
    ([NOOP, *BASE, "--arch", "x86"], "--arch x86: not an architecture; use one of amd64, arm64"),
    ([NOOP, "--image", "i", "--registry", "osbuild"], "--registry osbuild: names no registry"),
    ([NOOP, *BASE, "--auth-secret", "Reg_Cred"], "--auth-secret 'Reg_Cred': not a Secret name"),
    ([NOOP, *BASE, "--storage", "lots"], "--storage lots: not a Kubernetes quantity"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = osbuild("kube", "job", *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: {message}") and proc.stderr.count("\n") == 1, proc.stderr


def test_a_bad_pipeline_is_refused_naming_its_json_path(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "stages": [{"name": 7}]}))
    proc = osbuild("kube", "job", bad, *BASE)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: {bad}: stages[0].name") and proc.stderr.count("\n") == 1, proc.stderr


def test_the_yaml_reads_back_as_what_was_written():
    """The emitter behind kube job, on what a pipeline file or a name may hold: YAML's own words, quotes,
    leading spaces, missing or extra final newlines, tabs, non-ASCII, carriage returns."""
    from osbuild_oci.tools.kube import yaml_documents
    texts = ["yes", "no", "null", "~", "007", "1e3", "- a", "# x", "a: b", '"quoted"', "'single'", "tab\there",
             "ünï", "  lead\n", "\nstarts empty", "ends\n\n\n", "no end", "cr\r\nlf\n", " ", "", "\u2028x\ny"]
    document = {"data": {f"{i}.json": text for i, text in enumerate(texts)}, "yes": True, "0": 0, ".dot": [],
                "nested": [[1, [2]], {"k": {}}, [], {"a b": False}], "x": texts}
    assert list(yaml.safe_load_all(yaml_documents([document, {"second": "doc"}]))) == [document, {"second": "doc"}]
