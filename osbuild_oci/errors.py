"""Every kind of failure a user sees, each with the exit status it gives.

None of them prints a traceback: the message is the whole story.  A UserError
is the user's to fix (exit 2, nothing ran, the store is unchanged); the others
happened while building (exit 1).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class OsbuildOciError(Exception):
    """A failure explained in one message; `exit_code` is what the command exits with."""

    exit_code = 1


class UserError(OsbuildOciError):
    """Bad input: says what is wrong, where in the JSON, and how to fix it."""

    exit_code = 2

    def __init__(self, message: str, where: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


@contextmanager
def in_file(path: Path) -> Iterator[None]:
    """Prefix an input error with the file it is about, so the user knows which file to fix."""
    try:
        yield
    except UserError as err:
        raise UserError(err.message, f"{path}: {err.where}" if err.where else str(path)) from None


class BuildError(OsbuildOciError):
    """The build itself failed: a stage exited non-zero, a tree is not what it claims."""


class StageFailed(BuildError):
    """A stage or assembler container exited non-zero; `kept` says where its partial tree was kept, if it was,
    and `kept_ref` is that image's name."""

    def __init__(self, message: str):
        super().__init__(message)
        self.kept = ""
        self.kept_ref: str | None = None

    def __str__(self) -> str:
        return f"{self.args[0]}\n{self.kept}" if self.kept else self.args[0]


class EngineError(BuildError):
    """Podman could not do what was asked; the message says what and where."""


# Registry error codes (OCI distribution spec) that mean "there is no such image", as
# containers/image renders them: the code lower-cased, with spaces, before a colon.
_MISSING_CODES = ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")


class RegistryError(EngineError):
    """A registry did not give or take an image; `missing` when it answered that it has no such image."""

    def __init__(self, ref: str, action: str, reason: str):
        self.ref, self.reason = ref, reason
        rendered = reason.lower()
        self.missing = any(f"{code.lower().replace('_', ' ')}:" in rendered for code in _MISSING_CODES)
        super().__init__(f"cannot {action} {ref} (registry {ref.split('/', 1)[0]}): {reason}")


class Untrusted(RegistryError):
    """The registry holds no signature by a trusted key for the image; `reason` says what was found instead."""
