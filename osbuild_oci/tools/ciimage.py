"""The osbuild-oci image (image/ of a checkout): build it, and ready its podman storage when it starts.

It runs osbuild-oci as uid 1000 with rootless podman inside an unprivileged container
(docs/ci.md).  Its stage images come from a registry (`build --stages-from`) or are
baked in (`--with-stages`) as an OCI layout, which `prepare` copies into the storage
on the container's volume when the container starts: an image's volume cannot hold
containers-storage made at build time (no overlay mounts inside `podman build`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from ..engine import localstorage
from ..errors import EngineError, UserError
from ..stages import build as stagebuild
from ..stages.image import local_ref

# Where --with-stages puts the stage images in the image, and the annotation naming each of them.
BAKED = Path("/usr/share/osbuild-oci/stages")
REF_NAME = "org.opencontainers.image.ref.name"
# The checkout this package runs from (an editable install), whose image/ is built.
CHECKOUT = Path(__file__).resolve().parent.parent.parent


def build(tag: str, with_stages: bool, checkout: Path, log: Callable[[str], None]) -> None:
    """Build image/Containerfile of the checkout FROM the Debian minbase, with the package installed from it.

    The context holds only what the image needs: image/ and wheels this Python's pip makes of the checkout
    and its dependencies (it knows the index, proxy and certificates of this host; the image does not).
    With with_stages, the stage images (built first if they changed) are added on top.
    """
    folder = checkout / "image"
    if not (folder / "Containerfile").is_file() or not (checkout / "pyproject.toml").is_file():
        raise UserError(f"{checkout} is no checkout of osbuild-oci (no image/Containerfile and pyproject.toml); "
                        "give --source CHECKOUT")
    minbase = stagebuild.minbase_ref(stagebuild.SUITE)
    stagebuild.ensure_minbase(log)
    localstorage.to_user_storage(minbase)  # the image is the user's: built in the user's storage
    # A disk, not /tmp's tmpfs: the context holds a hundred megabytes of wheels, and the stage images.
    with tempfile.TemporaryDirectory(prefix="osbuild-oci-image-", dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        context = Path(tmp)
        shutil.copytree(folder, context, dirs_exist_ok=True)
        _wheels(checkout, context / "wheels", log)
        log(f"building {tag}")
        localstorage.build(context, context / "Containerfile", tag, {}, {"BASE": minbase},
                           user_storage=True)
        if with_stages:
            _bake_stages(checkout / "osbuild_oci" / "stages" / "sources", context, tag, log)


def _wheels(checkout: Path, into: Path, log: Callable[[str], None]) -> None:
    """osbuild-oci's wheel into INTO/osbuild-oci, its dependencies' into INTO/deps.

    Made from a copy of the package's sources: setuptools builds in the source tree, and files its
    build/ kept from an earlier build would end up in the wheel."""
    log("making wheels of osbuild-oci and its dependencies")
    deps, sources = into / "deps", into / "sources"
    shutil.copytree(checkout / "osbuild_oci", sources / "osbuild_oci",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(checkout / name, sources / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                           "--wheel-dir", str(deps), str(sources)], capture_output=True, text=True)
    shutil.rmtree(sources)
    if proc.returncode != 0:
        raise EngineError(f"pip could not make the wheels: {proc.stderr.strip()[-2000:]}")
    (into / "osbuild-oci").mkdir()
    for wheel in deps.glob("osbuild_oci-*.whl"):
        wheel.rename(into / "osbuild-oci" / wheel.name)


def _bake_stages(sources: Path, context: Path, tag: str, log: Callable[[str], None]) -> None:
    """Copy the checkout's stage and assembler images (built first if they changed) into one OCI layout
    (shared layers once), and that into the image."""
    built = stagebuild.build_all(sources, None, log)
    layout = context / "stages"
    for source, _ in built:
        localstorage.copy(localstorage.StageStorage.get().transport(source.ref), f"oci:{layout}:{source.name}")
    log(f"adding {len(built)} stage images to {tag}")
    localstorage.build(context, context / "Containerfile.stages", tag, {}, {"BASE": tag}, user_storage=True)


def prepare(log: Callable[[str], None], baked: Path = BAKED) -> list[str]:
    """What the image needs in its storage before a build: the empty images, and the baked stage images
    that are missing or differ there; returns the names copied in."""
    stagebuild.ensure_empty()
    copied = []
    for name, config_digest in _baked_images(baked):
        info = localstorage.image(local_ref(name))
        if info is not None and f"sha256:{info.id}" == config_digest:
            continue
        localstorage.copy_in(f"oci:{baked}:{name}", local_ref(name))
        copied.append(name)
    if copied:
        log(f"copied {len(copied)} baked stage images into the storage")
    return copied


def _baked_images(layout: Path) -> list[tuple[str, str]]:
    """(name, config digest) of every image of the layout; none when it does not exist."""
    try:
        index = json.loads((layout / "index.json").read_text())
    except FileNotFoundError:
        return []
    out = []
    for entry in index.get("manifests", []):
        name = (entry.get("annotations") or {}).get(REF_NAME)
        algorithm, digest = entry["digest"].split(":", 1)
        manifest = json.loads((layout / "blobs" / algorithm / digest).read_text())
        if name:
            out.append((name, manifest["config"]["digest"]))
    return out

