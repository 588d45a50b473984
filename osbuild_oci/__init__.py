"""osbuild-oci: container-native OS image builds, every stage an OCI image, every cached tree an OCI layer."""
