"""`python -m osbuild_oci`: the same command line as `osbuild-oci`."""
from .cli import main

main()
