"""Stage and assembler images: how a name resolves to an image, and what its labels promise.

An image describes itself in labels, and labels are untrusted input: the image
may come from any registry.  The schema label is required, must be a valid,
self-contained JSON schema (no reference leaves it, so checking options never
reads a file or the network), and options are checked against it before any
container starts.  The capabilities a label asks for are granted only within
ALLOWED_CAPABILITIES, whatever the label says.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

from ..errors import UserError
from ..pipeline.validation import bounded_validator, describe_validation_error, jsonschema, known_valid, remember_valid

LOCAL_PREFIX = "localhost/osbuild-oci"
LABEL_NAME = "org.osbuild-oci.name"
LABEL_KIND = "org.osbuild-oci.kind"
LABEL_SCHEMA = "org.osbuild-oci.schema"
LABEL_CAPABILITIES = "org.osbuild-oci.capabilities"
LABEL_NETWORK = "org.osbuild-oci.network"
LABEL_PACKAGE_CACHE = "org.osbuild-oci.package-cache"
LABEL_SOURCE = "org.osbuild-oci.source-digest"
# How the image deals with the pipeline's architecture (docs/decisions/023-*.md).
LABEL_ARCH = "org.osbuild-oci.arch"


class Kind(enum.StrEnum):
    """What an image is to a pipeline (its org.osbuild-oci.kind label)."""

    STAGE = "stage"
    ASSEMBLER = "assembler"
    BASE = "base"


class ArchMode(enum.StrEnum):
    """How an image takes the pipeline's architecture: as its `arch` option, on a tree of any architecture, or
    only on a tree of the host's (also when its label does not say: such an image is not trusted with another)."""

    OPTION = "option"
    ANY = "any"
    NATIVE = "native"


# Annotations the runtime acts on: podman 4.3 copies an image's annotations into the container's OCI
# spec, where crun reads run.oci.* (e.g. run.oci.keep_original_groups) and podman its own io.podman.*
# and io.containers.* (e.g. io.containers.trace-syscall, an OCI hook).  A stage image gets none of them.
RUNTIME_ANNOTATIONS = ("run.oci.", "io.podman.", "io.containers.")


def empty_ref(arch: str) -> str:
    """The image with no layers that a tree of arch without a base starts from; its config names arch."""
    return f"{LOCAL_PREFIX}/empty:{arch}"


def local_ref(name: str, prefix: str = LOCAL_PREFIX) -> str:
    """The image a stage name resolves to: built locally, or under a registry namespace (--stages-from)."""
    return f"{prefix.rstrip('/')}/{name}:latest"


# What the shipped stages need (each Containerfile says why), and nothing that reaches past
# the tree: no CAP_SYS_ADMIN (mounts), no CAP_DAC_READ_SEARCH (open_by_handle_at escapes
# the container; readers use CAP_DAC_OVERRIDE on a read-only tree instead), no
# CAP_NET_*, CAP_SYS_MODULE, CAP_SYS_PTRACE.  `--allow-capability` lifts it per build.
ALLOWED_CAPABILITIES = frozenset({"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_MKNOD",
                                  "CAP_SETGID", "CAP_SETUID", "CAP_SYS_CHROOT"})
# An assembler writes files for the host to take, not a tree: it has no use for device nodes.
WITHHELD = {Kind.ASSEMBLER: frozenset({"CAP_MKNOD"})}


# The project's own stages that fetch packages: they get the network their label asks for, by name.  Any other
# image that asks for it gets it only when the user grants it (`--allow-network NAME`).
NETWORK_STAGES = frozenset({"org.osbuild.debootstrap", "org.osbuild.apt"})


def _label_schema(raw: str) -> dict | bool:
    """The schema label as a checked, self-contained JSON schema; ValueError says what is wrong."""
    schema = json.loads(raw, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not JSON")))
    if not isinstance(schema, (dict, bool)):
        raise ValueError(f"it is a JSON {type(schema).__name__}, not a schema object")
    todo = [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            for key in ("$ref", "$dynamicRef"):
                if key in node and not (isinstance(node[key], str) and node[key].startswith("#")):
                    raise ValueError(f"{key} {str(node[key])[:80]!r} points outside the label; a stage schema "
                                     "must be self-contained (use #/$defs/...)")
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    if not known_valid("schema", True, schema):
        jsonschema.validators.validator_for(schema).check_schema(schema)
        remember_valid("schema", True, schema)
    return schema


@dataclass(frozen=True)
class StageImage:
    name: str
    ref: str
    id: str
    kind: Kind
    schema: dict | bool
    capabilities: tuple[str, ...]
    network: bool
    # Whether the user's package cache is mounted at /run/osbuild/cache (never into the tree).
    package_cache: bool = False
    arch: ArchMode = ArchMode.NATIVE

    @classmethod
    def from_labels(cls, name: str, ref: str, image_id: str, labels: dict[str, str], where: str,
                    annotations: dict[str, str] | None = None) -> "StageImage":
        """Read and check an image's self-description; refuse an image without a valid schema, or one
        whose annotations would instruct the container runtime."""
        steering = sorted(key for key in annotations or {} if str(key).startswith(RUNTIME_ANNOTATIONS))
        if steering:
            raise UserError(f"image {ref} carries the annotation {steering[0][:80]}, which the container runtime "
                            f"acts on ({', '.join(p + '*' for p in RUNTIME_ANNOTATIONS)} are refused): rebuild it "
                            "without, or use another image", where)
        raw = labels.get(LABEL_SCHEMA)
        if raw is None:
            raise UserError(f"image {ref} has no {LABEL_SCHEMA} label, so its options cannot be checked; "
                            "it is not a stage image (rebuild it with `osbuild-oci stages build`)", where)
        try:
            schema = _label_schema(raw)
        except (ValueError, RecursionError, jsonschema.SchemaError) as err:
            raise cls._invalid(ref, where, err) from None
        caps = tuple(c if c.startswith("CAP_") else f"CAP_{c}"
                     for c in labels.get(LABEL_CAPABILITIES, "").replace(",", " ").upper().split())
        arch = labels.get(LABEL_ARCH, ArchMode.NATIVE)
        if arch not in tuple(ArchMode):
            raise UserError(f"image {ref} has {LABEL_ARCH}={arch!r}; it must be one of {', '.join(ArchMode)}", where)
        kind = labels.get(LABEL_KIND, Kind.STAGE)
        if kind not in tuple(Kind):
            raise UserError(f"image {ref} has {LABEL_KIND}={kind!r}; it must be one of {', '.join(Kind)}", where)
        return cls(name=name, ref=ref, id=image_id, kind=Kind(kind), schema=schema,
                   capabilities=caps, network=labels.get(LABEL_NETWORK, "false").lower() == "true",
                   package_cache=labels.get(LABEL_PACKAGE_CACHE, "false").lower() == "true", arch=ArchMode(arch))

    @staticmethod
    def _invalid(ref: str, where: str, err: Exception) -> UserError:
        reason = "it refers to itself without end" if isinstance(err, RecursionError) else \
            (str(err).splitlines() or [type(err).__name__])[0]
        return UserError(f"stage image {ref} has an invalid schema label: {reason}", where)

    def check_capabilities(self, added: frozenset[str], where: str) -> None:
        """Refuse an image whose label asks for more than its kind's allowlist plus what the user allowed."""
        allowed = ALLOWED_CAPABILITIES - WITHHELD.get(self.kind, frozenset())
        extra = [c for c in self.capabilities if c not in allowed | added]
        if extra:
            raise UserError(f"{self.kind} image {self.ref} asks for {', '.join(extra)} in its {LABEL_CAPABILITIES} "
                            f"label, outside the allowlist of a{'n' if self.kind == Kind.ASSEMBLER else ''} "
                            f"{self.kind} ({' '.join(sorted(allowed))}); if you trust this image, pass "
                            f"--allow-capability {extra[0]}", where)

    def check_network(self, granted: frozenset[str], where: str) -> None:
        """Refuse an image whose label asks for the network unless its stage's name has that grant."""
        if self.network and self.name not in granted:
            raise UserError(f"stage image {self.ref} asks for the network in its {LABEL_NETWORK} label; only "
                            f"{' and '.join(sorted(NETWORK_STAGES))} have it by default: if you trust this image, "
                            f"pass --allow-network {self.name}", where)

    def check_options(self, options: dict, where: str) -> None:
        """Validate options against the image's schema; the error names the JSON path."""
        if known_valid("options", self.schema, options):
            return
        import referencing.exceptions  # with jsonschema, only when the check must run
        try:
            error = jsonschema.exceptions.best_match(bounded_validator(self.schema).iter_errors(options))
        except (RecursionError, referencing.exceptions.Unresolvable, jsonschema.SchemaError) as err:
            raise self._invalid(self.ref, where, err) from None
        except TimeoutError as err:
            raise UserError(f"stage image {self.ref} has an invalid schema label: {err}", where) from None
        if error is not None:
            raise describe_validation_error(error, f"{where}.options")
        remember_valid("options", self.schema, options)
