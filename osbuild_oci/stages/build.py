"""Build the stage and assembler images of a source tree into the stage storage (engine/localstorage.py).

No registry is reachable on the machines we build on, so the chain starts from
mmdebstrap: a Debian minbase tarball imported as an image, then the top-level
Containerfile (the common base), then one image per folder.  The base is
bookworm's (stage-base:latest); a folder that builds FROM stage-base:trixie
gets a second minbase and base of that suite, made only when one asks for it.
Every image carries a digest of its sources (and of its base) in a label; an
image whose sources did not change is not rebuilt, so its id, and every tree
built with it, stays valid.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jsonschema

from ..pipeline.arch import ARCHES
from ..engine import localstorage
from ..errors import BuildError, UserError
from ..ids import source_digest
from .. import oci
from . import SOURCES
from .image import (LABEL_CAPABILITIES, LABEL_KIND, LABEL_NAME, LABEL_NETWORK, LABEL_SCHEMA, LABEL_SOURCE,
                    LOCAL_PREFIX, Kind, empty_ref, local_ref)

MIRROR = "http://deb.debian.org/debian"
# The suite of stage-base:latest, which every stage builds FROM; an image that needs a newer suite's tools
# (the disk assembler: systemd-repart --offline, ukify) builds FROM stage-base:SUITE instead.
SUITE = "bookworm"
SUITES = ("bookworm", "trixie")
STAGE_BASE = f"{LOCAL_PREFIX}/stage-base:latest"


def minbase_ref(suite: str) -> str:
    """The mmdebstrap minbase of a suite: the root of its stage base, and of the osbuild-oci image (bookworm)."""
    return f"{LOCAL_PREFIX}/debian-minbase:{suite}"


def stage_base_ref(suite: str) -> str:
    """stage-base:latest stays bookworm's name, so stage folders written before trixie build unchanged."""
    return STAGE_BASE if suite == SUITE else f"{LOCAL_PREFIX}/stage-base:{suite}"


KINDS = {"stages": Kind.STAGE, "assemblers": Kind.ASSEMBLER}


@dataclass(frozen=True)
class Source:
    """One folder that builds into one image."""

    name: str
    kind: Kind
    path: Path

    @property
    def ref(self) -> str:
        return local_ref(self.name)


def find_sources(root: Path) -> list[Source]:
    out = []
    for folder, kind in KINDS.items():
        for path in sorted((root / folder).glob("*/Containerfile")):
            out.append(Source(path.parent.name, kind, path.parent))
    return out


def _load_schema(source: Source) -> str:
    path = source.path / "schema.json"
    try:
        schema = json.loads(path.read_text())
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except FileNotFoundError:
        raise UserError(f"{source.path}: no schema.json beside the Containerfile; every stage needs one") from None
    except (ValueError, jsonschema.SchemaError) as err:
        raise UserError(f"{path}: not a valid JSON schema: {str(err).splitlines()[0]}") from None
    return json.dumps(schema, separators=(",", ":"), sort_keys=True)


def _up_to_date(ref: str, digest: str) -> bool:
    info = localstorage.image(ref)
    return info is not None and info.labels.get(LABEL_SOURCE) == digest


def _image_id(ref: str) -> str:
    info = localstorage.image(ref)
    if info is None:
        raise BuildError(f"{ref} is missing right after it was built")
    return info.id


def ensure_minbase(log: Callable[[str], None], suite: str = SUITE) -> str:
    """Import a Debian minbase of the suite made by mmdebstrap, once; it is the root of the stage images."""
    ref = minbase_ref(suite)
    info = localstorage.image(ref)
    if info:
        return info.id
    log(f"creating {ref} with mmdebstrap (once, about 15 s)")
    with tempfile.TemporaryDirectory() as tmp:
        tarball = Path(tmp) / "minbase.tar"
        proc = subprocess.run(["mmdebstrap", "--variant=minbase", "--include=python3", "--quiet", suite,
                               str(tarball), MIRROR])
        if proc.returncode != 0:
            raise BuildError(f"mmdebstrap could not create the {suite} base (exit {proc.returncode})")
        localstorage.import_tarball(tarball, ref)
    return _image_id(ref)


def ensure_empty() -> None:
    """The images with no layers at all that trees without a base start from, one per architecture
    (a commit keeps its image's architecture, so a tree's config names the arch of its empty image);
    every store sees them.

    `FROM scratch` would give it one empty layer, and a tree one layer more than
    it has stages; an OCI layout with no layers, copied in by skopeo, gives none.
    """
    for arch in ARCHES.values():
        ref = empty_ref(arch.debian)
        info = localstorage.image(ref)
        if info is not None and not info.layers:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            layout = Path(tmp)
            target = {"architecture": arch.oci, "os": "linux", **({"variant": arch.variant} if arch.variant else {})}
            oci.write_layout(layout, {**target, "config": {}, "rootfs": {"type": "layers", "diff_ids": []}},
                             oci.CONFIG, [])
            localstorage.copy_in(f"oci:{layout}", ref)


def _local_from(source: Source) -> list[str]:
    """The local images (name:tag after LOCAL_PREFIX/) the Containerfile starts FROM."""
    found = []
    for line in (source.path / "Containerfile").read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[0].upper() == "FROM" and words[1].startswith(LOCAL_PREFIX + "/"):
            found.append(words[1][len(LOCAL_PREFIX) + 1:])
    return found


def _local_parent(source: Source, by_name: dict[str, Source]) -> Source | None:
    """The folder whose image this one starts FROM, if any (it must be built, and hashed, first)."""
    for image in _local_from(source):
        parent = by_name.get(image.split(":", 1)[0])
        if parent is not None and parent != source:
            return parent
    return None


def _base_suite(source: Source) -> str:
    """The suite of the stage base the folder builds FROM: stage-base:latest is SUITE, stage-base:SUITE another."""
    for image in _local_from(source):
        name, _, tag = image.partition(":")
        if name == "stage-base" and tag not in ("", "latest"):
            if tag not in SUITES:
                raise UserError(f"{source.path / 'Containerfile'}: FROM {LOCAL_PREFIX}/{image}: the stage base "
                                f"is built for {', '.join(SUITES)} (stage-base:latest is {SUITE})")
            return tag
    return SUITE


def describe(root: Path) -> list[dict]:
    """Each stage and assembler folder of root: its image, whether it is built, what its labels ask for."""
    rows = []
    for src in find_sources(root):
        info = localstorage.image(src.ref)
        labels = info.labels if info else {}
        rows.append({"name": src.name, "image": src.ref, "id": info.id if info else None,
                     "kind": labels.get(LABEL_KIND), "network": labels.get(LABEL_NETWORK, "false") == "true",
                     "capabilities": labels.get(LABEL_CAPABILITIES, "").split()})
    return rows


def build_all(root: Path, only: list[str] | None, log: Callable[[str], None],
              verbose: bool = False) -> list[tuple[Source, bool]]:
    """Build what changed; return each source with whether it was (re)built.  A source tree without a
    single stage or assembler folder is a mistake (a typo in --source), not an empty success.  podman's build
    steps are shown only when verbose (their last lines also when a build fails)."""
    sources = find_sources(root)
    if not sources:
        missing = "does not exist" if not root.exists() else "has no stages/NAME/Containerfile or " \
            "assemblers/NAME/Containerfile"
        raise UserError(f"--source {root} {missing}; give the directory that holds stages/ and assemblers/")
    by_name = {s.name: s for s in sources}
    if only:
        unknown = sorted(set(only) - set(by_name))
        if unknown:
            raise UserError(f"no stage or assembler folder named {', '.join(unknown)} under {root}")
    ensure_empty()
    # A source tree of one's own stages needs no base/ of its own: they build FROM the installed one.
    base = root / "base" if (root / "base").is_dir() else SOURCES / "base"
    base_ids: dict[str, str] = {}

    def stage_base(suite: str) -> str:
        """The id of the stage base of the suite, built first if its sources or its minbase changed."""
        if suite not in base_ids:
            ref = stage_base_ref(suite)
            base_digest = source_digest(base, ensure_minbase(log, suite))
            if not _up_to_date(ref, base_digest):
                if verbose:
                    log(f"building {ref}")
                localstorage.build(base, base / "Containerfile", ref, {LABEL_SOURCE: base_digest},
                                   {"BASE": minbase_ref(suite)}, verbose)
            base_ids[suite] = _image_id(ref)
        return base_ids[suite]

    stage_base(SUITE)
    built: dict[str, bool] = {}

    def build(source: Source) -> str:
        if source.name not in built:
            parent = _local_parent(source, by_name)
            schema = _load_schema(source)
            digest = source_digest(source.path, build(parent) if parent else stage_base(_base_suite(source)))
            built[source.name] = not _up_to_date(source.ref, digest)
            if built[source.name]:
                if verbose:
                    log(f"building {source.ref}")
                localstorage.build(source.path, source.path / "Containerfile", source.ref,
                                   {LABEL_NAME: source.name, LABEL_KIND: source.kind, LABEL_SCHEMA: schema,
                                    LABEL_SOURCE: digest}, verbose=verbose)
        return _image_id(source.ref)

    wanted = [s for s in sources if not only or s.name in only]
    for source in wanted:
        build(source)
    return [(s, built[s.name]) for s in wanted]
