"""`diff` and `commit`: a container's writable layer as changes, and as a new image."""

from __future__ import annotations

import os
import subprocess
import sys

CLI = os.path.join(os.path.dirname(sys.executable), "containerlab")


def clab(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert res.returncode == 0, f"containerlab {' '.join(args)}: {res.stderr}"
    return res


# (Not /etc/hostname: it, /etc/hosts and /etc/resolv.conf are bind mounts in a container.)
SCRIPT = "echo hello > /greeting; rm /etc/os-release; mkdir -p /srv/app; echo v1 > /etc/motd"


def test_diff_lists_added_changed_deleted():
    clab("run", "--name", "d1", "busybox", "sh", "-c", SCRIPT)
    try:
        lines = clab("diff", "d1").stdout.splitlines()
    finally:
        clab("rm", "d1")
    assert lines == [
        "C /etc",
        "A /etc/motd",
        "D /etc/os-release",
        "A /greeting",
        "A /srv",
        "A /srv/app",
    ]


def test_commit_makes_an_image_with_one_more_layer():
    clab("run", "--name", "c1", "-e", "MODE=prod", "busybox", "sh", "-c", SCRIPT)
    try:
        image_id = clab("commit", "-m", "greeting added", "c1", "committed:1").stdout.strip()
    finally:
        clab("rm", "c1")
    assert image_id.startswith("sha256:")
    assert clab("run", "--rm", "committed:1", "cat", "/greeting").stdout == "hello\n"
    gone = clab("run", "--rm", "committed:1", "ls", "/etc/os-release", check=False)
    assert gone.returncode != 0  # the deletion was committed as a whiteout
    assert clab("run", "--rm", "committed:1", "sh", "-c", "echo $MODE").stdout == "prod\n"
    history = clab("history", "committed:1").stdout
    assert "containerlab commit c1" in history and "greeting added" in history
    layers = clab("inspect", "-f", "{{json .RootFS.diff_ids}}", "committed:1").stdout
    assert layers.count("sha256:") == 2


def test_diff_of_an_unknown_container_is_a_clear_error():
    res = clab("diff", "ghost", check=False)
    assert res.returncode == 1 and "no such container: ghost" in res.stderr
