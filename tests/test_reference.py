"""Image references, normalised as Docker does."""

from __future__ import annotations

import pytest

from containerlab.errors import ImageError
from containerlab.image.reference import parse

HEX = "a" * 64


@pytest.mark.parametrize(
    ("text", "full", "familiar", "api"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest", "registry-1.docker.io"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36", "registry-1.docker.io"),
        ("team/app", "docker.io/team/app:latest", "team/app:latest", "registry-1.docker.io"),
        ("localhost:5000/app:1", "localhost:5000/app:1", "localhost:5000/app:1", "localhost:5000"),
        (
            "127.0.0.1:5000/a/b",
            "127.0.0.1:5000/a/b:latest",
            "127.0.0.1:5000/a/b:latest",
            "127.0.0.1:5000",
        ),
        (
            f"alpine@sha256:{HEX}",
            f"docker.io/library/alpine@sha256:{HEX}",
            f"alpine@sha256:{HEX}",
            "registry-1.docker.io",
        ),
        ("ghcr.io/o/r:v1.2-rc_3", "ghcr.io/o/r:v1.2-rc_3", "ghcr.io/o/r:v1.2-rc_3", "ghcr.io"),
    ],
)
def test_normalisation(text, full, familiar, api):
    r = parse(text)
    assert str(r) == full
    assert r.familiar == familiar
    assert r.api_host == api


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("Busybox", "must be lower-case"),
        ("a:b:c", "bad name component"),
        ("x@sha256:zz", "64 lower-case hex"),
        ("foo/../bar", "bad name component '..'"),
        ("app:" + "t" * 200, "bad tag"),
        (" busybox", "spaces"),
    ],
)
def test_bad_references_are_refused(text, message):
    with pytest.raises(ImageError, match=message):
        parse(text)
