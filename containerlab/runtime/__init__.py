"""The runtime: composes the concepts (namespaces, rootfs, and later layers, cgroups,
network) into a container. Import the submodules directly; this file stays empty so the
container init pays for nothing it does not use."""
