"""Trees and outputs to and from registries: pulled only when they are what their name says (and, with trust
keys, what one of the keys signed), pushed and signed."""

from __future__ import annotations

from pathlib import Path

from ..engine.model import ImageInfo
from ..errors import BuildError, RegistryError
from ..registry import references
from .objects import ObjectStore
from .refs import LABEL_TREE, tree_ref


def trusted_ref(ref: str, trust: tuple, tls_verify: bool, store: Path) -> str:
    """ref itself without trust keys; with them, ref pinned to the digest one of them signed, and not older
    than what this store accepted before (else errors.Untrusted).  Signing's cryptography is imported only
    when there are keys to check."""
    if not trust:
        return ref
    from ..registry import freshness, signing
    return signing.trusted(ref, trust, tls_verify, freshness.Accepted(store))


def pull(store: ObjectStore, ref: str, tls_verify: bool, trust: tuple = ()) -> ImageInfo:
    """Pull ref into the store; with trust keys, only the manifest one of them signed, by its digest."""
    pinned = trusted_ref(ref, trust, tls_verify, store.path)
    return store.engine.pull(pinned, tls_verify, references.credentials(pinned))


def pull_checked(store: ObjectStore, ref: str, kind: str, label: str, expected: str, local: str,
                 tls_verify: bool, trust: tuple = ()) -> bool:
    """Pull ref and name it local if its label says it is what it is tagged as; False if the registry lacks it.

    A cache registry is anyone's who can push to it: an image under the wrong tag is refused, not used.
    With trust keys, only a manifest one of them signed is pulled (by its digest); anything else
    raises errors.Untrusted before a byte of it reaches the store.
    """
    try:
        info = pull(store, ref, tls_verify, trust)
    except RegistryError as err:
        if err.missing:
            return False
        raise
    if info.labels.get(label) != expected:
        raise BuildError(f"{ref} is not the {kind} it is tagged as (its "
                         f"{label} label says {info.labels.get(label)!r}); refusing to use it")
    store.engine.tag(info.id, local)
    return True


def fetch(store: ObjectStore, tree_id: str, repository: str, tls_verify: bool, trust: tuple = ()) -> bool:
    """Pull REPOSITORY:<tree id> and keep it as that tree if it really is it; False if absent.

    With trust keys, only a manifest one of them signed is pulled (by its digest);
    anything else raises errors.Untrusted before a byte of it reaches the store.
    """
    if not pull_checked(store, f"{repository}:{tree_id}", "tree", LABEL_TREE, tree_id, tree_ref(tree_id),
                        tls_verify, trust):
        return False
    store.sources.setdefault(repository, (tls_verify, trust))
    return True


def push(store: ObjectStore, local: str, destination: str, tls_verify: bool) -> str:
    """Push an image of the store; the manifest digest the registry took."""
    return store.engine.push(local, destination, tls_verify, references.credentials(destination))
