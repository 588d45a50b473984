"""Kubernetes manifests for builds: a ConfigMap of pipelines and a Job per pipeline (or one Indexed Job).

One pod builds one pipeline with the osbuild-oci image, and a registry is the only state pods
share: stage images come from it, trees go to it and are taken from it by the next pod.  No
scheduler, no queue: Kubernetes starts the pods, the registry's tags are the cache.  Nothing here
talks to a cluster; the manifests are plain dicts, printed as YAML.

The pod runs rootless podman nested in a user namespace of its own (docs/ci.md): `hostUsers: false`,
an unmasked /proc, privilege escalation allowed (newuidmap's file capabilities) and uid 1000, whose
subordinate ids in the image fill the pod's 65,536 ids.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

# Where the pod finds what the manifests mount.
PIPELINES = "/pipelines"
OUTPUT = "/output"
WORK = "/var/lib/osbuild-oci"
SECRETS = "/run/secrets/osbuild-oci"
CONTAINER = "build"
# The exit status of bad input: retrying cannot help (docs: Exit status).
BAD_INPUT = 2
LABELS = {"app.kubernetes.io/name": "osbuild-oci", "app.kubernetes.io/component": "build"}
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


@dataclass(frozen=True)
class Pipeline:
    """A pipeline file as the ConfigMap carries it: its name and its text, unchanged."""

    name: str
    text: str
    has_assembler: bool


@dataclass
class JobSettings:
    """What every pod of the Jobs gets, from the command line."""

    image: str
    registry: str
    auth_secret: str | None = None
    sign_key_secret: str | None = None
    trust_key_secrets: list[str] = field(default_factory=list)
    k8s_arch: str | None = None
    tls_verify: bool = True
    baked_stages: bool = False
    storage: str = "10Gi"
    output_size: str = "4Gi"
    retries: int = 2
    ttl_seconds: int = 86400


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]


def _slug(name: str, room: int) -> str:
    """A pipeline name as a DNS label's part: lower case, [a-z0-9-], at most room characters."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", name.lower()))[:room].strip("-") or "pipeline"


def manifests(pipelines: list[Pipeline], settings: JobSettings, indexed: bool) -> list[dict]:
    """The ConfigMap holding every pipeline as N.json, then one Job per pipeline, or one Indexed Job.

    Names carry a digest of what they run, so applying changed pipelines makes new objects (a Job's
    template cannot change) and applying the same ones again changes nothing.
    """
    key = _digest(settings.image, settings.registry, *(p.text for p in pipelines))
    config = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": f"osbuild-oci-pipelines-{key}", "labels": dict(LABELS)},
              "data": {f"{i}.json": p.text for i, p in enumerate(pipelines)}}
    name = config["metadata"]["name"]
    if indexed:
        job = _job(f"osbuild-oci-{key}", name, "$(PIPELINE_INDEX).json",
                   any(p.has_assembler for p in pipelines), settings)
        job["spec"].update(completionMode="Indexed", completions=len(pipelines), parallelism=len(pipelines),
                           backoffLimitPerIndex=settings.retries)
        del job["spec"]["backoffLimit"]
        job["spec"]["podFailurePolicy"]["rules"][0]["action"] = "FailIndex"
        job["spec"]["template"]["spec"]["containers"][0]["env"].append(
            {"name": "PIPELINE_INDEX",
             "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}}})
        return [config, job]
    jobs = [_job(f"osbuild-oci-{_slug(p.name, 40)}-{_digest(key, str(i))}", name, f"{i}.json", p.has_assembler,
                 settings) for i, p in enumerate(pipelines)]
    return [config, *jobs]


def _job(name: str, config_map: str, pipeline: str, output: bool, settings: JobSettings) -> dict:
    """A Job whose pod builds /pipelines/PIPELINE; retried on exit 1, failed at once on bad input (exit 2)."""
    labels = {**LABELS, "osbuild-oci/job": name}
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "backoffLimit": settings.retries,
            "ttlSecondsAfterFinished": settings.ttl_seconds,
            "podFailurePolicy": {"rules": [
                {"action": "FailJob",
                 "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [BAD_INPUT]}},
                # An evicted or preempted pod is no failure of the build: try again without counting it.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec(config_map, pipeline, output, settings)},
        },
    }


def pod_spec(config_map: str, pipeline: str, output: bool, settings: JobSettings) -> dict:
    """The pod: one container of the osbuild-oci image building one pipeline, in a user namespace of its own."""
    mounts = [{"name": "pipelines", "mountPath": PIPELINES, "readOnly": True},
              {"name": "work", "mountPath": WORK}]
    volumes: list[dict] = [{"name": "pipelines", "configMap": {"name": config_map}},
                           {"name": "work", "emptyDir": {"sizeLimit": settings.storage}}]
    args = ["build", f"{PIPELINES}/{pipeline}", "--json"]
    if output:
        args += ["-o", OUTPUT]
        mounts.append({"name": "output", "mountPath": OUTPUT})
        volumes.append({"name": "output", "emptyDir": {"sizeLimit": settings.output_size}})
    namespace = settings.registry.rstrip("/")
    if not settings.baked_stages:
        args += ["--stages-from", namespace]
    args += ["--cache-from", f"{namespace}/trees", "--cache-to", f"{namespace}/trees"]
    if not settings.tls_verify:
        args.append("--no-tls-verify")
    env: list[dict] = []

    def secret(volume: str, name: str, items: dict[str, str]) -> str:
        """Mount the keys of Secret NAME as files; return the directory."""
        path = f"{SECRETS}/{volume}"
        volumes.append({"name": volume, "secret": {"secretName": name,
                                                   "items": [{"key": k, "path": p} for k, p in items.items()]}})
        mounts.append({"name": volume, "mountPath": path, "readOnly": True})
        return path

    if settings.auth_secret:
        # A kubernetes.io/dockerconfigjson Secret: docker's config.json and containers' auth.json share "auths".
        path = secret("registry-auth", settings.auth_secret, {".dockerconfigjson": "auth.json"})
        env.append({"name": "REGISTRY_AUTH_FILE", "value": f"{path}/auth.json"})
    if settings.sign_key_secret:
        # cosign's layout (cosign generate-key-pair k8s://NS/NAME writes it): the key and its passphrase.
        path = secret("sign-key", settings.sign_key_secret,
                      {"cosign.key": "cosign.key", "cosign.password": "cosign.password"})
        args += ["--sign-key", f"{path}/cosign.key", "--sign-passphrase-file", f"{path}/cosign.password"]
    for i, name in enumerate(settings.trust_key_secrets):
        path = secret(f"trust-key-{i}", name, {"cosign.pub": "cosign.pub"})
        args += ["--trust-key", f"{path}/cosign.pub"]
    spec: dict = {
        "restartPolicy": "Never",
        # The pod's own user namespace: its 65,536 ids are what the image's subordinate ids fill, and
        # what lets Pod Security accept an unmasked /proc.
        "hostUsers": False,
        "containers": [{
            "name": CONTAINER, "image": settings.image, "args": args, "env": env,
            "volumeMounts": mounts,
            "resources": {"requests": {"ephemeral-storage": settings.storage}},
            "securityContext": {
                "runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True,
                # newuidmap/newgidmap gain CAP_SETUID/CAP_SETGID from their file capabilities.
                "allowPrivilegeEscalation": True,
                "capabilities": {"add": ["SETUID", "SETGID"]},
                # The stage containers mount their own proc and sysfs, which a masked /proc forbids.
                "procMount": "Unmasked",
                # Runtime default profiles refuse the user namespaces rootless podman makes.
                "seccompProfile": {"type": "Unconfined"},
                "appArmorProfile": {"type": "Unconfined"},
            },
        }],
        "volumes": volumes,
    }
    if settings.k8s_arch:
        spec["nodeSelector"] = {"kubernetes.io/arch": settings.k8s_arch}
    return spec


# -- YAML ----------------------------------------------------------------------------------------------
# The manifests hold only dicts, lists, strings, integers and booleans.  A string is written as a JSON
# string, which is a valid YAML double-quoted scalar, so nothing needs YAML's quoting rules; a multi-line
# one (a pipeline file) as a literal block, with its indentation and final newlines stated.

_PLAIN_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_./-]*")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _key(key: str) -> str:
    return key if _PLAIN_KEY.fullmatch(key) and key.lower() not in _RESERVED else json.dumps(key)


def _inline(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):  # only empty ones are written inline
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(value)


def _block(text: str, pad: str) -> list[str] | None:
    """A multi-line string as the lines of a literal block scalar (header first), or None if it cannot be one."""
    if "\n" not in text or not all(c in "\n\t" or (c.isprintable() and c != "\ufeff") for c in text):
        return None
    trailing = len(text) - len(text.rstrip("\n"))
    chomp = "-" if trailing == 0 else "" if trailing == 1 else "+"
    body = text[:-1] if trailing else text
    return [f"|2{chomp}", *(f"{pad}  {line}" if line else "" for line in body.split("\n"))]


def _lines(value, indent: int) -> list[str]:
    pad = "  " * indent
    out = []
    if isinstance(value, dict):
        for key, item in value.items():
            block = _block(item, pad) if isinstance(item, str) else None
            if isinstance(item, (dict, list)) and item:
                out += [f"{pad}{_key(key)}:", *_lines(item, indent + 1)]
            elif block:
                out += [f"{pad}{_key(key)}: {block[0]}", *block[1:]]
            else:
                out.append(f"{pad}{_key(key)}: {_inline(item)}")
    else:
        for item in value:
            if isinstance(item, (dict, list)) and item:
                first, *rest = _lines(item, indent + 1)
                out += [f"{pad}- {first.lstrip()}", *rest]
            else:
                out.append(f"{pad}- {_inline(item)}")
    return out


def yaml_documents(documents: list[dict]) -> str:
    """The documents as one YAML stream, each after a `---` line."""
    return "".join("---\n" + "\n".join(_lines(doc, 0)) + "\n" for doc in documents)
