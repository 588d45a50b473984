"""The names and labels a store gives what it keeps: trees, kept failures and assembler outputs.

A tree is an image tagged `localhost/osbuild-oci/trees:<tree id>` and labelled
with that id, so a cache hit can be checked; a failed stage's partial tree is
kept under a name no tree id can have; an output that travels is an image
`localhost/osbuild-oci/outputs:<output id>`.
"""

from __future__ import annotations

import enum
import re

TREES = "localhost/osbuild-oci/trees"
OUTPUTS = "localhost/osbuild-oci/outputs"
FAILED = "failed-"
LABEL_TREE = "org.osbuild-oci.tree-id"
LABEL_STAGE = "org.osbuild-oci.stage"
LABEL_DEPTH = "org.osbuild-oci.depth"
LABEL_ROOT = "org.osbuild-oci.root"
LABEL_LAYERS = "org.osbuild-oci.layer-trees"
LABEL_FAILED = "org.osbuild-oci.failed-stage"
LABEL_EPOCH = "org.osbuild-oci.source-epoch"
LABEL_RELEASE = "org.osbuild-oci.release-date"
LABEL_OUTPUT = "org.osbuild-oci.output-id"
_CACHE_REF = re.compile(rf"(?:{re.escape(TREES)}|{re.escape(OUTPUTS)}):[0-9a-f]{{64}}\Z")


class Kept(enum.StrEnum):
    """What a store keeps under a name of its own."""

    TREE = "tree"
    FAILED = "failed"
    OUTPUT = "output"


def tree_ref(tree_id: str) -> str:
    return f"{TREES}:{tree_id}"


def output_ref(oid: str) -> str:
    return f"{OUTPUTS}:{oid}"


def failed_ref(stage_id: str) -> str:
    """Where a failed stage's partial tree is kept: never under its stage id, so never a cache hit."""
    return f"{TREES}:{FAILED}{stage_id}"


def is_cache_ref(ref: str) -> bool:
    """Whether ref is a name this store gives a cached tree or output (what `tree_ref` and `output_ref` make)."""
    return _CACHE_REF.match(ref) is not None


def image_name(name: str) -> str:
    """A name as podman tags it: `:latest` unless the last path part has a tag."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
