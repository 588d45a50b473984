"""Stage and assembler images: how a name resolves to an image, and what its labels promise.

An image describes itself in labels; the orchestrator trusts nothing else.  The
schema label is required and must be a valid JSON schema: options are checked
against it before any container starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import jsonschema

from .errors import UserError, describe_validation_error

LOCAL_PREFIX = "localhost/osbuild-oci"
LABEL_NAME = "org.osbuild-oci.name"
LABEL_KIND = "org.osbuild-oci.kind"
LABEL_SCHEMA = "org.osbuild-oci.schema"
LABEL_CAPABILITIES = "org.osbuild-oci.capabilities"
LABEL_NETWORK = "org.osbuild-oci.network"
LABEL_SOURCE = "org.osbuild-oci.source-digest"

# Names the seed used for assemblers that have a different name here.
ALIASES = {"io.weldr.qcow2": "org.osbuild.qcow2"}


def local_ref(name: str, prefix: str = LOCAL_PREFIX) -> str:
    """The image a stage name resolves to: built locally, or under a registry namespace (--stages-from)."""
    return f"{prefix.rstrip('/')}/{ALIASES.get(name, name)}:latest"


@dataclass(frozen=True)
class StageImage:
    name: str
    ref: str
    id: str
    kind: str
    schema: dict
    capabilities: tuple[str, ...]
    network: bool

    @classmethod
    def from_labels(cls, name: str, ref: str, image_id: str, labels: dict[str, str], where: str) -> "StageImage":
        """Read and check an image's self-description; refuse an image without a valid schema."""
        raw = labels.get(LABEL_SCHEMA)
        if raw is None:
            raise UserError(f"image {ref} has no {LABEL_SCHEMA} label, so its options cannot be checked; "
                            "it is not a stage image (rebuild it with `osbuild-oci stages build`)", where)
        try:
            schema = json.loads(raw)
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except (ValueError, jsonschema.SchemaError) as err:
            raise UserError(f"image {ref} carries an invalid options schema in {LABEL_SCHEMA}: "
                            f"{str(err).splitlines()[0]}", where) from None
        caps = tuple(c if c.startswith("CAP_") else f"CAP_{c}"
                     for c in labels.get(LABEL_CAPABILITIES, "").replace(",", " ").split())
        return cls(name=name, ref=ref, id=image_id, kind=labels.get(LABEL_KIND, "stage"), schema=schema,
                   capabilities=caps, network=labels.get(LABEL_NETWORK, "false").lower() == "true")

    def check_options(self, options: dict, where: str) -> None:
        """Validate options against the image's schema; the error names the JSON path."""
        validator = jsonschema.validators.validator_for(self.schema)(self.schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(options))
        if error is not None:
            raise describe_validation_error(error, f"{where}.options")
