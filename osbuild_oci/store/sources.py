"""The user's source cache: content a pipeline names by its digest, fetched once and used only when it is that.

It lives beside the package cache and outside every store
(`$XDG_CACHE_HOME/osbuild-oci/sources/sha256/<hex>`, default `~/.cache`), so every
build and store of the user shares it and a second build downloads nothing.  A
download is written under a temporary name while it is hashed and renamed to
its digest only when the bytes match; bytes that do not are dropped and the
build fails naming the URL.  A cached file is hashed again before a build uses
it: one that no longer matches is removed and fetched again.  Downloads go
through `requests`, which takes the host's proxy settings (http_proxy,
https_proxy, no_proxy) from the environment.  Stages never see this
directory: each one gets only the files it names, read-only.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..engine.host import private_dir
from ..errors import BuildError
from ..lazy import lazy_import
from .packagecache import PackageCache

requests = lazy_import("requests")
_CHUNK = 1 << 20
# Seconds to connect, and to wait for the next bytes of an answer.
_TIMEOUT = (15, 120)


def default_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "osbuild-oci" / "sources"


def budgeted() -> PackageCache:
    """The cache as gc budgets it (budget.Trimmable): its files, least recently used first, as the package
    cache's (a build touches each file it uses)."""
    return PackageCache(SourceCache(default_dir()).files)


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


@dataclass(frozen=True)
class SourceCache:
    """The cache directory; `files` holds one file per digest."""

    directory: Path

    @property
    def files(self) -> Path:
        return self.directory / "sha256"

    def path(self, digest: str) -> Path:
        return self.files / _hex(digest)

    def _ready(self) -> Path:
        """The directory, created 0700 for this user; one of another user is refused (its files could be anything)."""
        private_dir(self.directory, "XDG_CACHE_HOME")
        return private_dir(self.files, "XDG_CACHE_HOME")

    def checked(self, digest: str) -> Path | None:
        """The cached file, if it still holds what its name says; a file that does not is removed."""
        path = self.path(digest)
        try:
            with open(path, "rb") as data:
                if hashlib.file_digest(data, "sha256").hexdigest() == _hex(digest):
                    os.utime(path)  # recently used: trimming removes the oldest first
                    return path
        except FileNotFoundError:
            return None
        path.unlink(missing_ok=True)
        return None

    def fetch(self, digest: str, urls: tuple[str, ...], context_file: Path | None = None,
              busy: Callable[[str], None] = lambda label: None) -> Path:
        """The cached file of digest, fetched first from the first URL (or the context file) whose bytes match
        when the cache lacks it.  BuildError naming every URL tried when none gives those bytes."""
        cached = self.checked(digest)
        if cached is not None:
            return cached
        self._ready()
        failures = []
        for where in ([str(context_file)] if context_file is not None else list(urls)):
            busy(f"fetching {where}")
            partial = self.files / f".{_hex(digest)}.{os.getpid()}.partial"
            try:
                got = self._write(partial, _local(context_file) if context_file else _download(where))
                if got == _hex(digest):
                    partial.rename(self.path(digest))
                    return self.path(digest)
                failures.append(f"{where} gave sha256:{got}")
            except (OSError, requests.exceptions.RequestException) as err:
                failures.append(f"{where}: {_reason(err)}")
            finally:
                partial.unlink(missing_ok=True)
        raise BuildError(f"source {digest}: {'; '.join(failures)}; nothing was kept (a source is used only when its "
                         "bytes have the digest the pipeline names: fix the digest or the URL)")

    @staticmethod
    def _write(partial: Path, chunks: Iterator[bytes]) -> str:
        """Write the chunks to a new file while hashing them; their digest (hex)."""
        digest = hashlib.sha256()
        with open(partial, "xb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        return digest.hexdigest()


def _download(url: str) -> Iterator[bytes]:
    with requests.get(url, stream=True, timeout=_TIMEOUT) as response:
        response.raise_for_status()
        yield from response.iter_content(_CHUNK)


def _local(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as data:
        while chunk := data.read(_CHUNK):
            yield chunk


def _reason(err: Exception) -> str:
    """requests' and the system's reasons, told in one line."""
    if isinstance(err, requests.exceptions.HTTPError) and err.response is not None:
        return f"{err.response.status_code} {err.response.reason}"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err).splitlines()[0] if str(err) else type(err).__name__
