"""What the command groups share: the app, the options every group spells the same, the store's default."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

from .. import SOURCES
from ..errors import UserError

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
