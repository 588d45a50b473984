"""The package's folders stand in layers, and no module imports one above its own (docs/architecture.md).

Function-level imports count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "osbuild_oci"
# Lowest first: a module may import its own layer and those below it.
LAYERS = [
    {"errors", "lazy", "ids", "oci", "units", "safefiles"},
    {"engine"},
    {"pipeline"},
    {"stages", "registry"},
    {"store"},
    {"build"},
    {"tools"},
    {"cli", "__main__", "__init__"},
]
MAX_LINES = 300


def layer(parts: tuple[str, ...]) -> int:
    top = parts[0] if parts else "__init__"
    return next(index for index, names in enumerate(LAYERS) if top.removesuffix(".py") in names)


def modules() -> list[Path]:
    return [path for path in PACKAGE.rglob("*.py") if "sources" not in path.relative_to(PACKAGE).parts]


def imported(path: Path) -> list[tuple[int, tuple[str, ...]]]:
    """(line, package-relative parts) of every osbuild_oci module the file imports."""
    own = path.relative_to(PACKAGE).with_suffix("").parts
    package = own[:-1] if path.name != "__init__.py" else own[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
            # `from .. import x` imports each name as a module of base.
            targets = [(*base, *node.module.split("."))] if node.module else [(*base, a.name) for a in node.names]
            found += [(node.lineno, target or ("__init__",)) for target in targets]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found += [(node.lineno, tuple(name.split(".")[1:])) for name in names
                      if name and name.split(".")[0] == "osbuild_oci"]
    return found


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for path in modules():
        own = layer(path.relative_to(PACKAGE).parts)
        for line, target in imported(path):
            if layer(target) > own:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports {'.'.join(target)}")
    assert upward == []


def test_every_folder_is_in_a_layer_and_opens_with_a_one_line_summary():
    for folder in [p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"]:
        layer((folder.name,))
        if folder.name != "stages" or (folder / "__init__.py").exists():
            doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
            summary = doc.split("\n\n", 1)[0]
            assert summary and "\n" not in summary, f"{folder.name}/__init__.py: one line saying its job"


def test_the_engine_stays_inside_the_store():
    """Nothing outside store/ and engine/ reaches a store's engine."""
    reached = [f"{path.relative_to(PACKAGE)}:{number}" for path in modules()
               if path.relative_to(PACKAGE).parts[0] not in ("store", "engine")
               for number, text in enumerate(path.read_text().splitlines(), 1) if ".engine." in text.split("#")[0]
               and "import" not in text]
    assert reached == []


def test_no_module_is_longer_than_the_limit():
    """The stage and assembler programs and their libraries count too."""
    sources = [path for path in (PACKAGE / "stages" / "sources").rglob("*")
               if path.is_file() and (path.suffix == ".py" or path.name in ("stage", "assemble"))]
    assert [f"{p.relative_to(PACKAGE)}: {n}" for p in modules() + sources
            if (n := len(p.read_text().splitlines())) > MAX_LINES] == []
