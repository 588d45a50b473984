"""osbuild-oci: container-native OS image builds, every stage an OCI image, every cached tree an OCI layer."""

from pathlib import Path

# The stage and assembler sources installed with the package: base/, stages/ and assemblers/.
SOURCES = Path(__file__).resolve().parent / "sources"
