"""One exception family for everything containerlab refuses to do.

Messages are lower-case, name the thing and say what to do. Failures of a system call stay
``OSError`` (see ``syscalls.SyscallError``): they carry the operation and the path instead.
"""


class ContainerlabError(Exception):
    """Base class: a problem containerlab can explain to the user."""

    #: the exit code the CLI returns for this error (125: containerlab itself failed, as Docker).
    exit_code = 125


class NotRootError(ContainerlabError):
    """The operation needs root (namespaces, mounts, cgroups)."""


class KernelFeatureError(ContainerlabError):
    """The running kernel lacks something the operation needs."""


class NamespaceError(ContainerlabError):
    """A namespace could not be created, entered or inspected."""


class RootfsError(ContainerlabError):
    """A root filesystem could not be built, mounted or entered."""


class ImageNotFoundError(ContainerlabError):
    """The image named by the user does not exist (locally, or in the registry)."""


class CommandNotFoundError(ContainerlabError):
    """The container's command does not exist in its root filesystem (exit 127)."""

    exit_code = 127


class CommandNotExecutableError(ContainerlabError):
    """The container's command exists but cannot be executed (exit 126)."""

    exit_code = 126


class ContainerError(ContainerlabError):
    """A container could not be created, started or cleaned up."""


class LayerError(ContainerlabError):
    """A layer (overlay mount, layer tar, whiteout) is malformed or hostile."""


class ImageError(ContainerlabError):
    """An image, manifest, config or blob is malformed or inconsistent."""


class DigestMismatchError(ImageError):
    """Content does not hash to the digest that names it."""


class RegistryError(ContainerlabError):
    """A registry refused a request or answered something we cannot use."""


class BuildError(ContainerlabError):
    """A Dockerfile, a .dockerignore or a build step is wrong; the message says where."""


class CgroupError(ContainerlabError):
    """A cgroup could not be created, limited, read, frozen or removed."""


class NetworkError(ContainerlabError):
    """A network, bridge, veth, address, NAT rule or published port could not be set up."""
