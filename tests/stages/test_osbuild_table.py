"""docs/osbuild-stages.md tells the truth: a row for each of osbuild's stages, every stage here in a table,
and each row's options as osbuild's list (docs/osbuild-stages.txt) and the stage's schema have them."""

from __future__ import annotations

import json

from helpers import REPO

DOC = REPO / "docs" / "osbuild-stages.md"
SOURCES = REPO / "osbuild_oci" / "stages" / "sources"


def osbuild_stages() -> dict[str, set[str]]:
    """osbuild's stage names, in the list's order, with their top-level options."""
    lines = (REPO / "docs" / "osbuild-stages.txt").read_text().splitlines()
    return {words[0]: set(words[1:]) for words in (line.split() for line in lines if not line.startswith("#"))}


def ours() -> dict[str, set[str]]:
    """Every stage and assembler of the repository, with its schema's top-level options."""
    return {schema.parent.name: set(json.loads(schema.read_text()).get("properties", {}))
            for schema in sorted(SOURCES.glob("*/*/schema.json"))}


def rows() -> list[list[str]]:
    """The cells of every table row below the header lines, code quotes and the assembler mark removed."""
    out = []
    for line in DOC.read_text().splitlines():
        cells = [cell.strip().strip("`").removesuffix("` (assembler)") for cell in line.strip("|").split("|")]
        if line.startswith("| `"):
            out.append(cells)
    return out


def names(cell: str) -> set[str]:
    return set() if cell in ("", "—") else set(cell.split(", "))


def test_one_row_for_each_of_osbuilds_stages_in_its_order():
    table = [cells[0] for cells in rows() if len(cells) == 6]
    assert table == list(osbuild_stages())


def test_every_stage_here_is_in_a_table():
    mentioned = {cells[1] for cells in rows() if len(cells) == 6} | {cells[0] for cells in rows() if len(cells) == 3}
    assert sorted(set(ours()) - mentioned) == [], "add a row to docs/osbuild-stages.md"


def test_each_rows_options_are_osbuilds_and_the_schemas():
    theirs, mine = osbuild_stages(), ours()
    for name, here, taken, left_out, only_here, _ in (cells for cells in rows() if len(cells) == 6):
        if here == "no":
            assert name not in mine, f"{name} is here: say so in its row"
            continue
        assert here in mine, f"{name}'s row names {here}, which is no stage or assembler here"
        assert (names(taken), names(left_out), names(only_here)) == \
            (mine[here] & theirs[name], theirs[name] - mine[here], mine[here] - theirs[name]), name


def test_own_stages_list_their_schemas_options():
    mine = ours()
    for name, options, _ in (cells for cells in rows() if len(cells) == 3):
        assert names(options) == mine[name], name
