"""What a container is made of, as data: the runtime's equivalent of runc's config.json."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from containerlab.namespaces import CONTAINER_KINDS

TYPE_CHECKING = False  # typing costs 2 ms to import on every container start
if TYPE_CHECKING:
    from typing import Any

#: The PATH Docker gives a container whose image sets none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to start one container. Unset fields come from the image's config."""

    image: str  # image reference, e.g. "busybox" or "localhost:5000/app:1"
    argv: tuple[str, ...] = ()  # the command (replaces the image's Cmd); () = the image's
    entrypoint: tuple[str, ...] | None = None  # replaces the image's Entrypoint (and its Cmd)
    env: Mapping[str, str] = field(default_factory=dict)  # on top of the image's Env
    workdir: str | None = None  # default: the image's WorkingDir, else "/"; created if missing
    user: str | None = None  # "name|uid[:group|gid]"; default: the image's User, else root
    hostname: str | None = None  # default: the first 12 characters of the container id
    name: str | None = None  # a human name; default: none yet (the state store names them)
    namespaces: frozenset[str] = CONTAINER_KINDS  # which namespace kinds are new
    masked_paths: bool = True  # hide /proc/kcore & co as runc does (off only to show why)
    tty: bool = False  # -t: the command gets a pseudo-terminal as its controlling terminal
    interactive: bool = False  # -i: keep stdin open (a foreground run passes ours through)
    init: bool = False  # --init: a small init is PID 1, reaps zombies, forwards signals
    auto_remove: bool = False  # --rm: remove the container when its command exits
    limits: Any = None  # cgroups.Limits: --memory, --cpus, --pids-limit... (None: no limits)
    # Networking (see runtime/networking.py). The CLI's default is "bridge", as Docker's; the
    # Python API's is "none" (only lo): the notebooks before 07 keep the network out of view.
    network: str = "none"  # "bridge", a user network, "none", "host" or "container:NAME"
    ip: str | None = None  # --ip: this address on a user network
    network_aliases: tuple[str, ...] = ()  # --network-alias: more names on a user network
    mac_address: str | None = None  # --mac-address: eth0's MAC, "02:42:ac:11:00:02" (else random)
    publish: tuple[str, ...] = ()  # -p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO], as typed
    publish_all: bool = False  # -P: every EXPOSEd port on a random host port
    dns: tuple[str, ...] = ()  # --dns: nameservers for /etc/resolv.conf
    dns_search: tuple[str, ...] = ()  # --dns-search
    add_hosts: tuple[str, ...] = ()  # --add-host NAME:IP lines for /etc/hosts
