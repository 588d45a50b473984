"""Where each stage's tree is, as a build finds it: newest first, the store before the --cache-from registries.

The newest tree found holds every older stage's layer, so older stages need no
tree of their own ("covered").  A build pulls what it finds (`fetch`); `inspect`
only asks (`ask`).  A registry that cannot be reached is reported once and not
asked again; a tree no trusted key signed is a miss, never pulled.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

from ..errors import RegistryError, Untrusted
from ..registry import references
from ..store import transfer
from ..store.objects import ObjectStore
from ..store.refs import tree_ref
from .planner import PlannedStage, Remote


class Place(enum.StrEnum):
    STORE = "store"
    REMOTE = "remote"
    COVERED = "covered"
    BUILD = "build"


@dataclass(frozen=True)
class Where:
    place: Place
    registry: str | None = None


@dataclass
class Registries:
    """The cache registries still worth asking, and who hears about the ones that fail."""

    repos: list[str]
    untrusted: Callable[[str, str], None]  # (image, reason)
    unavailable: Callable[[str, str], None]  # (registry, error)

    def first(self, image: Callable[[str], str], look: Callable[[str], bool],
              busy: Callable[[str], None] = lambda label: None) -> str | None:
        """The first registry look(repo) found the image in, else None."""
        for repo in list(self.repos):
            busy(f"looking up {image(repo)}")
            try:
                if look(repo):
                    return repo
            except Untrusted as err:
                self.untrusted(image(repo), err.reason)
            except RegistryError as err:
                self.repos.remove(repo)
                self.unavailable(repo, str(err))
        return None


def fetch(store: ObjectStore, remote: Remote) -> Callable[[str, str], bool]:
    """Look into a registry by pulling the tree (a build's way)."""
    return lambda repo, tree_id: transfer.fetch(store, tree_id, repo, remote.tls_verify, remote.trust)


def ask(remote: Remote) -> Callable[[str, str], bool]:
    """Look into a registry without pulling anything (inspect's way)."""
    return lambda repo, tree_id: references.has_image(f"{repo}:{tree_id}", remote.tls_verify)


def locate(stages: list[PlannedStage], store: ObjectStore, registries: Registries,
           look: Callable[[str, str], bool], limit: int | None = None,
           busy: Callable[[str], None] = lambda label: None) -> list[Where]:
    """Where the tree of each stage is; only the first `limit` stages may be found (--refresh runs the rest)."""
    store.prefetch([tree_ref(stage.id) for stage in stages])
    found = [Where(Place.BUILD)] * len(stages)
    for index in reversed(range(len(stages) if limit is None else limit)):
        tree_id = stages[index].id
        if store.has_tree(tree_id):
            found[index] = Where(Place.STORE)
        else:
            repo = registries.first(lambda r: f"{r}:{tree_id}", lambda r: look(r, tree_id), busy)
            if repo is None:
                continue
            found[index] = Where(Place.REMOTE, repo)
        for older in range(index):
            found[older] = Where(Place.STORE if store.has_tree(stages[older].id) else Place.COVERED)
        break
    return found
