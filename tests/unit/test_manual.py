"""The README's synopsis is the command line's own, and every command has a man page."""

from __future__ import annotations

from pathlib import Path

from osbuild_oci.cli.manual import commands, man_pages, synopsis

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_synopsis_is_the_command_lines():
    text = README.read_text()
    start = text.index("## Commands\n")
    block = text[text.index("```\n", start) + 4:]
    assert block[:block.index("```\n")] == synopsis(), "regenerate the block: python -c 'from osbuild_oci.cli." \
                                                      "manual import synopsis; print(synopsis(), end=\"\")'"


def test_every_command_has_a_man_page_naming_each_of_its_options():
    pages = man_pages()
    for words, command, _ in commands():
        page = pages[f"{'-'.join(['osbuild-oci', *words])}.1"]
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.opts[0].replace("-", "\\-") in page, (words, param.opts)
    assert "osbuild-oci.1" in pages
