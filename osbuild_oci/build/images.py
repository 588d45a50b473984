"""The images a pipeline names, found as a build may use them: a stage's or the assembler's, the base, an input's.

Each comes from the store, from a registry (pulled only by a digest a trusted
key signed, when trust keys are given) or exactly as a lock file pins it, and
a stage's image is checked against what its labels may ask for.
"""

from __future__ import annotations

import re

from ..engine import localstorage
from ..engine.model import ImageInfo
from ..errors import RegistryError, UserError
from ..pipeline import arch
from ..pipeline.model import Step
from ..registry import references as registry
from ..stages.image import Kind, LOCAL_PREFIX, StageImage, local_ref
from ..store import transfer
from ..store.objects import ObjectStore
from .lockfile import Lock, Pin
from .options import Policy, Remote

TREE_ID = re.compile(r"^[0-9a-f]{64}$")


def _pull_for(store: ObjectStore, ref: str, remote: Remote, where: str) -> ImageInfo:
    """Pull ref; with trust keys, only the manifest one of them signed, by its digest (else errors.Untrusted)."""
    try:
        return transfer.pull(store, ref, remote.tls_verify, remote.trust)
    except RegistryError as err:
        if not err.missing:
            raise
        pinned = " (no image there has that digest)" if "@" in ref else ""
        raise UserError(f"{ref} is not in its registry{pinned}: {err.reason}", where) from None


def locked(store: ObjectStore, pin: Pin, remote: Remote, lock: Lock, where: str) -> ImageInfo:
    """Exactly the locked image: from the store by its id, else pulled by its digest."""
    info = store.image(pin.id)
    if info is None and pin.pull:
        info = _pull_for(store, pin.pull, remote, where)
    if info is None or info.id != pin.id:
        found = f"{pin.pull} is image {info.id}" if info else f"no image {pin.id[:12]} is in the store"
        raise UserError(f"the lock file {lock.path} pins {pin.image} to image {pin.id[:12]}, but {found}; "
                        "rebuild that image, or rewrite the lock with --lock and without --locked", where)
    return info


def pin(store: ObjectStore, ref: str, image_id: str) -> Pin:
    """How the lock records an image: its id, plus the manifest digest to pull it by if it is a registry's."""
    if not registry.is_remote(ref):
        return Pin(ref, image_id)
    if "@" in ref:
        return Pin(ref, image_id, ref)
    info = store.image(image_id)
    pulled = [d for d in (info.digests if info else ()) if registry.repository(d) == registry.repository(ref)]
    return Pin(ref, image_id, pulled[0] if pulled else None)


def image_ref(step: Step, remote: Remote) -> str:
    """The image a step runs: its pinned `image`, else its name under --stages-from or the local prefix."""
    return step.image or local_ref(step.name, remote.stages_from or LOCAL_PREFIX)


def resolve(store: ObjectStore, step: Step, kind: Kind, remote: Remote, policy: Policy,
            lock: Lock | None = None) -> StageImage:
    ref = image_ref(step, remote)
    where = f"{step.where}.image" if step.image else f"{step.where}.name"
    if lock is not None:
        info: ImageInfo | None = locked(store, lock.image(step.name, f"{step.where}.name"), remote, lock, where)
    else:
        info = store.image(ref)
        # With trust keys a remote image is checked every time: the copy in the store proves nothing about the tag now.
        if registry.is_remote(ref) and (info is None or remote.trust):
            info = _pull_for(store, ref, remote, where)
    if info is None:
        hint = ("pull it first or check the reference" if step.image else
                "run `osbuild-oci stages build` to build this repo's stages, or `osbuild-oci stages list` to see them")
        raise UserError(f"no {kind} image {ref} for {step.name!r}; {hint}", where)
    image = StageImage.from_labels(step.name, ref, info.id, info.labels, step.where, info.annotations)
    if image.kind != kind:
        article = "an" if kind[0] in "aeiou" else "a"
        raise UserError(f"{step.name} is a {image.kind} image; it cannot be used as {article} {kind}",
                        f"{step.where}.name")
    image.check_capabilities(policy.capabilities, f"{step.where}.name")
    image.check_network(policy.network, f"{step.where}.name")
    return image


def find(store: ObjectStore, ref: str, remote: Remote, where: str) -> ImageInfo:
    """An image a pipeline names (a base, an input): from the store, pulled when remote and missing, or always
    with trust keys (the copy in the store proves nothing about the tag now).  A local name outside osbuild-oci's
    own is the user's: what their podman has under it now wins over an older copy."""
    info = store.image(ref)
    if registry.is_remote(ref) and (info is None or remote.trust):
        info = _pull_for(store, ref, remote, where)
    elif not registry.is_remote(ref) and not ref.startswith(LOCAL_PREFIX + "/") and \
            localstorage.adopt_user_image(ref, info):
        info = store.image_again(ref)
    if info is None:
        raise UserError(f"no image {ref} in this store or in this user's podman storage (`podman images`); build "
                        "it with podman, or give a registry reference to pull it", where)
    return info


def input_image(store: ObjectStore, ref: str, remote: Remote, lock: Lock | None, where: str) -> ImageInfo:
    """The image an input reads files of: as the lock pins it, else as a base is found."""
    if lock is not None:
        return locked(store, lock.input_image(ref, where), remote, lock, where)
    return find(store, ref, remote, where)


def resolve_base(store: ObjectStore, base: str | None, remote: Remote, lock: Lock | None,
                  tree_arch: str) -> tuple[str | None, str | None]:
    """The base as (tree id, image to adopt as that tree); a remote base is pulled first."""
    if base is None:
        return None, None
    if lock is not None and not TREE_ID.match(base):
        info = locked(store, lock.base_for(base), remote, lock, "base")
        _check_base_arch(info, base, tree_arch)
        return info.id, info.id
    if TREE_ID.match(base):
        if store.has_tree(base) or any(transfer.fetch(store, base, repo, remote.tls_verify, remote.trust)
                                       for repo in remote.cache_from):
            _check_base_arch(store.tree_image(base), base, tree_arch)
            return base, None
        raise UserError(f"no tree {base} in this store{' or the --cache-from registries' if remote.cache_from else ''}"
                        "; build its pipeline first or give an image reference", "base")
    info = find(store, base, remote, "base")
    _check_base_arch(info, base, tree_arch)
    return info.id, info.id


def _check_base_arch(info: ImageInfo | None, base: str, tree_arch: str) -> None:
    """Refuse a base of another architecture: the stages would add the pipeline's arch's programs to a tree
    of the base's, and the tree's image would name only one of them.  An image that names none passes."""
    wanted = arch.ARCHES[tree_arch].oci
    if info is None or not info.arch or info.arch == wanted:
        return
    named = next((a.debian for a in arch.ARCHES.values() if a.oci == info.arch), info.arch)
    raise UserError(f"{base} is an image for {named}, not for the pipeline's arch {tree_arch}; give a base "
                    f'built for {tree_arch}, or set "arch": "{named}"', "base")
