"""What the command groups share: the app, and `command`, which gives a command the options it names from
the one options table (build/options.py) and hands its body those options resolved.

Command modules import what a command needs inside the command, so `--help`
and quick commands do not pay for podman-py, jsonschema and rich.
"""

from __future__ import annotations

import functools
import inspect
from typing import Annotated, Callable

import typer

from ..build.options import TABLE, Options

app = typer.Typer(help="Build operating-system images from pipelines of OCI stage images.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  rich_markup_mode=None)


def group(help: str) -> typer.Typer:
    """A command group (`stages`, `store`, ...) as the app's own commands are."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None, add_completion=False)


def command(on: typer.Typer, *rows: str, name: str | None = None) -> Callable:
    """Register the decorated body as a command of `on` that takes its own parameters plus these rows of the
    options table; a body with an `options` parameter gets them as one resolved Options."""
    def register(body: Callable) -> Callable:
        own = [p for p in inspect.signature(body, eval_str=True).parameters.values() if p.name != "options"]
        taken = [TABLE[row] for row in rows]
        added = [inspect.Parameter(row.name, inspect.Parameter.KEYWORD_ONLY, default=row.default,
                                   annotation=Annotated[row.type, typer.Option(*row.flags, help=row.help,
                                                                               metavar=row.metavar, envvar=row.env,
                                                                               show_default=False, **row.checks)])
                 for row in taken]

        @functools.wraps(body)
        def run(**given):
            resolved = Options.resolve({row.name: given.pop(row.name) for row in taken})
            return body(resolved, **given) if "options" in inspect.signature(body).parameters else body(**given)

        run.__signature__ = inspect.Signature(own + added)
        run.__annotations__ = {p.name: p.annotation for p in own + added}
        del run.__wrapped__
        on.command(name or body.__name__.replace("_", "-"))(run)
        return body
    return register
