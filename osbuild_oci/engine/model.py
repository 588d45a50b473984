"""The records that cross the engine's boundary: what a container gets, what an image is."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False


@dataclass
class ContainerSpec:
    """What a stage or assembler container gets: its image, the tree, nothing else."""

    image: str
    mounts: list[Mount] = field(default_factory=list)
    network: str = "none"  # host.Network
    capabilities: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes = b""

    def __str__(self) -> str:
        return f"a container of {self.image}"


@dataclass(frozen=True)
class ImageInfo:
    id: str
    labels: dict[str, str]
    layers: list[str]
    names: list[str]
    size: int = 0
    created: str = ""
    # REPO@sha256:... of the manifests it was pulled by or pushed as.
    digests: tuple[str, ...] = ()
    # The config's architecture, as OCI names it ("" when the image does not say).
    arch: str = ""
    # The manifest's annotations: podman 4.3 copies them into a container's OCI spec.
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_inspect(cls, attrs: dict) -> "ImageInfo":
        """From podman's image inspect JSON, which the CLI and the API give alike."""
        return cls(id=attrs["Id"], labels=attrs.get("Labels") or {},
                   layers=list((attrs.get("RootFS") or {}).get("Layers") or []),
                   names=list(attrs.get("RepoTags") or []), size=int(attrs.get("Size") or 0),
                   created=str(attrs.get("Created") or ""), digests=tuple(attrs.get("RepoDigests") or ()),
                   arch=str(attrs.get("Architecture") or ""), annotations=attrs.get("Annotations") or {})
