"""Namespaces against the real kernel: each kind is really new, entered, and set up."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from containerlab import namespaces as ns
from containerlab.errors import CommandNotFoundError, NamespaceError, NotRootError


def test_ns_ids_lists_all_eight_kinds():
    ids = ns.ns_ids()
    assert set(ids) == set(ns.KINDS)
    assert ids["net"] == os.stat("/proc/self/ns/net").st_ino


def test_unknown_pid_is_a_clear_error():
    with pytest.raises(NamespaceError, match="no process 999999999"):
        ns.ns_ids(999999999)


@pytest.mark.parametrize("kind", sorted(ns.KINDS))
def test_each_kind_is_really_new(kind):
    with ns.spawn(["sleep", "30"], new={kind}) as proc:
        mine, theirs = ns.ns_ids(), ns.ns_ids(proc.child_pid)
        assert theirs[kind] != mine[kind]
        # and only that kind (a new user namespace owns the others but does not replace them)
        others = {k for k in ns.KINDS if k != kind and theirs[k] != mine[k]}
        assert others == set()


def test_uts_namespace_has_its_own_hostname():
    res = ns.run(["hostname"], new={"uts"}, hostname="box")
    assert res.stdout.strip() == "box"
    assert os.uname().nodename != "box"


def test_pid_namespace_makes_the_command_pid_1():
    res = ns.run(["sh", "-c", "echo $$; ps -o pid= | wc -l"], new={"pid", "mnt"}, mount_proc=True)
    first, count = res.stdout.split()
    assert first == "1"
    assert int(count) <= 3  # sh, ps, wc: nothing of the host


def test_mount_namespace_hides_mounts_from_the_host(tmp_path):
    res = ns.run(
        [
            "sh",
            "-c",
            f"mount -t tmpfs none {tmp_path} && grep -c ' {tmp_path} ' /proc/self/mountinfo",
        ],
        new={"mnt"},
    )
    assert res.returncode == 0 and res.stdout.strip() == "1"
    with open("/proc/self/mountinfo") as f:
        assert f" {tmp_path} " not in f.read()


def test_net_namespace_has_only_loopback():
    res = ns.run(["ip", "-o", "link"], new={"net"})
    links = [line.split(":")[1].strip() for line in res.stdout.splitlines()]
    assert links == ["lo"]
    assert "state DOWN" in res.stdout


def test_user_namespace_maps_root_to_an_unprivileged_uid():
    # pytest's tmp dirs are 0700 root: uid 100000 could not reach them. Use one under /tmp.
    tmp_path = Path(tempfile.mkdtemp(prefix="clab-userns-"))
    os.chmod(tmp_path, 0o777)
    try:
        res = ns.run(
            ["sh", "-c", f"id -u; cat /proc/self/uid_map; touch {tmp_path}/made-inside"],
            new={"user"},
            uid_map=(ns.IdMap(0, 100000, 65536),),
            gid_map=(ns.IdMap(0, 100000, 65536),),
        )
        lines = res.stdout.splitlines()
        assert lines[0] == "0"  # root inside
        assert lines[1].split() == ["0", "100000", "65536"]
        st = os.stat(tmp_path / "made-inside")
        assert (st.st_uid, st.st_gid) == (100000, 100000)  # ... uid 100000 outside
    finally:
        shutil.rmtree(tmp_path)


def test_user_namespace_without_maps_is_nobody():
    res = ns.run(["id", "-u"], new={"user"})
    assert res.stdout.strip() == "65534"


def test_time_namespace_offsets_the_boot_clock():
    day = 86400
    res = ns.run(["cat", "/proc/uptime"], new={"time"}, time_offsets={"boottime": 365 * day})
    inside = float(res.stdout.split()[0])
    with open("/proc/uptime") as f:
        outside = float(f.read().split()[0])
    assert 365 * day <= inside - outside + 1 < 365 * day + 60


def test_cgroup_namespace_shows_its_cgroup_as_root():
    res = ns.run(["cat", "/proc/self/cgroup"], new={"cgroup"})
    assert res.returncode == 0
    assert all(line.endswith(":/") for line in res.stdout.splitlines())


def test_ipc_namespace_hides_message_queues():
    res = ns.run(["sh", "-c", "ls /proc/sysvipc/msg | wc -l"], new={"ipc"})
    assert res.returncode == 0


def test_enter_runs_a_command_in_a_running_process_namespaces():
    with ns.spawn(
        ["sleep", "30"], new={"uts", "pid", "mnt"}, hostname="target", mount_proc=True
    ) as proc:
        res = ns.enter(proc.child_pid, ["sh", "-c", "hostname; echo $$"])
        name, pid = res.stdout.split()
        assert name == "target"
        assert pid != "1"  # the container's PID 1 is sleep; we are another process in it
        assert ns.shared("self", proc.child_pid)["uts"] is False


def test_signals_reach_the_command_and_exit_is_128_plus_n():
    with ns.spawn(["sleep", "30"], new={"pid"}) as proc:
        os.kill(proc.child_pid, signal.SIGKILL)
        assert proc.wait(10) == 137


def test_sigterm_to_the_launcher_is_forwarded():
    with ns.spawn(
        ["sh", "-c", "trap 'exit 42' TERM; while :; do sleep 0.05; done"], new={"pid"}
    ) as proc:
        time.sleep(0.3)  # let sh install its trap
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 42


def test_command_not_found_is_127_and_leaves_nothing():
    with pytest.raises(CommandNotFoundError, match='"no-such-cmd": executable file not found'):
        ns.spawn(["no-such-cmd"], new={"pid", "uts"})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"new": {"nope"}}, "unknown namespace kind"),
        ({"new": {"uts"}, "join": {"uts": 1}}, "both new and joined"),
        ({"uid_map": (ns.IdMap(0, 1000),)}, "need a new user namespace"),
        ({"new": {"time"}, "time_offsets": {"realtime": 5}}, "unknown clock"),
        ({"hostname": "x"}, "needs a new uts namespace"),
        ({"new": {"pid"}, "mount_proc": True}, "needs new 'mnt' and 'pid'"),
    ],
)
def test_bad_specs_are_refused_before_anything_starts(fields, message):
    with pytest.raises(NamespaceError, match=message):
        ns.spawn(["true"], **fields)


def test_joining_a_dead_process_is_a_clear_error():
    p = subprocess.Popen(["true"])
    p.wait()
    with pytest.raises(NamespaceError, match=f"/proc/{p.pid}/ns"):
        ns.run(["true"], ns.NamespaceSpec(join={"uts": p.pid}))


def test_processes_by_namespace_groups_the_new_process_alone():
    with ns.spawn(["sleep", "30"], new={"uts"}) as proc:
        groups = ns.processes_by_namespace("uts")
        assert groups[ns.ns_id(proc.child_pid, "uts")] == [proc.child_pid]
        assert os.getpid() in groups[ns.ns_id("self", "uts")]


def test_not_root_gets_a_clear_error():
    code = (
        "from containerlab import namespaces as ns\n"
        "try:\n ns.run(['true'], new={'uts'})\n"
        "except Exception as e: print(type(e).__name__, e)\n"
    )
    res = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert NotRootError.__name__ in res.stdout, res.stdout + res.stderr
    assert "run as root" in res.stdout


def test_unreadable_namespaces_are_a_clear_error():
    code = (
        "from containerlab import namespaces as ns\n"
        "try:\n ns.ns_ids(1)\n"
        "except Exception as e: print(type(e).__name__, e)\n"
    )
    res = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert res.stdout.startswith("NamespaceError may not look at the namespaces of process 1")
