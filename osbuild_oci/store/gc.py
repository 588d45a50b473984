"""A store's size and its trimming: what it holds, how much disk that takes, and removing what is least
recently used (budget.py chooses) or everything (`store clean`)."""

from __future__ import annotations

from ..engine import records
from ..engine.model import ImageInfo
from . import budget, outputs, sboms
from .objects import ObjectStore
from .refs import LABEL_RELEASE, LABEL_STAGE, Kept, failed_ref, output_ref, tree_ref


def last_used(store: ObjectStore, key: str, info: ImageInfo | None) -> float:
    """When the tree or output was last used; one never recorded counts from its image's creation."""
    recorded = store.usage.last_used(key)
    return recorded if recorded is not None else float(info.created or 0) if info else 0.0


def listing(store: ObjectStore) -> list[dict]:
    """Every tree and kept failure: stage, size of its own (newest) layer, creation and last use (Unix time),
    and the date of the Release file its packages came from (None when no stage reported one).

    A base adopted from the user's storage has no layer of this store's own: its size is None.
    """
    found = records.read(store.path / "storage")
    rows = []
    for kind, entries in ((Kept.TREE, store.trees()), (Kept.FAILED, store.failed())):
        for tree_id, info in entries:
            top = found.images.get(info.id, ("", ()))[0]
            rows.append({"tree": tree_id, "image": tree_ref(tree_id) if kind == Kept.TREE else failed_ref(tree_id),
                         "failed": kind == Kept.FAILED, "stage": info.labels.get(LABEL_STAGE, ""),
                         "release_date": info.labels.get(LABEL_RELEASE),
                         "size": found.layers[top].size if top in found.layers else None,
                         "created": float(info.created or 0),
                         "last_used": store.usage.last_used(tree_id) if kind == Kept.TREE else None})
    return rows


def layers_size(store: ObjectStore) -> int:
    """This store's own layers, each counted once however many trees share it."""
    found = records.read(store.path / "storage")
    return found.size(set(found.layers))


def usage(store: ObjectStore) -> dict[str, int]:
    """What `store du` says: the directory's disk use (shared layers once), its layers, its kept outputs, its trees."""
    return {"disk": store.disk_use(), "layers": layers_size(store), "outputs": sum(outputs.kept_sizes(store).values()),
            "trees": len(store.trees())}


def size(store: ObjectStore) -> int:
    """What gc budgets: this store's own layers and the files of its kept outputs."""
    return layers_size(store) + sum(outputs.kept_sizes(store).values())


def collect(store: ObjectStore, max_size: int | None, keep: set[str] = frozenset(),
            others: list[budget.Trimmable] = ()) -> tuple[list[str], int]:
    """Make the store fit max_size; (removed tree and output names, the store's size after).

    Without max_size every kept failure goes.  With it, kept failures go first,
    then trees and cached outputs by least recent use, as long as the store's layers, its kept
    output files and `others` (such as a package cache) together are over budget; then each of
    `others` is asked to trim what is still over.  Trees and outputs in keep (a running
    build's) never go.  Nothing else can be using them: this command holds the store's lock.
    """
    failed = [budget.Candidate(failed_ref(stage_id), info.id, float("-inf"), kind=Kept.FAILED, key=stage_id)
              for stage_id, info in store.failed()]
    trees = [budget.Candidate(tree_ref(tree_id), info.id, last_used(store, tree_id, info), kind=Kept.TREE,
                              key=tree_id)
             for tree_id, info in store.trees() if tree_id not in keep]
    found_outputs = outputs.listed(store)
    kept_outputs = [budget.Candidate(output_ref(oid), info.id if info else None, last_used(store, oid, info), files,
                                     kind=Kept.OUTPUT, key=oid)
                    for oid, info, files in found_outputs if oid not in keep]
    store.engine.prune()
    if max_size is None:
        chosen = failed
    else:
        extra = sum(other.size() for other in others) + \
            sum(files for oid, _, files in found_outputs if oid in keep)
        chosen, _ = budget.choose(records.read(store.path / "storage"), failed + trees + kept_outputs,
                                  max_size - extra)
    for candidate in chosen:
        if candidate.kind == Kept.OUTPUT:
            outputs.remove(store, candidate.key)
        else:
            store.engine.remove_image(candidate.name)
    store.usage.forget(c.key for c in chosen)
    store.engine.prune()
    left = size(store)
    if max_size is not None:
        for other in others:
            over = left + sum(o.size() for o in others) - max_size
            if over > 0:
                other.trim(over)
    return [c.name for c in chosen], left


def clear(store: ObjectStore) -> None:
    """Remove every tree, kept failure and every layer only they used; stage images are not the store's.

    Trees go by name: an adopted base image seen from the stage storage is read-only
    here, and loses only its tree name.
    """
    for tree_id, _ in store.trees():
        store.engine.remove_image(tree_ref(tree_id))
        sboms.path(store, tree_id).unlink(missing_ok=True)
    for stage_id, _ in store.failed():
        store.engine.remove_image(failed_ref(stage_id))
    for oid, _, _ in outputs.listed(store):
        outputs.remove(store, oid)
    outputs.remove_partial(store)
    store.engine.prune()
