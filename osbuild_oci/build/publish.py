"""Publishing what was built: an image pushed to a registry, signed with the user's key, its SBOM beside it.

One way for every image that leaves: the final tree (`--push`), every tree and
the output (`--cache-to`), and the stage images (`stages push`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from ..registry.artifacts import push_sbom
from ..store import outputs, sboms, transfer
from ..store.objects import ObjectStore
from ..store.refs import LABEL_RELEASE, tree_ref
from .monitor import Monitor
from .planner import Plan, Remote

if TYPE_CHECKING:
    from ..registry.signing import SigningKey


def publish(push: Callable[[], str], destination: str, tls_verify: bool, sign_key: SigningKey | None,
            sbom: str | None = None, release_date: str | None = None) -> str:
    """Push (push() returns the manifest digest the registry took), sign that digest (with the tree's release
    date: a later pull refuses an older signature), push the SBOM, signed too."""
    digest = push()
    if sign_key is not None:
        from ..registry import signing  # cryptography: only for a command that signs
        signing.sign_digest(destination, digest, sign_key, tls_verify, release_date)
    if sbom is not None:
        push_sbom(sbom, destination, tls_verify, sign_key)
    return digest


def publish_tree(store: ObjectStore, tree_id: str, destination: str, tls_verify: bool,
                 sign_key: SigningKey | None) -> str:
    info = store.tree_image(tree_id)
    return publish(lambda: transfer.push(store, tree_ref(tree_id), destination, tls_verify), destination, tls_verify,
                   sign_key, sboms.read(store, tree_id), info.labels.get(LABEL_RELEASE))


def cache_trees(the_plan: Plan, store: ObjectStore, remote: Remote, monitor: Monitor) -> None:
    """Push every tree of the pipeline the store holds to --cache-to, oldest first, so each push adds one layer."""
    for stage in the_plan.stages:
        if store.has_tree(stage.id):
            t0 = time.monotonic()
            destination = f"{remote.cache_to}:{stage.id}"
            monitor.busy(f"pushing {destination}")
            publish_tree(store, stage.id, destination, remote.tls_verify, remote.sign_key)
            monitor.tree_pushed(stage=stage.step.name, id=stage.id, image=destination,
                                seconds=round(time.monotonic() - t0, 3))


def cache_output(the_plan: Plan, store: ObjectStore, remote: Remote, monitor: Monitor) -> None:
    """Push the assembler's output to --cache-to, beside the trees."""
    step, _ = the_plan.assembler
    oid = the_plan.output_id
    t0 = time.monotonic()
    destination = outputs.remote_tag(remote.cache_to, oid)
    monitor.busy(f"pushing {destination}")
    local = outputs.image(store, oid)
    publish(lambda: transfer.push(store, local, destination, remote.tls_verify), destination, remote.tls_verify,
            remote.sign_key)
    monitor.output_pushed(assembler=step.name, id=oid, image=destination, seconds=round(time.monotonic() - t0, 3))
