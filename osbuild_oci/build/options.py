"""Every option a command can take, in one table: its flags, help, environment variable and settings-file key,
resolved once into the `Options` a command runs with.

Like mkosi's settings table: a new option is one row here, and the command line,
the settings file (build/settings.py) and `--help` all follow from it.  A
command names the rows it takes (cli/common.py `command`); what the command
line gives wins over the environment, which wins over the settings file.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

from ..errors import UserError
from ..pipeline.model import SECRET_NAME
from ..stages import SOURCES
from ..stages.image import ALLOWED_CAPABILITIES, NETWORK_STAGES
from . import settings

if TYPE_CHECKING:
    from ..registry.signing import SigningKey


@dataclass(frozen=True)
class Setting:
    """One row: the Options field `name`, spelt `flags` on the command line."""

    name: str
    flags: tuple[str, ...]
    help: str
    type: Any
    default: Any = None
    metavar: str | None = None
    env: str | None = None
    config: str | None = None
    checks: dict = field(default_factory=dict)  # typer's own checks: file_okay, dir_okay, min ...


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "osbuild-oci"


TABLE = {row.name: row for row in (
    Setting("store", ("--store",), "Directory of the object store (its own containers-storage) "
            "[default: ~/.cache/osbuild-oci/store]", Optional[Path], metavar="DIR", env="OSBUILD_OCI_STORE",
            checks={"file_okay": False}),
    Setting("output", ("--output", "-o"), "Empty (or new) directory for the assembler's output; needed when the "
            "pipeline has an assembler", Optional[Path], metavar="DIR"),
    Setting("json", ("--json",), "Print JSON on stdout: one object per event (build), one document (the rest)",
            bool, False),
    Setting("tags", ("--tag",), "Also tag the final tree image with this name (repeatable)", List[str], [],
            metavar="NAME"),
    Setting("pushes", ("--push",), "Push the final tree image to this reference (repeatable)", List[str], [],
            metavar="REF"),
    Setting("stages_from", ("--stages-from",), "Resolve stage names to REGISTRY/NAMESPACE/NAME:latest",
            Optional[str], metavar="REGISTRY/NAMESPACE"),
    Setting("cache_from", ("--cache-from",), "Look up trees missing from the store here (tag = tree id) "
            "(repeatable)", List[str], [], metavar="REGISTRY/NAMESPACE/REPO"),
    Setting("cache_to", ("--cache-to",), "Push every tree of the pipeline here (tag = tree id)", Optional[str],
            metavar="REGISTRY/NAMESPACE/REPO"),
    Setting("tls_verify", ("--tls-verify/--no-tls-verify",), "Require HTTPS with a valid certificate; "
            "--no-tls-verify (or --tls-verify=false) allows plain-HTTP registries", bool, True),
    Setting("lock_timeout", ("--lock-timeout",), "How long to wait for another osbuild-oci process using the "
            "same store", float, 3600.0, metavar="SECONDS"),
    Setting("keep_failed", ("--keep-failed/--no-keep-failed",), "Keep a failed stage's partial tree for "
            "`osbuild-oci shell --failed`", bool, True),
    Setting("refresh", ("--refresh",), "Run again the first stage that fetches packages (its image asks for the "
            "network) and every stage after it, even when cached: a moving suite's updates; the new trees replace "
            "the old ones", bool, False),
    Setting("context", ("--context",), "Directory the pipeline's {\"from\": \"context\"} inputs are read from; a stage "
            "reads only the files its options name, and their digest is part of its id [default: none]",
            Optional[Path], metavar="DIR", checks={"file_okay": False}),
    Setting("package_cache", ("--package-cache",), "Directory of downloaded .debs shared by builds and stores "
            "[default: ~/.cache/osbuild-oci/packages]", Optional[Path], metavar="DIR", checks={"file_okay": False}),
    Setting("allow_capability", ("--allow-capability",), "Grant stage images this capability beyond the "
            "allowlist (repeatable; only for images you trust)", List[str], [], metavar="CAP"),
    Setting("allow_network", ("--allow-network",), "Let the stage of this name use the network its image asks for "
            "(repeatable); org.osbuild.debootstrap and org.osbuild.apt have it without asking", List[str], [],
            metavar="NAME"),
    Setting("allow_host_network", ("--allow-host-network",), "Where no network namespace of their own can be made "
            "(rootless without slirp4netns or a usable /dev/net/tun), let stages with network share this host's "
            "(they then reach its 127.0.0.1) instead of refusing the build; the osbuild-oci image sets it, its "
            "container's namespace being the boundary", bool, False, env="OSBUILD_OCI_ALLOW_HOST_NETWORK"),
    Setting("trust_keys", ("--trust-key",), "Use a stage image or cached tree from a registry only if this public "
            "key signed it (repeatable: any of them) [default: trust-keys of the settings file, else trust the "
            "registry]", List[Path], [], metavar="PUB", config="trust-keys", checks={"dir_okay": False}),
    Setting("sign_key", ("--sign-key",), "Sign every image pushed with this private key (NAME.key of "
            "`osbuild-oci key generate`); the signature goes into the registry as a sigstore attachment",
            Optional[Path], metavar="KEY", checks={"dir_okay": False}),
    Setting("sign_passphrase_file", ("--sign-passphrase-file",), "File whose first line is the --sign-key "
            "passphrase [default: none]", Optional[Path], metavar="FILE", checks={"dir_okay": False}),
    Setting("lock", ("--lock",), "Write the id (and registry digest) of every stage, assembler and base image the "
            "build used to FILE, sorted JSON to commit", Optional[Path], metavar="FILE", checks={"dir_okay": False}),
    Setting("locked", ("--locked",), "Build with exactly the images the --lock FILE pins (pulled by digest if "
            "missing) and leave FILE as it is; a stage it lacks is refused", bool, False),
    Setting("secrets", ("--secret",), "A file the assembler may read where its options say {\"secret\": NAME} (a "
            "LUKS key, a signing key): mounted read-only for it alone, never in a tree, log or lock; such an output "
            "is not cached (repeatable)", List[str], [], metavar="NAME=FILE"),
    Setting("report", ("--report",), "Write a self-contained HTML page of the build to FILE: the stage timeline, "
            "layer sizes, cache hits and misses, the output's size and digest, the SBOM", Optional[Path],
            metavar="FILE", checks={"dir_okay": False}),
    Setting("junit", ("--junit",), "Write a JUnit XML file to FILE: one test case per stage and the assembler, "
            "for CI systems to show", Optional[Path], metavar="FILE", checks={"dir_okay": False}),
    Setting("store_max_size", ("--store-max-size",), "After the build, remove least recently used trees until the "
            "store fits (e.g. 20G) [default: the store-max-size setting of ~/.config/osbuild-oci/config.toml]",
            Optional[str], metavar="SIZE", config="store-max-size"),
    Setting("source", ("--source",), "Source tree with stages/ and assemblers/ (and base/, else the installed one) "
            "[default: the ones installed with osbuild-oci]", Path, SOURCES, metavar="DIR", checks={"file_okay": False}),
    Setting("max_size", ("--max-size",), "Remove least recently used trees until the store fits (e.g. 20G) "
            "[default: the store-max-size setting]", Optional[str], metavar="SIZE", config="store-max-size"),
)}


@dataclass(frozen=True)
class Options:
    """What a command was asked, whichever way it was asked; fields a command does not take keep their default."""

    store: Path = field(default_factory=lambda: _cache_dir() / "store")
    output: Path | None = None
    json: bool = False
    tags: tuple[str, ...] = ()
    pushes: tuple[str, ...] = ()
    stages_from: str | None = None
    cache_from: tuple[str, ...] = ()
    cache_to: str | None = None
    tls_verify: bool = True
    lock_timeout: float = 3600.0
    keep_failed: bool = True
    refresh: bool = False
    context: Path | None = None
    package_cache: Path | None = None
    allow_capability: tuple[str, ...] = ()
    allow_network: tuple[str, ...] = ()
    allow_host_network: bool = False
    trust_keys: tuple[Path, ...] = ()
    sign_key: Path | None = None
    sign_passphrase_file: Path | None = None
    lock: Path | None = None
    locked: bool = False
    secrets: tuple[str, ...] = ()
    report: Path | None = None
    junit: Path | None = None
    store_max_size: str | None = None
    max_size: str | None = None
    source: Path = SOURCES

    @classmethod
    def resolve(cls, given: dict[str, Any]) -> "Options":
        """The options a command line gave (typer already read the environment variables), completed from the
        settings file where the command line is silent."""
        values: dict[str, Any] = {}
        for name, value in given.items():
            if TABLE[name].config and value in (None, []):
                value = settings.trust_keys([]) if name == "trust_keys" else settings.load().get(TABLE[name].config)
            values[name] = tuple(value) if isinstance(value, list) else value
        if values.get("store") is not None:
            values["store"] = values["store"].resolve()
        else:
            values.pop("store", None)
        return cls(**values)

    def signing_key(self) -> SigningKey | None:
        """The opened --sign-key (None without one); a passphrase file without a key is a mistake."""
        if self.sign_key is None:
            if self.sign_passphrase_file is not None:
                raise UserError("--sign-passphrase-file is the passphrase of --sign-key; give --sign-key too")
            return None
        from ..registry.signing import SigningKey  # cryptography costs 60 ms: only for a command that signs
        return SigningKey.open(self.sign_key, self.sign_passphrase_file)

    def secret_files(self) -> dict[str, Path]:
        """--secret NAME=FILE, checked: a name the options can give, a regular file this user can read."""
        found: dict[str, Path] = {}
        for item in self.secrets:
            name, _, file = item.partition("=")
            if not SECRET_NAME.match(name) or not file:
                raise UserError(f"--secret {item!r}: give NAME=FILE, NAME 1-64 letters, digits, '.', '_' or '-'")
            path = Path(file).resolve()
            if not path.is_file() or not os.access(path, os.R_OK):
                raise UserError(f"--secret {name}: {file} is not a file you can read")
            if found.setdefault(name, path) != path:
                raise UserError(f"--secret {name} is given twice, with two files")
        return found

    def size_limit(self) -> int | None:
        """--store-max-size or --max-size (or the settings file's store-max-size) in bytes."""
        from ..units import parse_size
        limit = self.max_size if self.max_size is not None else self.store_max_size
        flag = "--max-size" if self.max_size is not None else "--store-max-size"
        return parse_size(limit, flag) if limit is not None else None



@dataclass(frozen=True)
class Remote:
    """Where stages and cached trees may come from and go to, and who must have signed them."""

    stages_from: str | None = None
    cache_from: tuple[str, ...] = ()
    cache_to: str | None = None
    tls_verify: bool = True
    # Public keys of which one must have signed every image pulled from a registry (none: trust the registry).
    trust: tuple = ()
    sign_key: SigningKey | None = None

    @classmethod
    def of(cls, options: Options) -> "Remote":
        """The registries of the options, the trust keys opened (cryptography only when there are keys)."""
        trust: tuple = ()
        if options.trust_keys:
            from ..registry import signing
            trust = tuple(signing.load_public(path) for path in options.trust_keys)
        return cls(options.stages_from, options.cache_from, options.cache_to, options.tls_verify, trust,
                   options.signing_key())


@dataclass(frozen=True)
class Policy:
    """What stage images may be given beyond their kind's allowlist (stages/image.py): what the user allowed on
    the command line."""

    capabilities: frozenset[str] = frozenset()
    network: frozenset[str] = NETWORK_STAGES
    host_network: bool = False

    @classmethod
    def of(cls, options: Options) -> "Policy":
        """The allowlist and --allow-capability, each capability the user added said on stderr."""
        extra = {c.upper() if c.upper().startswith("CAP_") else f"CAP_{c.upper()}" for c in options.allow_capability}
        for cap in sorted(extra - ALLOWED_CAPABILITIES):
            print(f"note: --allow-capability {cap}: stage images that ask for it get it", file=sys.stderr)
        return cls(frozenset(extra), NETWORK_STAGES | set(options.allow_network),
                   options.allow_host_network)
