"""The CLI surface: help on every verb, version, info."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CLI = os.path.join(os.path.dirname(sys.executable), "containerlab")


def clab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("verb", ["run", "info", "version"])
def test_help_on_every_verb(verb):
    res = clab(verb, "--help")
    assert res.returncode == 0
    assert "usage: containerlab" in res.stdout


def test_run_help_shows_docker_flags():
    out = clab("run", "--help").stdout
    for flag in ("--rm", "-e", "--env-file", "-w", "--hostname", "--explain"):
        assert flag in out


def test_version():
    res = clab("version")
    assert res.returncode == 0 and res.stdout.startswith("containerlab 0.")


def test_info_gives_a_verdict():
    res = clab("info")
    assert res.returncode == 0
    assert "verdict: ready" in res.stdout


def test_unknown_verb_is_125():
    res = clab("frobnicate")
    assert res.returncode == 125
    assert "frobnicate" in res.stderr
