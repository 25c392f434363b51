"""What a container is made of, as data: the runtime's equivalent of runc's config.json."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from containerlab.namespaces import CONTAINER_KINDS

#: The PATH Docker gives a container whose image sets none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to start one container."""

    image: str  # image name; until the image store exists, only "busybox"
    argv: tuple[str, ...] = ("sh",)  # the command; it becomes PID 1 of the container
    env: Mapping[str, str] = field(default_factory=dict)  # added to the defaults (PATH, HOME...)
    workdir: str = "/"  # the command's working directory, created if missing (as Docker does)
    hostname: str | None = None  # default: the first 12 characters of the container id
    name: str | None = None  # a human name; default: none yet (the state store names them)
    namespaces: frozenset[str] = CONTAINER_KINDS  # which namespace kinds are new
    masked_paths: bool = True  # hide /proc/kcore & co as runc does (off only to show why)
