"""What the command groups share: the app, the options every group spells the same, the store's default."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, List, Optional

import typer

from ..stages import SOURCES
from ..errors import UserError

if TYPE_CHECKING:
    from ..pipeline.model import Pipeline
    from ..build.planner import Policy, Remote

app = typer.Typer(help="Build operating-system images from pipelines of OCI stage images.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  rich_markup_mode=None)

STORE = typer.Option(None, "--store", envvar="OSBUILD_OCI_STORE", file_okay=False,
                     help="Directory of the object store (its own containers-storage) "
                          "[default: ~/.cache/osbuild-oci/store]")

SOURCE = typer.Option(SOURCES, "--source", file_okay=False,
                      help="Source tree with stages/ and assemblers/ (and base/, else the installed one) "
                           "[default: the ones installed with osbuild-oci]")

LOCK_TIMEOUT = typer.Option(3600.0, "--lock-timeout", metavar="SECONDS",
                            help="How long to wait for another osbuild-oci process using the same store")

TLS_VERIFY = typer.Option(True, "--tls-verify/--no-tls-verify",
                          help="Require HTTPS with a valid certificate; --no-tls-verify (or --tls-verify=false) "
                               "allows plain-HTTP registries")


SIGN_KEY = typer.Option(None, "--sign-key", metavar="KEY", dir_okay=False,
                        help="Sign every image pushed with this private key (NAME.key of `osbuild-oci key generate`); "
                             "the signature goes into the registry as a sigstore attachment")

SIGN_PASSPHRASE = typer.Option(None, "--sign-passphrase-file", metavar="FILE", dir_okay=False,
                               help="File whose first line is the --sign-key passphrase [default: none]")


def signing_key(key: Optional[Path], passphrase_file: Optional[Path]):
    """The opened --sign-key (None without one); a passphrase file without a key is a mistake."""
    if key is None:
        if passphrase_file is not None:
            raise UserError("--sign-passphrase-file is the passphrase of --sign-key; give --sign-key too")
        return None
    from ..registry.signing import SigningKey  # cryptography costs 60 ms: only for a command that signs
    return SigningKey.open(key, passphrase_file)
STAGES_FROM = typer.Option(None, "--stages-from", metavar="REGISTRY/NAMESPACE",
                           help="Resolve stage names to REGISTRY/NAMESPACE/NAME:latest")

CACHE_FROM = typer.Option([], "--cache-from", metavar="REGISTRY/NAMESPACE/REPO",
                          help="Look up trees missing from the store here (tag = tree id)")

ALLOW_CAPABILITY = typer.Option([], "--allow-capability", metavar="CAP",
                                help="Grant stage images this capability beyond the allowlist "
                                     "(repeatable; only for images you trust)")


TRUST_KEY = typer.Option([], "--trust-key", metavar="PUB", dir_okay=False,
                         help="Use a stage image or cached tree from a registry only if this public key signed it "
                              "(repeatable: any of them) [default: trust-keys of the config file, else trust the "
                              "registry]")


def where_from(stages_from: Optional[str], cache_from: List[str], cache_to: Optional[str], tls_verify: bool,
               allow_capability: List[str], trust_key: "list[Path] | tuple[Path, ...]" = (),
               sign_key=None) -> tuple["Remote", "Policy"]:
    """The registries, the keys they must be signed with and the capability policy a command plans with.

    Says which capabilities the user added.  Without --trust-key the config file's trust-keys apply, so
    every command that pulls checks what a build would check.
    """
    from ..build import settings as config
    from ..build.planner import Policy, Remote
    extra = {c.upper() if c.upper().startswith("CAP_") else f"CAP_{c.upper()}" for c in allow_capability}
    for cap in sorted(extra - Policy().capabilities):
        print(f"note: --allow-capability {cap}: stage images that ask for it get it", file=sys.stderr)
    trust = ()
    if paths := config.trust_keys(trust_key):
        from ..registry import signing  # as in signing_key: only for a command that checks signatures
        trust = tuple(signing.load_public(path) for path in paths)
    return (Remote(stages_from, tuple(cache_from), cache_to, tls_verify, trust, sign_key),
            Policy(Policy().capabilities | extra))


def secret_files(given: List[str]) -> dict[str, Path]:
    """--secret NAME=FILE, checked: a name the options can give, a regular file this user can read."""
    from ..pipeline.model import SECRET_NAME
    secrets: dict[str, Path] = {}
    for item in given:
        name, _, file = item.partition("=")
        if not SECRET_NAME.match(name) or not file:
            raise UserError(f"--secret {item!r}: give NAME=FILE, NAME 1-64 letters, digits, '.', '_' or '-'")
        path = Path(file).resolve()
        if not path.is_file() or not os.access(path, os.R_OK):
            raise UserError(f"--secret {name}: {file} is not a file you can read")
        if secrets.setdefault(name, path) != path:
            raise UserError(f"--secret {name} is given twice, with two files")
    return secrets


def load_pipeline(pipeline: Path) -> "Pipeline":
    """The pipeline file, its input errors named after it, its notes (deprecated names) on stderr."""
    from ..pipeline.model import load
    with naming(pipeline):
        model = load(pipeline)
    for note in model.notes:
        print(f"note: {pipeline}: {note}", file=sys.stderr)
    return model


def store_path(store: Optional[Path]) -> Path:
    """--store, $OSBUILD_OCI_STORE, or the user's cache directory."""
    if store is None:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        store = Path(cache) / "osbuild-oci" / "store"
    return store.resolve()


@contextmanager
def naming(pipeline: Path) -> Iterator[None]:
    """Prefix an input error with the pipeline file, so the user knows which file to fix."""
    try:
        yield
    except UserError as err:
        raise UserError(err.message, f"{pipeline}: {err.where}" if err.where else str(pipeline)) from None
