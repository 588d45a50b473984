"""The command line's reference, written from the command line itself: the README's synopsis and the man pages.

Nothing here is written by hand twice: a new option appears in `--help`, the
synopsis (tests/unit/test_manual.py checks the README's copy) and
`man osbuild-oci-COMMAND` (scripts/man-pages) alike.
"""

from __future__ import annotations

import datetime
import textwrap
from typing import Any, Iterator

import typer.main

from .common import app

WIDTH = 100


def commands() -> Iterator[tuple[list[str], Any, Any]]:
    """Every command, as (its words after `osbuild-oci`, the command, its context), in help order."""
    root = typer.main.get_command(app)
    top = root.context_class(root, info_name="osbuild-oci")

    def walk(group, words: list[str], parent):
        for name in group.list_commands(parent):
            command = group.get_command(parent, name)
            context = command.context_class(command, info_name=name, parent=parent)
            if hasattr(command, "list_commands"):
                yield from walk(command, [*words, name], context)
            else:
                yield [*words, name], command, context
    yield from walk(root, [], top)


def _argument(param) -> bool:
    return param.param_type_name == "argument"


def _option(param) -> bool:
    return param.param_type_name == "option" and param.name != "help"


def _metavar(param) -> str:
    return (param.metavar or param.name.upper()).strip("{}")


def _usage(param) -> str:
    if _argument(param):
        if (param.metavar or "").startswith("["):
            return param.metavar
        words = _metavar(param) + ("..." if param.nargs == -1 else "")
        return words if param.required else f"[{words}]"
    flags = "/".join([param.opts[0], *param.secondary_opts[:1]]) if param.secondary_opts else param.opts[0]
    if getattr(param, "is_flag", False):
        return f"[{flags}]"
    return f"[{flags} {_metavar(param)}]" + ("..." if getattr(param, "multiple", False) else "")


def synopsis() -> str:
    """One entry a command: its words, arguments and options, wrapped as the README shows them."""
    entries = []
    for words, command, _ in commands():
        arguments = [_usage(p) for p in command.params if _argument(p)]
        options = [_usage(p) for p in command.params if _option(p)]
        line = " ".join(["osbuild-oci", *words, *arguments, *options])
        entries.append(textwrap.fill(line, WIDTH, subsequent_indent="    ", break_on_hyphens=False,
                                     break_long_words=False))
    return "\n".join(entries) + "\n"


def _roff(text: str) -> str:
    """Plain text as roff: a leading dot or quote escaped, backslashes and dashes kept literal."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in (".", "'") else line for line in text.splitlines())


def man_pages() -> dict[str, str]:
    """File name -> page: osbuild-oci.1 (the commands) and osbuild-oci-COMMAND.1 for each command."""
    date = datetime.date.today().isoformat()
    pages, listed = {}, []
    for words, command, context in commands():
        name = "-".join(["osbuild-oci", *words])
        listed.append(f".TP\n.B {_roff(' '.join(['osbuild-oci', *words]))}\n{_roff(command.get_short_help_str(80))}")
        options = [f".TP\n.B {_roff(_usage(p).strip('[]'))}\n{_roff(p.help or '')}" for p in command.params
                   if _option(p)]
        arguments = [f".TP\n.B {_roff(_metavar(p))}\n{_roff(getattr(p, 'help', '') or '')}" for p in command.params
                     if _argument(p)]
        pages[f"{name}.1"] = "\n".join([
            f'.TH {name.upper()} 1 "{date}" osbuild-oci "osbuild-oci manual"', ".SH NAME",
            f"{_roff(name)} \\- {_roff(command.get_short_help_str(80))}", ".SH SYNOPSIS",
            _roff(" ".join(["osbuild-oci", *words, *(_usage(p) for p in command.params if p.name != "help")])),
            ".SH DESCRIPTION", _roff(command.help or ""), *([".SH ARGUMENTS", *arguments] if arguments else []),
            *([".SH OPTIONS", *options] if options else []), ".SH SEE ALSO", ".BR osbuild-oci (1)", ""])
    pages["osbuild-oci.1"] = "\n".join([
        f'.TH OSBUILD-OCI 1 "{date}" osbuild-oci "osbuild-oci manual"', ".SH NAME",
        "osbuild\\-oci \\- build operating-system images from pipelines of OCI stage images",
        ".SH COMMANDS", *listed, ".SH SEE ALSO", "The README and docs/ of the source tree.", ""])
    return pages
