"""`osbuild-oci kube`: Kubernetes manifests that build pipelines in pods sharing a registry (docs/ci.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional

import typer

from ..build.options import Options
from ..errors import UserError
from .common import app, command, group

kube_app = group("Print Kubernetes manifests that build pipelines; never talks to a cluster.")
app.add_typer(kube_app, name="kube")

# Kubernetes' spellings: a Secret's name is a DNS subdomain, a size a quantity.
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?([KMGTPE]i|[kMGTPE])?")


def _secret(option: str, name: Optional[str]) -> Optional[str]:
    if name is not None and (len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name)):
        raise UserError(f"{option} {name!r}: not a Secret name (lower-case letters, digits, '-' and '.')")
    return name


@command(kube_app, "tls_verify", name="job")
def kube_job(
    options: Options,
    pipelines: List[Path] = typer.Argument(..., metavar="PIPELINE...", help="Pipeline JSON files, one pod each"),
    image: str = typer.Option(..., "--image", metavar="REF", help="The osbuild-oci image (osbuild-oci image build)"),
    registry: str = typer.Option(..., "--registry", metavar="REGISTRY/NAMESPACE",
                                 help="Stage images from here, trees to and from REGISTRY/NAMESPACE/trees"),
    auth_secret: Optional[str] = typer.Option(None, "--auth-secret", metavar="NAME",
                                              help="kubernetes.io/dockerconfigjson Secret with the registry's "
                                                   "credentials [default: anonymous]"),
    sign_key_secret: Optional[str] = typer.Option(None, "--sign-key-secret", metavar="NAME",
                                                  help="Secret with cosign.key and cosign.password: sign every "
                                                       "pushed tree (build --sign-key)"),
    trust_key_secret: List[str] = typer.Option([], "--trust-key-secret", metavar="NAME",
                                               help="Secret with cosign.pub: use only stage images and trees it "
                                                    "signed (build --trust-key; repeatable)"),
    arch: Optional[str] = typer.Option(None, "--arch", help="Run on nodes of this architecture (Debian's name: "
                                                            "amd64, arm64, ...) [default: any node]"),
    indexed: bool = typer.Option(False, "--indexed", help="One Indexed Job for all pipelines instead of a Job each"),
    baked_stages: bool = typer.Option(False, "--baked-stages",
                                      help="Use the stage images baked into the image (image build --with-stages) "
                                           "instead of --stages-from the registry"),
    storage: str = typer.Option("10Gi", "--storage", metavar="QUANTITY",
                                help="Size limit of the pod's podman storage, store and package cache"),
) -> None:
    """Print a ConfigMap of the pipelines and a Job per pipeline (or one Indexed Job) as YAML, for kubectl apply."""
    from ..build.build import load_pipeline
    from ..pipeline.arch import ARCHES
    from ..registry import references
    from ..tools import kube
    if not references.is_remote(registry):
        raise UserError(f"--registry {registry}: names no registry; give REGISTRY/NAMESPACE such as "
                        "registry.example.com/osbuild")
    if arch is not None and arch not in ARCHES:
        raise UserError(f"--arch {arch}: not an architecture; use one of {', '.join(ARCHES)}")
    if not _QUANTITY.fullmatch(storage):
        raise UserError(f"--storage {storage}: not a Kubernetes quantity such as 10Gi or 500M")
    if not image.strip() or any(c.isspace() for c in image):
        raise UserError(f"--image {image!r}: not an image reference")
    found = []
    for path in pipelines:
        model = load_pipeline(path)
        found.append(kube.Pipeline(model.name, path.read_text(), model.assembler is not None))
    settings = kube.JobSettings(
        image=image, registry=registry, auth_secret=_secret("--auth-secret", auth_secret),
        sign_key_secret=_secret("--sign-key-secret", sign_key_secret),
        trust_key_secrets=[_secret("--trust-key-secret", name) for name in trust_key_secret],
        k8s_arch=ARCHES[arch].oci if arch else None, tls_verify=options.tls_verify, baked_stages=baked_stages,
        storage=storage)
    print(kube.yaml_documents(kube.manifests(found, settings, indexed)), end="")
