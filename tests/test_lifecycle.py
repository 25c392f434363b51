"""The container lifecycle through the real CLI, against real processes: every verb and flag,
truthful `ps` after processes die behind the runtime's back, races between CLIs, and
SIGKILLs of the CLI at random instants (what is left is found and removed by `doctor`)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

CLI = os.path.join(os.path.dirname(sys.executable), "containerlab")


def clab(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, **kw)


def ok(*args: str) -> str:
    res = clab(*args)
    assert res.returncode == 0, f"{args}: rc={res.returncode} {res.stderr}"
    return res.stdout


def run_d(*args: str) -> str:
    """``run -d``: the id it printed."""
    cid = ok("run", "-d", *args).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid), cid
    return cid


def state_of(root: Path, cid: str) -> dict:
    return json.loads((root / "containers" / cid / "state.json").read_text())


def inspect(cid: str) -> dict:
    return json.loads(ok("inspect", cid))[0]


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    """A live process (a zombie has exited: only its parent's wait is missing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def our_processes(root: Path) -> list[str]:
    """Live processes of this state root: CLIs, supervisors and launchers (by their
    environment), and container processes (their root is an overlay under our root)."""
    out = []
    marker = f"CONTAINERLAB_ROOT={root}".encode()
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        if int(pid) == os.getpid() or not alive(int(pid)):
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                mine = marker in f.read().split(b"\0")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            if not mine:
                with open(f"/proc/{pid}/mountinfo") as f:
                    mine = f"upperdir={root}/containers/" in f.read()
        except OSError:
            continue
        if mine and "pytest" not in cmd:
            out.append(f"{pid} {cmd.strip()}")
    return out


@pytest.fixture(autouse=True)
def remove_everything(clab_root: Path):
    """Whatever a test started, `rm -f` removes it; then nothing of ours may be left."""
    yield
    ids = clab("ps", "-aq", "--no-trunc").stdout.split()
    if ids:
        clab("rm", "-f", *ids)
    for cid in ids:
        if (clab_root / "containers" / cid).exists():
            wait_for(lambda c=cid: not (clab_root / "containers" / c).exists(), what="rm")
    wait_for(lambda: our_processes(clab_root) == [], what="no process of ours")


# --- run -d, ps --------------------------------------------------------------------------------
def test_run_detached_prints_the_id_at_once_and_ps_shows_it(clab_root):
    ok("run", "--rm", "busybox", "true")  # the base image, built once, is not what we time
    t = time.monotonic()
    cid = run_d("--name", "web", "busybox", "sleep", "30")
    assert time.monotonic() - t < 10, "run -d waited for the command (it sleeps 30 s)"
    done = run_d("busybox", "sh", "-c", "exit 3")
    assert clab("wait", done).stdout.strip() == "3"

    table = ok("ps").splitlines()
    assert table[0].split()[:3] == ["CONTAINER", "ID", "IMAGE"]
    assert len(table) == 2 and table[1].startswith(cid[:12]) and table[1].endswith("web")
    assert '"sleep 30"' in table[1] and "Up " in table[1]
    assert ok("ps", "-q").split() == [cid[:12]]
    assert ok("ps", "-q", "--no-trunc").split() == [cid]
    assert set(ok("ps", "-aq").split()) == {cid[:12], done[:12]}
    fmt = ok("ps", "-a", "--format", "{{.Names}} {{.Status}}").splitlines()
    assert fmt[1] == "web Up Less than a second" or fmt[1].startswith("web Up ")
    assert re.fullmatch(r"\w+ Exited \(3\) .* ago", fmt[0]), fmt


def test_create_then_start_then_start_attached(clab_root):
    cid = ok("create", "--name", "later", "busybox", "sleep", "30").strip()
    assert ok("ps", "-a", "--format", "{{.Names}} {{.Status}} {{.State}}").split() == [
        "later",
        "Created",
        "created",
    ]
    assert inspect(cid)["State"]["Pid"] == 0
    assert ok("start", "later").strip() == "later"
    assert ok("ps", "--format", "{{.State}}").strip() == "running"
    assert alive(inspect(cid)["State"]["Pid"])
    assert ok("start", "later").strip() == "later"  # already running: nothing to do

    once = ok("create", "busybox", "sh", "-c", "echo out; echo err >&2; exit 4").strip()
    res = clab("start", "-a", once)
    assert (res.returncode, res.stdout, res.stderr) == (4, "out\n", "err\n")
    assert inspect(once)["State"]["ExitCode"] == 4
    res = clab("start", "-a", once)  # an exited container starts again
    assert res.returncode == 4

    gone = ok("create", "--rm", "busybox", "true").strip()  # --rm at create, as Docker
    assert clab("start", "-a", gone).returncode == 0
    assert gone not in ok("ps", "-aq", "--no-trunc").split()


# --- stop, kill, restart -----------------------------------------------------------------------
def test_stop_a_sleep_as_pid_1_takes_the_grace_period_then_sigkill(clab_root):
    cid = run_d("busybox", "sleep", "30")
    t = time.monotonic()
    ok("stop", "-t", "1", cid)
    took = time.monotonic() - t
    assert 0.9 < took < 5, took  # PID 1 has no default SIGTERM action: it ignored it
    assert clab("wait", cid).stdout.strip() == "137"
    assert inspect(cid)["State"]["Status"] == "exited"


def test_stop_a_shell_that_traps_term_exits_with_its_own_code_at_once(clab_root):
    cid = run_d("busybox", "sh", "-c", "trap 'exit 7' TERM; while :; do sleep 0.05; done")
    time.sleep(0.3)  # let the shell install its trap
    t = time.monotonic()
    ok("stop", "-t", "5", cid)
    assert time.monotonic() - t < 2
    assert ok("wait", cid).strip() == "7"


def test_stop_with_init_ends_a_plain_sleep_at_once_with_143(clab_root):
    cid = run_d("--init", "busybox", "sleep", "30")
    t = time.monotonic()
    ok("stop", "-t", "5", cid)
    assert time.monotonic() - t < 2  # init forwarded SIGTERM to sleep, which is not PID 1
    assert ok("wait", cid).strip() == "143"
    assert inspect(cid)["HostConfig"]["Init"] is True


def test_kill_with_a_signal_name_or_number(clab_root):
    trap = run_d("busybox", "sh", "-c", "trap 'exit 5' USR1; while :; do sleep 0.05; done")
    sleeper = run_d("busybox", "sleep", "30")
    time.sleep(0.3)
    assert ok("kill", "-s", "USR1", trap).strip() == trap
    assert ok("wait", trap).strip() == "5"
    ok("kill", "-s", "9", sleeper)
    assert ok("wait", sleeper).strip() == "137"
    res = clab("kill", sleeper)
    assert res.returncode == 1 and "is not running" in res.stderr
    res = clab("kill", "-s", "NOPE", run_d("busybox", "sleep", "30"))
    assert res.returncode == 1 and "invalid signal: NOPE" in res.stderr


def test_restart_counts_and_starts_a_new_process(clab_root):
    cid = run_d("--init", "busybox", "sleep", "30")
    before = inspect(cid)
    ok("restart", "-t", "1", cid)
    after = inspect(cid)
    assert after["RestartCount"] == 1 and after["State"]["Running"]
    assert after["State"]["Pid"] != before["State"]["Pid"] and alive(after["State"]["Pid"])
    assert not alive(before["State"]["Pid"])
    ok("stop", "-t", "1", cid)
    ok("restart", cid)  # an exited container restarts too
    assert inspect(cid)["RestartCount"] == 2 and inspect(cid)["State"]["Running"]


# --- rm, logs, wait, top, rename, inspect --------------------------------------------------------
def test_rm_refuses_a_running_container_and_rm_f_kills_it(clab_root):
    cid = run_d("busybox", "sleep", "30")
    pid = inspect(cid)["State"]["Pid"]
    res = clab("rm", cid)
    assert res.returncode == 1 and "it is running; stop it first, or use rm -f" in res.stderr
    assert alive(pid)
    assert ok("rm", "-f", cid).strip() == cid
    assert not alive(pid)
    assert not (clab_root / "containers" / cid).exists()
    assert os.listdir(clab_root / "names") == [] and os.listdir(clab_root / "images/leases") == []
    res = clab("rm", cid)
    assert res.returncode == 1 and "no such container" in res.stderr


def test_logs_keep_the_streams_apart_with_tail_timestamps_and_follow(clab_root):
    # The two streams are two pipes, read as they come: only time orders a line of one
    # against a line of the other (0.1 s was not enough on the emulated v2 kernel).
    cid = run_d("busybox", "sh", "-c", "echo oops >&2; sleep 0.5; echo one; echo two; echo three")
    ok("wait", cid)
    res = clab("logs", cid)
    assert (res.stdout, res.stderr) == ("one\ntwo\nthree\n", "oops\n")
    assert ok("logs", "--tail", "2", cid) == "two\nthree\n"  # the last 2 of all 4 lines
    stamped = ok("logs", "-t", "-n", "1", cid)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z three\n", stamped), stamped

    slow = run_d("busybox", "sh", "-c", "for i in 1 2 3; do echo tick $i; sleep 0.3; done")
    t = time.monotonic()
    res = clab("logs", "-f", slow)
    assert res.stdout == "tick 1\ntick 2\ntick 3\n"
    assert 0.3 < time.monotonic() - t < 10  # it followed until the container exited


def test_wait_prints_each_exit_code(clab_root):
    a = run_d("busybox", "sh", "-c", "sleep 0.3; exit 9")
    b = run_d("busybox", "true")
    assert ok("wait", a, b).split() == ["9", "0"]
    never = ok("create", "busybox", "true").strip()
    res = clab("wait", never)
    assert res.returncode == 1 and "has not run yet" in res.stderr


def test_top_lists_the_processes_of_the_container(clab_root):
    cid = run_d("busybox", "sh", "-c", "sleep 31 & exec sleep 32")
    wait_for(lambda: "sleep 31" in ok("top", cid), what="both sleeps")
    lines = ok("top", cid).splitlines()
    assert lines[0].split() == ["PID", "PPID", "PID", "INSIDE", "UID", "STATE", "CMD"]
    rows = [line.split(None, 5) for line in lines[1:]]
    cmds = {r[5]: r for r in rows}
    assert set(cmds) == {"sleep 31", "sleep 32"}
    assert cmds["sleep 32"][2] == "1"  # PID 1 inside
    assert cmds["sleep 31"][1] == cmds["sleep 32"][0]  # the shell forked it, then exec'd
    assert int(cmds["sleep 32"][0]) == inspect(cid)["State"]["Pid"]
    ok("stop", "-t", "0", cid)
    res = clab("top", cid)
    assert res.returncode == 125 and "is not running" in res.stderr


def test_rename_frees_the_old_name_and_takes_the_new_one(clab_root):
    cid = run_d("--name", "old", "busybox", "sleep", "30")
    other = run_d("--name", "taken", "busybox", "sleep", "30")
    ok("rename", "old", "new")
    assert inspect("new")["Id"] == cid and inspect(cid)["Name"] == "/new"
    assert clab("inspect", "--type", "container", "old").returncode != 0
    res = clab("rename", "new", "taken")
    assert res.returncode != 0
    assert f'the container name "/taken" is already in use by container {other[:12]}' in res.stderr
    assert inspect(cid)["Name"] == "/new"
    assert run_d("--name", "old", "busybox", "true") != cid  # the old name is free again
    assert sorted(os.listdir(clab_root / "names")) == ["new", "old", "taken"]
    res = clab("rename", "new", "bad name")
    assert res.returncode == 125 and "invalid container name" in res.stderr


def test_inspect_shows_state_config_and_name(clab_root):
    cid = run_d("--name", "box", "-e", "A=1", "-w", "/tmp", "busybox", "sleep", "30")
    doc = inspect("box")
    assert doc["Id"] == cid and doc["Name"] == "/box"
    assert doc["Path"] == "sleep" and doc["Args"] == ["30"]
    st = doc["State"]
    assert st["Status"] == "running" and st["Running"] and st["Pid"] > 0
    assert st["StartedAt"].endswith("Z") and st["FinishedAt"] == "0001-01-01T00:00:00Z"
    cfg = doc["Config"]
    assert cfg["Cmd"] == ["sleep", "30"] and cfg["WorkingDir"] == "/tmp"
    assert "A=1" in cfg["Env"] and cfg["Hostname"] == cid[:12] and cfg["Image"] == "busybox"
    ok("stop", "-t", "0", "box")
    st = inspect("box")["State"]
    assert (st["Status"], st["ExitCode"], st["Pid"]) == ("exited", 137, 0)
    assert ok("inspect", "-f", "{{.State.Status}}", "box").strip() == "exited"


# --- --rm, names, ids, exit codes --------------------------------------------------------------
def test_detached_rm_removes_the_record_after_exit(clab_root):
    cid = run_d("--rm", "busybox", "sh", "-c", "sleep 1")
    assert inspect(cid)["HostConfig"]["AutoRemove"] is True
    wait_for(lambda: not (clab_root / "containers" / cid).exists(), what="--rm")
    assert ok("ps", "-aq") == ""
    assert os.listdir(clab_root / "names") == [] and os.listdir(clab_root / "images/leases") == []


def test_a_name_is_unique_and_a_second_run_creates_nothing(clab_root):
    cid = run_d("--name", "xx", "busybox", "sleep", "30")
    res = clab("run", "-d", "--name", "xx", "busybox", "sleep", "30")
    assert res.returncode == 125
    assert res.stderr == (
        f'containerlab: the container name "/xx" is already in use by container {cid[:12]}; '
        "remove or rename that container to be able to reuse the name\n"
    )
    res = clab("run", "--name", "xx", "busybox", "true")
    assert res.returncode == 125
    assert os.listdir(clab_root / "containers") == [cid]
    assert os.listdir(clab_root / "images/leases") == [cid]
    assert ok("ps", "-aq", "--no-trunc").split() == [cid]


def test_short_ids_and_names_resolve(clab_root):
    cid = run_d("--name", "alpha", "busybox", "sleep", "30")
    for key in (cid, cid[:12], cid[:4], "alpha", "/alpha"):
        assert inspect(key)["Id"] == cid, key
    res = clab("inspect", "--type", "container", "nosuch")
    assert res.returncode != 0 and "no such container: nosuch" in res.stderr


def test_exit_codes(clab_root):
    assert clab("run", "--rm", "busybox", "sh", "-c", "exit 42").returncode == 42
    assert clab("run", "--rm", "--bogus", "busybox", "true").returncode == 125
    res = clab("run", "--rm", "nosuchimage", "true")
    assert res.returncode == 125 and "not found" in res.stderr
    assert clab("run", "--rm", "busybox", "/etc/passwd").returncode == 126
    assert clab("run", "--rm", "busybox", "nosuchcmd").returncode == 127
    # 128+N: the shell is not PID 1 under --init, so SIGUSR1 (10) kills it.
    assert clab("run", "--rm", "--init", "busybox", "sh", "-c", "kill -USR1 $$").returncode == 138
    # Detached: the supervisor reports why the command could not start.
    res = clab("run", "-d", "busybox", "nosuchcmd")
    assert res.returncode == 127 and "executable file not found" in res.stderr
    assert clab("run", "-d", "--rm", "busybox", "/etc/passwd").returncode == 126
    assert len(ok("ps", "-aq").split()) == 1  # --rm removed its failed container, not the other


def test_init_reaps_zombies_and_without_it_they_accumulate(clab_root):
    orphans = "for i in 1 2 3; do (sleep 0.2 &); done; exec sleep 30"
    plain = run_d("busybox", "sh", "-c", orphans)
    init = run_d("--init", "busybox", "sh", "-c", orphans)
    time.sleep(0.8)

    def states(cid):
        return [line.split()[4] for line in ok("top", cid).splitlines()[1:]]

    # Without --init, `sleep 30` is PID 1 and never waits: the orphans stay zombies.
    assert wait_for(lambda: states(plain).count("Z") == 3, what="3 zombies"), ok("top", plain)
    # With --init, PID 1 is the init, which reaped them.
    assert states(init) == ["S", "S"], ok("top", init)
    assert "Z" not in states(init)


def test_system_prune_removes_stopped_containers_only(clab_root):
    up = run_d("busybox", "sleep", "30")
    down = run_d("busybox", "true")
    created = ok("create", "busybox", "true").strip()
    ok("wait", down)
    out = ok("system", "prune", "-f")
    assert out.startswith("Deleted Containers:")
    assert down in out and created in out and up not in out
    assert ok("ps", "-aq", "--no-trunc").split() == [up]
    assert ok("system", "prune").startswith("No stopped containers.")


# --- truthful ps -----------------------------------------------------------------------------
def test_ps_tells_the_truth_when_supervisor_and_container_were_killed(clab_root):
    cid = run_d("busybox", "sleep", "30")
    st = state_of(clab_root, cid)
    os.kill(st["supervisor_pid"], signal.SIGKILL)
    os.kill(st["pid"], signal.SIGKILL)
    wait_for(lambda: not alive(st["pid"]), what="the container to die")
    assert ok("ps", "-q") == ""
    assert re.fullmatch(r"Exited \(255\) .* ago\n", ok("ps", "-a", "--format", "{{.Status}}"))
    state = inspect(cid)["State"]
    assert state["ExitCode"] == 255 and not state["Running"]
    assert "no supervisor watched" in state["Error"]


def test_killing_only_pid_1_lets_the_supervisor_record_137(clab_root):
    cid = run_d("busybox", "sleep", "30")
    st = state_of(clab_root, cid)
    os.kill(st["pid"], signal.SIGKILL)
    assert ok("wait", cid).strip() == "137"
    state = inspect(cid)["State"]
    assert state["ExitCode"] == 137 and state["Error"] == ""
    wait_for(lambda: not alive(st["supervisor_pid"]), what="the supervisor to exit")


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def children_of(pid: int) -> list[int]:
    out = []
    for entry in (p for p in os.listdir("/proc") if p.isdigit()):
        with contextlib.suppress(OSError):
            if parent_of(int(entry)) == pid:
                out.append(int(entry))
    return out


@pytest.mark.parametrize("init", [False, True], ids=["plain", "init"])
def test_the_supervisor_is_pid_1s_parent_and_records_its_exit(clab_root, init):
    """No launcher stays for a detached container: the supervisor, a child subreaper,
    adopts PID 1 once the launcher has forked it, and waits for it itself."""
    flags = ["--init"] if init else []
    runs = {
        "0": run_d(*flags, "busybox", "sh", "-c", "sleep 0.5"),
        "3": run_d(*flags, "busybox", "sh", "-c", "sleep 0.5; exit 3"),
        "137": run_d(*flags, "busybox", "sleep", "30"),
    }
    if init:  # PID 1 is the init, which passes SIGTERM on to the command
        runs["143"] = run_d(*flags, "busybox", "sleep", "30")
    for code in ("137", "143") if init else ("137",):  # the ones that run until killed
        st = state_of(clab_root, runs[code])
        assert parent_of(st["pid"]) == st["supervisor_pid"]
        assert children_of(st["supervisor_pid"]) == [st["pid"]]  # the launcher is gone
    ok("kill", runs["137"])
    if init:
        ok("kill", "-s", "TERM", runs["143"])
    for code, cid in runs.items():
        assert ok("wait", cid).strip() == code
        assert inspect(cid)["State"]["ExitCode"] == int(code)
    # stop and rm -f of a running one, as before
    stopped, removed = run_d(*flags, "busybox", "sleep", "30"), run_d("busybox", "sleep", "30")
    ok("stop", "-t", "5" if init else "0", stopped)  # the init ends at SIGTERM, sleep never
    assert inspect(stopped)["State"]["ExitCode"] == (143 if init else 137)
    sup = state_of(clab_root, removed)["supervisor_pid"]
    ok("rm", "-f", removed)
    assert not alive(sup) and removed not in ok("ps", "-aq", "--no-trunc")


# --- concurrency -----------------------------------------------------------------------------
def test_twenty_detached_runs_at_once(clab_root):
    ok("run", "--rm", "busybox", "true")
    results: list[subprocess.CompletedProcess] = []

    def one():
        results.append(clab("run", "-d", "busybox", "sleep", "30"))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results]
    ids = {r.stdout.strip() for r in results}
    assert len(ids) == 20
    rows = ok("ps", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.State}}").splitlines()
    assert len(rows) == 20
    assert {r.split()[0][:12] for r in rows} == {i[:12] for i in ids}
    assert len({r.split()[1] for r in rows}) == 20
    assert {r.split()[2] for r in rows} == {"running"}
    assert all(alive(state_of(clab_root, i)["pid"]) for i in ids)


def test_rm_f_racing_stop_leaves_nothing_and_no_trace(clab_root):
    for _ in range(3):
        cid = run_d("busybox", "sleep", "30")
        stop = subprocess.Popen(
            [CLI, "stop", "-t", "1", cid], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        rm = subprocess.Popen(
            [CLI, "rm", "-f", cid], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        outs = [p.communicate(timeout=30) for p in (stop, rm)]
        for _out, err in outs:
            assert b"Traceback" not in err, err.decode()
        assert rm.returncode == 0, outs[1]
        assert stop.returncode in (0, 1), outs[0]
        assert not (clab_root / "containers" / cid).exists()
        assert os.listdir(clab_root / "names") == []
        assert os.listdir(clab_root / "images/leases") == []
        assert our_processes(clab_root) == []
    assert ok("system", "doctor").startswith("nothing left behind")


def test_many_processes_taking_one_name_exactly_one_wins(clab_root):
    ok("run", "--rm", "busybox", "true")
    ids = [ok("create", "busybox", "true").strip() for _ in range(8)]
    procs = [
        subprocess.Popen([CLI, "rename", cid, "prize"], stderr=subprocess.PIPE) for cid in ids
    ] + [
        subprocess.Popen(
            [CLI, "create", "--name", "prize", "busybox", "true"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(8)
    ]
    codes = [p.wait(timeout=60) for p in procs]
    for p in procs:
        p.stderr.close()
        if p.stdout:
            p.stdout.close()
    assert codes.count(0) == 1, codes
    assert len(os.listdir(clab_root / "containers")) == 8 + (codes[8:].count(0))
    winner = os.readlink(clab_root / "names" / "prize")
    assert inspect("prize")["Id"] == winner
    names = ok("ps", "-a", "--format", "{{.Names}}").split()
    assert names.count("prize") == 1 and len(names) == len(set(names))
    assert ok("system", "doctor").startswith("nothing left behind")


# --- crash safety ----------------------------------------------------------------------------
def test_cli_killed_at_random_instants_leaves_only_what_doctor_removes(clab_root):
    ok("run", "--rm", "busybox", "true")
    rng = random.Random(20261128)
    variants = [
        ["run", "-d", "busybox", "sleep", "30"],
        ["run", "-d", "--rm", "busybox", "sleep", "30"],
        ["run", "-d", "--init", "busybox", "sleep", "30"],
        ["run", "busybox", "sleep", "30"],
        ["run", "--rm", "busybox", "sleep", "30"],
        ["run", "--init", "--rm", "busybox", "sleep", "30"],
    ]
    for _ in range(15):
        proc = subprocess.Popen(
            [CLI, *rng.choice(variants)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0, 0.3))
        proc.kill()
        proc.wait()

    listed = clab("system", "doctor")
    assert "Traceback" not in listed.stderr
    if listed.returncode:
        assert "leftover(s)" in listed.stdout
    else:
        assert listed.stdout.startswith("nothing left behind")
    fixed = clab("system", "doctor", "--fix")
    assert fixed.returncode == 0 and "Traceback" not in fixed.stderr, fixed.stderr
    assert ok("system", "doctor").startswith("nothing left behind")

    # What is left is consistent: every record complete and truthful, every name and hold
    # belongs to a record, every process of ours belongs to a running container.
    records = {cid: state_of(clab_root, cid) for cid in ok("ps", "-aq", "--no-trunc").split()}
    assert set(os.listdir(clab_root / "containers")) == set(records)
    assert set(os.listdir(clab_root / "images/leases")) == set(records)
    assert {os.readlink(n) for n in (clab_root / "names").iterdir()} == set(records)
    running = {cid for cid, st in records.items() if st["status"] == "running"}
    for cid in running:
        assert alive(records[cid]["pid"]) and alive(records[cid]["supervisor_pid"])
    ours = our_processes(clab_root)
    # supervisor, PID 1, and with --init the command under the init (no launcher stays)
    assert len(ours) <= 3 * len(running), ours
    for cid, st in records.items():
        assert st["status"] in ("running", "exited", "created"), st
        cfg = json.loads((clab_root / "containers" / cid / "config.json").read_text())
        if cfg["auto_remove"]:
            assert cid in running  # an --rm container that is not running was removed

    if records:
        ok("rm", "-f", *records)
    assert our_processes(clab_root) == []
    assert os.listdir(clab_root / "containers") == []
    assert os.listdir(clab_root / "names") == []
    assert os.listdir(clab_root / "images/leases") == []
    assert ok("system", "doctor").startswith("nothing left behind")
