"""Stage and assembler images: what their labels promise, how they are built, and their sources (sources/)."""

from pathlib import Path

# The stage and assembler sources installed with the package: base/, stages/ and assemblers/.
SOURCES = Path(__file__).resolve().parent / "sources"
