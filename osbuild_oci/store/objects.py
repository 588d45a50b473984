"""The object store: every tree is an image in the store's containers-storage.

A tree's image is tagged `localhost/osbuild-oci/trees:<tree id>`; its newest
layer holds exactly the change set of the stage that made it.  The seed's
semantics are kept: `has_tree`, `get_tree` (a read-only view, empty for None)
and `new_tree` (writable, initialised from a base, committed only when the
block exits without an exception).  One command at a time works on a store
(`open_store` holds its lock); it first removes what a killed command left.
"""

from __future__ import annotations

import fcntl
import re
import shlex
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from . import budget, layers
from ..pipeline import arch
from ..engine.model import ImageInfo
from ..engine import records
from ..engine.client import Engine
from ..errors import BuildError, EngineError, RegistryError, StageFailed, UserError
from .usage import Usage

if TYPE_CHECKING:
    from ..registry.signing import SigningKey

TREES = "localhost/osbuild-oci/trees"
# Assembler outputs (outputs.py): kept beside the trees, removed with them; built ones as files in
# STORE/outputs/<id>, pulled or pushed ones as images.
OUTPUTS = "localhost/osbuild-oci/outputs"
OUTPUT_FILES = "outputs"
LABEL_TREE = "org.osbuild-oci.tree-id"
LABEL_STAGE = "org.osbuild-oci.stage"
LABEL_DEPTH = "org.osbuild-oci.depth"
LABEL_ROOT = "org.osbuild-oci.root"
LABEL_LAYERS = "org.osbuild-oci.layer-trees"
LABEL_FAILED = "org.osbuild-oci.failed-stage"
FAILED = "failed-"
LABEL_EPOCH = "org.osbuild-oci.source-epoch"
LABEL_RELEASE = "org.osbuild-oci.release-date"
_CACHE_REF = re.compile(rf"(?:{re.escape(TREES)}|{re.escape(OUTPUTS)}):[0-9a-f]{{64}}\Z")
_LAYER_END = re.compile(r"^([0-9]+):([0-9a-f]{64})$")
_ROOT = re.compile(r"(?:[0-9a-f]{64})?")
_MOUNT_DATA = re.compile(r'\s*mount_data="[^"]*"|\s*mount_data=\S+')


@dataclass(frozen=True)
class Lineage:
    """Where a tree stands under the layer budget (see layers.py).

    root: the tree id of the image its layers start on ("" for the empty image);
    depth: stages since that root; ends: (depth, tree id) where each of its own
    layers ends, oldest first.
    """

    root: str
    depth: int
    ends: tuple[tuple[int, str], ...]

    @classmethod
    def of(cls, tree_id: str | None, info: ImageInfo | None) -> "Lineage":
        """From a tree image's labels; an image that is not a tree of ours (an adopted base) is a root.

        A base deeper than the budget allows is no root: the first stage's layer flattens it.
        Labels are only ever a layout hint: whatever they say, the tree's content is its parent's.
        """
        if tree_id is None or info is None:
            return cls("", 0, ())
        labels = info.labels
        found = [_LAYER_END.match(end) for end in labels.get(LABEL_LAYERS, "").split()]
        if (labels.get(LABEL_TREE) == tree_id and labels.get(LABEL_DEPTH, "").isdigit() and found
                and all(found) and _ROOT.fullmatch(labels.get(LABEL_ROOT, "-"))):
            return cls(labels[LABEL_ROOT], int(labels[LABEL_DEPTH]),
                       tuple((int(m[1]), m[2]) for m in found if m))
        return cls(tree_id if layers.keeps_base(len(info.layers)) else "", 0, ())

    def child_labels(self, tree_id: str, start: int, root: str) -> dict[str, str]:
        """Labels of the tree one stage deeper: on root, this one's layers up to depth `start`, then its own."""
        depth = self.depth + 1
        kept = [f"{d}:{t}" for d, t in self.ends if d <= start]
        return {LABEL_DEPTH: str(depth), LABEL_ROOT: root,
                LABEL_LAYERS: " ".join([*kept, f"{depth}:{tree_id}"])}


def tree_ref(tree_id: str) -> str:
    return f"{TREES}:{tree_id}"


def output_ref(oid: str) -> str:
    return f"{OUTPUTS}:{oid}"


def is_cache_ref(ref: str) -> bool:
    """Whether ref is a name this store gives a cached tree or output (what `tree_ref` and `output_ref` make)."""
    return _CACHE_REF.match(ref) is not None


def failed_ref(stage_id: str) -> str:
    """Where a failed stage's partial tree is kept: never under its stage id, so never a cache hit."""
    return f"{TREES}:{FAILED}{stage_id}"


def image_name(name: str) -> str:
    """A name as podman tags it: `:latest` unless the last path part has a tag."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class ObjectStore:
    """The trees of one store, reached through that store's engine."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.usage = Usage(engine.store)
        self._sources: dict[str, tuple[bool, tuple]] = {}

    def output_files(self, oid: str) -> Path:
        """Where a built output's files are kept (outputs.py)."""
        return self.engine.store / OUTPUT_FILES / oid

    def partial_output_files(self, oid: str) -> Path:
        """Where they are copied first: a dot name, never a hit, and what `remove_partial_outputs` sweeps."""
        return self.engine.store / OUTPUT_FILES / f".{oid}"

    def remove_output(self, oid: str) -> None:
        """Remove a cached output in both its forms: its kept files and its image."""
        shutil.rmtree(self.output_files(oid), ignore_errors=True)
        self.engine.remove_image(output_ref(oid))

    def remove_partial_outputs(self) -> None:
        """Remove the output copies a killed command left half written (under the lock, nobody writes one)."""
        directory = self.engine.store / OUTPUT_FILES
        for partial in directory.glob(".*") if directory.is_dir() else ():
            shutil.rmtree(partial, ignore_errors=True)

    def sbom_path(self, tree_id: str) -> Path:
        """Where the tree's SPDX document is kept: a file of the store, beside its containers-storage."""
        return self.engine.store / "sboms" / f"{tree_id}.spdx.json"

    def save_sbom(self, tree_id: str, document: str) -> None:
        path = self.sbom_path(tree_id)
        path.parent.mkdir(exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(document, encoding="utf-8")
        partial.replace(path)

    def sbom(self, tree_id: str) -> str:
        """The tree's SPDX document; a tree that came without one (pulled, adopted) gets it made once,
        dated by the tree's source epoch label (0 for an image that is no tree of ours)."""
        path = self.sbom_path(tree_id)
        if not path.exists():
            info = self.tree_image(tree_id)
            if info is None:
                raise UserError(f"no tree {tree_id} in this store")
            label = info.labels.get(LABEL_EPOCH, "")
            epoch = int(label) if label.isdigit() else 0
            with self.get_tree(tree_id) as tree:
                self.save_sbom(tree_id, self.engine.sbom(tree, tree_id, epoch))
        return path.read_text(encoding="utf-8")

    def tree_image(self, tree_id: str) -> ImageInfo | None:
        """The tree's image, only if it really is that tree (a checked cache hit)."""
        info = self.engine.image(tree_ref(tree_id))
        if info is None:
            return None
        if info.labels.get(LABEL_TREE) == tree_id or info.id == tree_id:
            return info
        return None

    def has_tree(self, tree_id: str) -> bool:
        return self.tree_image(tree_id) is not None

    def adopt(self, image_id: str) -> None:
        """Make any image a tree of this store; its id is the image id (the base image digest)."""
        if not self.has_tree(image_id):
            self.engine.tag(image_id, tree_ref(image_id))

    def _base_image(self, tree_id: str | None) -> str:
        info = self._base_info(tree_id)
        return info.id if info else self.engine.empty_image(arch.host())

    def _base_info(self, tree_id: str | None) -> ImageInfo | None:
        if tree_id is None:
            return None
        info = self.tree_image(tree_id)
        if info is None:
            raise BuildError(f"tree {tree_id} is not in the store")
        return info

    @contextmanager
    def get_tree(self, tree_id: str | None) -> Iterator[str]:
        """A view of the tree for readers; fails if the reader changed it anyway."""
        container, path = self.engine.mount_working_container(self._base_image(tree_id))
        try:
            yield path
            if self.engine.changes(container):
                raise BuildError(f"tree {tree_id} was altered by a reader that must only read it")
        finally:
            self.engine.remove_container(container)

    @contextmanager
    def new_tree(self, tree_id: str, base_id: str | None, stage: str = "", epoch: int = 0,
                 reported: dict[str, str] | None = None, keep_failed: bool = False,
                 tree_arch: str | None = None) -> Iterator[str]:
        """A writable tree with the content of base_id, committed as tree_id when the block succeeds.

        `reported` is read at commit time: labels the block learnt from the stage (a tree inherits
        its parent's labels, so a Release date stays until a stage reports a newer one).

        Its image is the parent's plus one layer, except where the layer budget
        merges: then it starts on an older tree's image (see layers.py), the
        parent's content is synced into it, and the one new layer holds
        everything since that older tree.  When the stage fails (StageFailed)
        and keep_failed is set, the partial tree is committed under
        `failed_ref`, which no lookup by tree id can reach; an interruption or
        any other error keeps nothing.  A tree without a base starts from the empty image of
        tree_arch (default: the host's), whose architecture every commit on it keeps.
        """
        info = self._base_info(base_id)
        empty = self.engine.empty_image(tree_arch or arch.host())
        parent = info.id if info else empty
        lineage = Lineage.of(base_id, info)
        start, root, image = self._merge_start(lineage, empty)
        with self._mount_errors("mount the image the tree starts on", stage, tree_id, image):
            container, path = self.engine.mount_working_container(image)
        try:
            if image != parent:
                self._sync(parent, path, stage, tree_id)
            yield path
            with self._mount_errors("commit the tree", stage, tree_id, image):
                self.engine.commit(container, tree_ref(tree_id), {
                    LABEL_TREE: tree_id, LABEL_STAGE: stage, LABEL_EPOCH: str(epoch),
                    **lineage.child_labels(tree_id, start, root), **(reported or {})})
            self.engine.remove_image(failed_ref(tree_id))
        except BaseException as err:
            if keep_failed and isinstance(err, StageFailed):
                err.kept = self._keep_failed(container, tree_id, stage)
            self.engine.remove_container(container)
            raise
        self.engine.discard_container(container)

    def _keep_failed(self, container: str, tree_id: str, stage: str) -> str:
        """Commit a failed stage's tree under failed_ref; how to open a shell in it (or why it is not kept).

        Its labels say it is no tree (an empty tree id), so even a label check cannot take it for one.
        An earlier failure of the same stage is replaced, not left behind unnamed.
        """
        try:
            self.engine.remove_image(failed_ref(tree_id))
            self.engine.commit(container, failed_ref(tree_id), {
                LABEL_TREE: "", LABEL_FAILED: tree_id, LABEL_STAGE: stage, LABEL_DEPTH: "", LABEL_ROOT: "",
                LABEL_LAYERS: ""})
        except EngineError as err:
            return f"its partial tree could not be kept: {err}"
        podman = shlex.join(["podman", *self.engine.podman_args(), "run", "--rm", "-it", "--network=none",
                             failed_ref(tree_id), "/bin/sh"])
        return (f"its partial tree is kept as {failed_ref(tree_id)}; open a shell in it with\n"
                f"    osbuild-oci shell --failed {tree_id} --store {shlex.quote(str(self.engine.store))}\n"
                f"or\n    {podman}")

    def _merge_start(self, lineage: Lineage, empty: str) -> tuple[int, str, str]:
        """(depth, root, image) a new tree one stage below lineage starts on.

        The budget names the tree; when that tree is gone (a fresh store that pulled
        only the newest tree, a deleted tree) an older layer end, the root, or at
        last the empty image does, which is still within the budget.
        """
        target = layers.merge_start(lineage.depth + 1)
        for depth, tree in reversed(lineage.ends):
            if depth <= target:
                image = self._available(tree)
                if image is not None:
                    return depth, lineage.root, image
        image = self._available(lineage.root) if lineage.root else None
        if image is not None:
            return 0, lineage.root, image
        return 0, "", empty

    def _available(self, tree_id: str) -> str | None:
        """The tree's image id: from the store, or pulled from a registry this store already pulled trees from.

        A registry that fails now only costs the shared layout, not the build.
        """
        info = self.tree_image(tree_id)
        for repository, (tls_verify, trust) in self._sources.items():
            if info is not None:
                break
            try:
                if self.fetch(tree_id, repository, tls_verify, trust):
                    info = self.tree_image(tree_id)
            except RegistryError:
                continue
        return info.id if info else None

    def _sync(self, parent: str, path: str, stage: str, tree_id: str) -> None:
        """Make the working tree at path equal the parent image's tree; overlay copies up only what differs."""
        with self._mount_errors("mount the parent tree to merge layers", stage, tree_id, parent):
            source, source_path = self.engine.mount_working_container(parent)
        try:
            self.engine.sync(source_path, path)
        finally:
            self.engine.remove_container(source)

    @contextmanager
    def _mount_errors(self, action: str, stage: str, tree_id: str, image: str) -> Iterator[None]:
        """A podman failure while mounting or committing a tree becomes one line a user can act on."""
        try:
            yield
        except EngineError as err:
            info = self.engine.image(image)
            count = f"{len(info.layers)} layers" if info else "an unknown number of layers"
            # podman's own words, without the mount data and the "podman refused to ..." we already say.
            reason = _MOUNT_DATA.sub("", str(err)).strip()
            reason = reason.split(": ", 1)[1] if reason.startswith("podman refused to") else reason
            raise BuildError(
                f"stage {stage or '(none)'}, tree {tree_id}: podman could not {action} (image {image[:12]}, "
                f"{count}; the layer budget is {layers.BUDGET}): {reason}; check the store's storage with "
                f"`podman {' '.join(self.engine.podman_args())} info`, then `osbuild-oci store clean` "
                "and build again") from None

    def fetch(self, tree_id: str, repository: str, tls_verify: bool, trust: tuple = ()) -> bool:
        """Pull REPOSITORY:<tree id> and keep it as that tree if it really is it; False if absent.

        With trust keys, only a manifest one of them signed is pulled (by its digest);
        anything else raises errors.Untrusted before a byte of it reaches the store.
        """
        if not pull_checked(self.engine, f"{repository}:{tree_id}", "tree", LABEL_TREE, tree_id,
                            tree_ref(tree_id), tls_verify, trust):
            return False
        self._sources.setdefault(repository, (tls_verify, trust))
        return True

    def push(self, tree_id: str, destination: str, tls_verify: bool, sign_key: SigningKey | None = None) -> None:
        """Push the tree; with a key, sign the manifest the registry then serves for destination."""
        push_signed(self.engine, tree_ref(tree_id), destination, tls_verify, sign_key)

    @contextmanager
    def unchanged_on_user_error(self) -> Iterator[None]:
        """Planning may pull images; if the input turns out bad, take back every image and name it added."""
        mark = len(self.engine.journal)
        try:
            yield
        except UserError:
            self.engine.undo(mark)
            raise

    @contextmanager
    def taken_back(self) -> Iterator[None]:
        """For commands that only look: every image and name the block added is taken back at its end."""
        mark = len(self.engine.journal)
        try:
            yield
        finally:
            self.engine.undo(mark)

    def tag(self, tree_id: str, name: str) -> str:
        """Give a tree another name (e.g. --tag), so it can be run or used as a base by that name."""
        info = self.tree_image(tree_id)
        if info is None:
            raise BuildError(f"tree {tree_id} is not in the store")
        name = image_name(name)
        self.engine.tag(info.id, name)
        return name

    def _tagged(self) -> list[tuple[str, ImageInfo]]:
        prefix = tree_ref("")
        return [(name[len(prefix):], info) for info in self.engine.images(TREES)
                for name in info.names if name.startswith(prefix)]

    def trees(self) -> list[tuple[str, ImageInfo]]:
        """(tree id, image) of every tree, by its tag; kept failures are no trees."""
        return [(tag, info) for tag, info in self._tagged() if not tag.startswith(FAILED)]

    def failed(self) -> list[tuple[str, ImageInfo]]:
        """(stage id, image) of every kept failed tree."""
        return [(tag[len(FAILED):], info) for tag, info in self._tagged() if tag.startswith(FAILED)]

    def outputs(self) -> list[tuple[str, ImageInfo | None, int]]:
        """(output id, its image or None, bytes its kept files take) of every cached assembler output."""
        prefix = output_ref("")
        images = {name[len(prefix):]: info for info in self.engine.images(OUTPUTS)
                  for name in info.names if name.startswith(prefix)}
        kept = self._kept_output_files()
        return [(oid, images.get(oid), kept.get(oid, 0)) for oid in sorted(images.keys() | kept.keys())]

    def _kept_output_files(self) -> dict[str, int]:
        """Output id -> bytes its kept files take; read from the directory alone, without podman."""
        directory = self.engine.store / OUTPUT_FILES
        return {path.name: _disk_bytes(path) for path in directory.iterdir()
                if path.is_dir() and not path.name.startswith(".")} if directory.is_dir() else {}

    def record_use(self, tree_ids: list[str]) -> None:
        """A build used these trees (built or hit): gc removes them last."""
        self.usage.touch([tree_id for tree_id in tree_ids if tree_id and self.has_tree(tree_id)])

    def record_output_use(self, oid: str) -> None:
        """A build wrote or copied this output: gc removes it last, as it does a used tree."""
        self.usage.touch([oid])

    def last_used(self, key: str, info: ImageInfo | None) -> float:
        """When the tree or output was last used; one never recorded counts from its image's creation."""
        recorded = self.usage.last_used(key)
        return recorded if recorded is not None else float(info.created or 0) if info else 0.0

    def listing(self) -> list[dict]:
        """Every tree and kept failure: stage, size of its own (newest) layer, creation and last use (Unix time),
        and the date of the Release file its packages came from (None when no stage reported one).

        A base adopted from the user's storage has no layer of this store's own: its size is None.
        """
        found = records.read(self.engine.store / "storage")
        rows = []
        for kind, entries in (("tree", self.trees()), ("failed", self.failed())):
            for tree_id, info in entries:
                top = found.images.get(info.id, ("", ()))[0]
                rows.append({"tree": tree_id, "image": tree_ref(tree_id if kind == "tree" else FAILED + tree_id),
                             "failed": kind == "failed", "stage": info.labels.get(LABEL_STAGE, ""),
                             "release_date": info.labels.get(LABEL_RELEASE),
                             "size": found.layers[top].size if top in found.layers else None,
                             "created": float(info.created or 0),
                             "last_used": self.usage.last_used(tree_id) if kind == "tree" else None})
        return rows

    def size(self) -> int:
        """What gc budgets: this store's own layers, each counted once, and the files of its kept outputs."""
        return self.layers_size() + self.output_files_size()

    def layers_size(self) -> int:
        found = records.read(self.engine.store / "storage")
        return found.size(set(found.layers))

    def output_files_size(self) -> int:
        return sum(self._kept_output_files().values())

    def gc(self, max_size: int | None, keep: set[str] = frozenset(),
           others: list[budget.Trimmable] = ()) -> tuple[list[str], int]:
        """Make the store fit max_size; (removed tree and output names, the store's size after).

        Without max_size every kept failure goes.  With it, kept failures go first,
        then trees and cached outputs by least recent use, as long as the store's layers, its kept
        output files and `others` (such as a package cache) together are over budget; then each of
        `others` is asked to trim what is still over.  Trees and outputs in keep (a running
        build's) never go.  Nothing else can be using them: this command holds the store's lock.
        """
        failed = [budget.Candidate(tree_ref(FAILED + stage_id), info.id, float("-inf"))
                  for stage_id, info in self.failed()]
        trees = [budget.Candidate(tree_ref(tree_id), info.id, self.last_used(tree_id, info))
                 for tree_id, info in self.trees() if tree_id not in keep]
        found_outputs = self.outputs()
        outputs = [budget.Candidate(output_ref(oid), info.id if info else None, self.last_used(oid, info), files)
                   for oid, info, files in found_outputs if oid not in keep]
        self.engine.prune()
        if max_size is None:
            chosen = failed
        else:
            extra = sum(other.size() for other in others) + \
                sum(files for oid, _, files in found_outputs if oid in keep)
            chosen, _ = budget.choose(records.read(self.engine.store / "storage"), failed + trees + outputs,
                                      max_size - extra)
        for candidate in chosen:
            if candidate.name.startswith(output_ref("")):
                self.remove_output(candidate.name[len(output_ref("")):])
            else:
                self.engine.remove_image(candidate.name)
        self.usage.forget(c.name.rsplit(":", 1)[1] for c in chosen)
        self.engine.prune()
        size = self.size()
        if max_size is not None:
            for other in others:
                over = size + sum(o.size() for o in others) - max_size
                if over > 0:
                    other.trim(over)
        return [c.name for c in chosen], size

    def clear(self) -> None:
        """Remove every tree, kept failure and every layer only they used; stage images are not the store's.

        Trees go by name: an adopted base image seen from the user's storage is read-only
        here, and loses only its tree name.
        """
        for tag, _ in self._tagged():
            self.engine.remove_image(tree_ref(tag))
            self.sbom_path(tag).unlink(missing_ok=True)
        for oid, _, _ in self.outputs():
            self.remove_output(oid)
        self.remove_partial_outputs()
        self.engine.prune()


def _disk_bytes(path: Path) -> int:
    """Bytes the files under path take on disk (a sparse disk image counts what it holds)."""
    return sum(entry.stat().st_blocks * 512 for entry in path.rglob("*") if entry.is_file())


def trusted_ref(ref: str, trust: tuple, tls_verify: bool, store: Path) -> str:
    """ref itself without trust keys; with them, ref pinned to the digest one of them signed, and not older
    than what this store accepted before (else errors.Untrusted).  Signing's cryptography is imported only
    when there are keys to check."""
    if not trust:
        return ref
    from ..registry import freshness, signing
    return signing.trusted(ref, trust, tls_verify, freshness.Accepted(store))


def pull_checked(engine: Engine, ref: str, kind: str, label: str, expected: str, local: str,
                 tls_verify: bool, trust: tuple = ()) -> bool:
    """Pull ref and name it local if its label says it is what it is tagged as; False if the registry lacks it.

    A cache registry is anyone's who can push to it: an image under the wrong tag is refused, not used.
    With trust keys, only a manifest one of them signed is pulled (by its digest); anything else
    raises errors.Untrusted before a byte of it reaches the store.
    """
    try:
        info = engine.pull(trusted_ref(ref, trust, tls_verify, engine.store), tls_verify)
    except RegistryError as err:
        if err.missing:
            return False
        raise
    if info.labels.get(label) != expected:
        raise BuildError(f"{ref} is not the {kind} it is tagged as (its "
                         f"{label} label says {info.labels.get(label)!r}); refusing to use it")
    engine.tag(info.id, local)
    return True


def push_signed(engine: Engine, local: str, destination: str, tls_verify: bool,
                sign_key: SigningKey | None = None) -> None:
    """Push an image of the store; with a key, sign the manifest the registry then serves for destination."""
    engine.push(local, destination, tls_verify)
    if sign_key is not None:
        from ..registry import signing
        info = engine.image(local)
        signing.sign(destination, info.id, sign_key, tls_verify, info.labels.get(LABEL_RELEASE))


def _wait_for_lock(lock, path: Path, timeout: float) -> None:
    """Take the store's lock; while another process holds it, say so once and wait up to timeout."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise BuildError(f"store {path} is still in use by another osbuild-oci process after "
                                 f"{timeout:g} s; raise --lock-timeout or use another --store") from None
            if not told:
                print(f"waiting for store {path}: another osbuild-oci process is using it "
                      f"(--lock-timeout {timeout:g} s)", file=sys.stderr, flush=True)
                told = True
            time.sleep(0.2)


@contextmanager
def open_store(path: Path, lock_timeout: float = 3600.0, look_only: bool = False) -> Iterator[ObjectStore]:
    """The store, locked against other osbuild-oci processes, with its podman service running.

    A store this command created is removed again when the input turns out bad,
    so a refused build leaves no trace, and always for a command that only looks.
    """
    if path.exists() and not path.is_dir():
        raise UserError(f"--store {path} is not a directory")
    created = path
    while not created.parent.exists():
        created = created.parent
    created = created if not created.exists() else None
    path.mkdir(parents=True, exist_ok=True)
    try:
        with open(path / ".lock", "w") as lock:
            _wait_for_lock(lock, path, lock_timeout)
            with Engine(path) as engine:
                objects = ObjectStore(engine)
                objects.remove_partial_outputs()
                yield objects
    except UserError:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    if look_only and created is not None:
        shutil.rmtree(created, ignore_errors=True)
