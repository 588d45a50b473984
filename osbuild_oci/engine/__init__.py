"""Everything that talks to podman, one module a job.

- `service`: the per-store `podman system service`: started, found, stopped.
- `client`: the API calls the orchestrator makes through it (images,
  containers, registries).
- `localstorage`: the podman CLI on the user's ordinary storage, where stage
  images are built, imported and pushed from.
- `attach`: the libpod attach protocol podman-py lacks, to feed a stage its stdin.
- `host`: what the host imposes (runtime directory, rlimits, leftover mounts).
- `model`: the plain records the others pass around.
"""
