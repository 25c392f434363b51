"""Image references: ``busybox``, ``localhost:5000/team/app:1.0``, ``alpine@sha256:...``.

Docker's rules: the first path component is a registry host when it contains a ``.`` or a
``:`` or is ``localhost``; otherwise the registry is Docker Hub (``docker.io``), where a
one-component name lives under ``library/``. No tag and no digest means ``:latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from containerlab.errors import ImageError

DOCKER_HUB = "docker.io"
# The host Docker Hub's API actually answers on.
DOCKER_HUB_API = "registry-1.docker.io"

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_HOST = re.compile(r"^(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")


@dataclass(frozen=True)
class Reference:
    """A parsed image reference."""

    registry: str  # host[:port]; "docker.io" for Docker Hub
    repository: str  # path in the registry, "library/busybox" for official images
    tag: str | None  # "latest" when neither tag nor digest was given
    digest: str | None  # "sha256:<hex>" when pinned by content

    @property
    def name(self) -> str:
        """registry/repository, the full name without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        """The full, normalised form: ``docker.io/library/busybox:latest``."""
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def familiar(self) -> str:
        """The short form people type: ``busybox:latest``, ``localhost:5000/app:1``."""
        name = self.name
        if self.registry == DOCKER_HUB:
            name = self.repository.removeprefix("library/")
        out = name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def api_host(self) -> str:
        """The host to send registry API requests to."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)


def parse(text: str) -> Reference:
    """Parse and normalise an image reference; ``ImageError`` says what is wrong with it."""
    original = text
    if not text or text != text.strip():
        raise ImageError(f"invalid reference format: {original!r} (empty or with spaces)")
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST.match(digest):
            raise ImageError(
                f"invalid reference format: {original!r}: the digest must be "
                "sha256: followed by 64 lower-case hex digits"
            )
    tag = None
    last = text.rsplit("/", 1)[-1]
    if ":" in last:
        text, tag = text.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ImageError(f"invalid reference format: {original!r}: bad tag {tag!r}")
    parts = text.split("/")
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, parts[1:]
        if not _HOST.match(registry):
            raise ImageError(f"invalid reference format: {original!r}: bad registry {registry!r}")
    else:
        registry, path = DOCKER_HUB, parts
    if registry == DOCKER_HUB and len(path) == 1:
        path = ["library", *path]
    for component in path:
        if not _COMPONENT.match(component):
            hint = (
                " (repository names must be lower-case)" if component.lower() != component else ""
            )
            raise ImageError(
                f"invalid reference format: {original!r}: bad name component {component!r}{hint}"
            )
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, "/".join(path), tag, digest)
