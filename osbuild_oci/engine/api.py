"""The plumbing of the store's podman service API: podman-py's errors as EngineErrors, raw libpod calls.

Every podman-py failure becomes an EngineError that names the operation,
never a traceback; a service that died is said to have died.
"""

from __future__ import annotations

import functools
from typing import Callable

from ..errors import EngineError
from ..lazy import lazy_import

podman = lazy_import("podman")
requests = lazy_import("requests")


def podman_errors(method: Callable) -> Callable:
    """Turn podman-py's exceptions into an EngineError that names the operation, not a traceback."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (podman.errors.APIError, requests.exceptions.ConnectionError) as err:
            if not self.service.alive():
                raise self.service_died() from None
            if isinstance(err, requests.exceptions.ConnectionError):
                raise EngineError(f"lost the podman service of this store ({self.socket_path}): {err}") from None
            subject = str(args[0])[:200] if args else ""
            raise EngineError(f"podman refused to {method.__name__.replace('_', ' ')} {subject}: "
                              f"{err.explanation or err}") from None
    return wrapper


def call(client, method: str, path: str) -> str:
    """A raw libpod request podman-py has no method for; its body as text."""
    response = getattr(client.api, method.lower())(path)
    if response.status_code >= 300:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        raise EngineError(f"podman {method} {path}: {message}")
    # libpod sends no charset, and requests would then guess Latin-1 for a UTF-8 path.
    return response.content.decode("utf-8", errors="surrogateescape")


def last_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no reason given"
