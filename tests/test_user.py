"""`-u USER[:GROUP]` resolved in the container's own passwd and group files."""

from __future__ import annotations

import pytest

from containerlab.errors import ContainerError
from containerlab.runtime.user import resolve

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\nwheel:x:10:app\naudio:x:29:app,other\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "passwd").write_text(PASSWD)
    (tmp_path / "group").write_text(GROUP)
    return str(tmp_path / "passwd"), str(tmp_path / "group")


def test_names_and_supplementary_groups(files):
    assert resolve("app", *files) == (1000, 1000, [10, 29], "/home/app")
    assert resolve("app:wheel", *files) == (1000, 10, [29], "/home/app")


def test_numbers_need_no_entry(files):
    assert resolve("1000", *files)[:2] == (1000, 1000)  # known uid: its passwd gid
    assert resolve("4242", *files) == (4242, 0, [], "/")  # unknown: gid 0, as Docker
    assert resolve("4242:4343", *files)[:2] == (4242, 4343)


def test_root_home_defaults_to_root(tmp_path):
    assert resolve("0", str(tmp_path / "none"), str(tmp_path / "none"))[3] == "/root"


def test_unknown_names_are_clear_errors(files):
    with pytest.raises(ContainerError, match="unable to find user ghost"):
        resolve("ghost", *files)
    with pytest.raises(ContainerError, match="unable to find group ghosts"):
        resolve("app:ghosts", *files)
