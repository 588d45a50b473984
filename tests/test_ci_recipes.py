"""The CI recipes of docs/ci.md, as written there, checked against the schemas of the systems that run them.

GitLab CI and GitHub workflows: the schemas check-jsonschema bundles (`vendor.gitlab-ci`,
`vendor.github-workflows`).  Tekton publishes none to check a Task against offline, so its
Kubernetes parts are checked against Kubernetes' own (kubernetes-validate's, strict): each
step as a Container, the volumes, and the TaskRun's pod template as a PodSpec.  Each recipe
must also do what docs/ci.md promises: the registry cache both ways, signing and trust, and
the disk kept as an artifact.  Pure logic: nothing runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

from helpers import REPO

DOC = REPO / "docs" / "ci.md"
KUBERNETES = "1.33.0"
PROMISES = ("--cache-from", "--cache-to", "--sign-key", "--trust-key")


def recipe(name: str) -> str:
    """The YAML block after `<!-- recipe: NAME -->` in docs/ci.md."""
    found = re.search(rf"<!-- recipe: {re.escape(name)} -->\n```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert found, f"docs/ci.md has no recipe {name}"
    return found[1]


def check_jsonschema(schema: str, text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / f"{schema}.yaml"
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", f"vendor.{schema}", str(path)],
                          capture_output=True, text=True)


def kubernetes_part(kind: str, data: dict) -> None:
    """Validate a part of an object against Kubernetes' strict schema of that type (e.g. container-v1)."""
    folder = f"kubernetes-json-schema/v{KUBERNETES}-local-strict"
    schema = schema_contents(f"{folder}/{kind}-v1.json", KUBERNETES)
    definitions = schema_contents(f"{folder}/_definitions.json", KUBERNETES)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    jsonschema.Draft202012Validator(schema, registry=registry).validate(data)


@pytest.mark.parametrize("name, schema", [("gitlab-ci", "gitlab-ci"), ("github-workflow", "github-workflows")])
def test_gitlab_and_github_recipes_match_their_schemas(name, schema, tmp_path):
    text = recipe(name)
    proc = check_jsonschema(schema, text, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = text.replace("artifacts:", "artefacts:") if name == "gitlab-ci" else text.replace("runs-on:", "run-on:")
    assert check_jsonschema(schema, broken, tmp_path).returncode != 0, "the schema check can fail"


def test_gitlab_recipe_builds_caches_signs_and_keeps_the_disk():
    job = yaml.safe_load(recipe("gitlab-ci"))["build-disk"]
    script = " ".join(job["script"])
    assert script.startswith("/usr/libexec/osbuild-oci/entrypoint build "), "the doctor runs first"
    assert all(flag in script for flag in PROMISES)
    assert job["image"]["entrypoint"] == [""] and job["artifacts"]["paths"] == ["output/"] and "-o output" in script


def test_github_recipe_runs_the_image_unprivileged_and_keeps_the_disk():
    steps = yaml.safe_load(recipe("github-workflow"))["jobs"]["build"]["steps"]
    run = next(step["run"] for step in steps if "podman run" in step.get("run", ""))
    assert "--privileged" not in run and "--cap-add" not in run and "--security-opt unmask=ALL" in run
    assert all(flag in run for flag in PROMISES) and "-o /output" in run
    upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["path"] == "output/"


def test_tekton_task_parts_are_valid_kubernetes_and_the_run_gets_its_own_user_namespace():
    task, run = yaml.safe_load_all(recipe("tekton"))
    assert (task["kind"], run["kind"], run["spec"]["taskRef"]["name"]) == ("Task", "TaskRun", task["metadata"]["name"])
    for step in task["spec"]["steps"]:
        # Tekton's Step is a Container with its own name for resources.
        kubernetes_part("container", {k: v for k, v in step.items() if k != "computeResources"})
        kubernetes_part("resourcerequirements", step["computeResources"])
        security = step["securityContext"]
        assert security["procMount"] == "Unmasked" and security["runAsUser"] == 1000
        assert "privileged" not in security
        assert all(flag in step["args"] for flag in PROMISES)
        assert step["command"] == ["/usr/libexec/osbuild-oci/entrypoint"]
        assert step["args"][step["args"].index("-o") + 1].startswith("$(workspaces.output.path)/")
        mounted = {m["name"] for m in step["volumeMounts"]}
        assert mounted == {v["name"] for v in task["spec"]["volumes"]}
    for volume in task["spec"]["volumes"]:
        kubernetes_part("volume", volume)
    kubernetes_part("podspec", {"containers": [{"name": "step-build"}], **run["spec"]["podTemplate"]})
    assert run["spec"]["podTemplate"]["hostUsers"] is False
    with pytest.raises(jsonschema.ValidationError):
        kubernetes_part("podspec", {"containers": [{"name": "step-build"}], "hostUser": False})
