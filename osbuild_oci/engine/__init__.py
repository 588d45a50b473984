"""Everything that talks to podman: a store's service and API calls, the CLI on the user's storage, the host."""
