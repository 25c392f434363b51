"""OCI images: references, the content-addressable store, registries, archives.

Import the submodules directly; this file stays empty so the container init pays nothing."""
