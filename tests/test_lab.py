"""The README's lab command starts a real JupyterLab that serves the notebooks with root kernels.

`scripts/lab.sh` runs as a subprocess in its own process group on a free port with a known
token; the test then talks to it only through its HTTP API and a kernel's websocket, as
JupyterLab in a browser would, stops it as Ctrl-C would, and checks nothing is left running.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import websocket

REPO = Path(__file__).resolve().parent.parent
LAB_SH = REPO / "scripts" / "lab.sh"
NOTEBOOKS = REPO / "notebooks"
START_TIMEOUT = 90.0  # seconds: setup.sh (quick when all is in place) plus the server start
PR_SET_CHILD_SUBREAPER = 36

pytestmark = pytest.mark.lab


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_subreaper(on: bool) -> None:
    """Orphans (a kernel whose server died) come to us, not to a PID 1 that never reaps."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)


def _processes_of(marker: str, pgid: int) -> dict[int, str]:
    """Processes in the lab's process group, or whose command line names its state dir."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat[0] == "Z":  # a zombie is reaped below, not counted as running
            continue
        if marker in cmd or int(stat[2]) == pgid:
            found[int(entry)] = cmd.strip()
    return found


def _reap(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass  # not our child (or already reaped)


@dataclass
class Lab:
    url: str
    token: str
    proc: subprocess.Popen
    state: Path

    def get(self, path: str) -> requests.Response:
        r = requests.get(f"{self.url}{path}", headers=self.headers, timeout=10)
        r.raise_for_status()
        return r

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}


def _wait_until_up(lab: Lab, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if lab.proc.poll() is not None:
            pytest.fail(f"lab.sh exited with {lab.proc.returncode}:\n{log.read_text()}")
        try:
            if requests.get(f"{lab.url}/api/status", headers=lab.headers, timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    pytest.fail(f"the lab did not answer within {START_TIMEOUT:.0f} s:\n{log.read_text()}")


def _stop(lab: Lab) -> None:
    """Ctrl-C as a learner would (SIGINT to the group), then SIGTERM, then SIGKILL."""
    pgid = lab.proc.pid
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if lab.proc.poll() is not None:
            break
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            lab.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def _running_lab(
    args: list[str], tmp: Path, env: dict[str, str], user: int | None = None
) -> Iterator[Lab]:
    """lab.sh started in its own process group; stopped, and nothing of it left, on exit."""
    port, token = _free_port(), uuid.uuid4().hex
    state = tmp / "lab-state"
    state.mkdir()
    if user is not None:
        os.chown(state, user, user)
    log = tmp / "lab.log"
    env = {
        **os.environ,
        **env,
        "LAB_PORT": str(port),
        "LAB_IP": "127.0.0.1",
        "JUPYTER_TOKEN": token,
        "LAB_STATE_DIR": str(state),
    }
    _set_subreaper(True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", str(LAB_SH), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole, like Ctrl-C
            user=user,
            group=user,
            extra_groups=[] if user is not None else None,
        )
    the_lab = Lab(f"http://127.0.0.1:{port}", token, proc, state)
    try:
        _wait_until_up(the_lab, log)
        yield the_lab
    finally:
        _stop(the_lab)
        print(log.read_text())  # pytest shows it when the test fails
        # Anything left (a kernel in its own session, named by its connection file in the
        # state dir) is killed and reaped, so a failure cannot leak into later tests.
        left = _processes_of(str(state), proc.pid)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2 if left else 0)
        _reap(list(left))
        _set_subreaper(False)
        # What was left is reported after the cleanup, so the leak fails the test.
        assert not left, f"the stopped lab left processes behind: {left}\n{log.read_text()}"
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """The README's lab command, as root."""
    with _running_lab([], tmp_path, {}) as the_lab:
        yield the_lab


def _run_in_kernel(lab: Lab, kernel_id: str, code: str, timeout: float = 60) -> str:
    """Execute code over the kernel's websocket channel; return its stdout."""
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{lab.url.rsplit(':', 1)[1]}/api/kernels/{kernel_id}/channels",
        header=[f"Authorization: token {lab.token}"],
        timeout=timeout,
    )
    try:
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": "test",
                        "session": uuid.uuid4().hex,
                        "msg_type": "execute_request",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False, "stop_on_error": True},
                    "channel": "shell",
                }
            )
        )
        out, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                out.append(content["text"])
            elif kind == "error":
                pytest.fail(f"kernel error: {content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(out)
        pytest.fail(f"no reply from the kernel within {timeout} s")
    finally:
        ws.close()


def test_lab_serves_notebooks_with_a_root_kernel(lab: Lab) -> None:
    # The file browser's root is notebooks/: it lists every notebook there, and only what
    # is in that directory (not the repo's pyproject.toml). Others may add notebooks while
    # this runs, so the disk is read before and after the listing.
    def on_disk() -> set[str]:
        return {p.name for p in NOTEBOOKS.iterdir() if not p.name.startswith(".")}

    before = on_disk()
    listing = lab.get("/api/contents").json()
    after = on_disk()
    assert listing["type"] == "directory" and listing["path"] == ""
    names = {item["name"] for item in listing["content"]}
    assert names <= before | after, f"not in notebooks/: {names - (before | after)}"
    assert "pyproject.toml" not in names
    served = {i["name"] for i in listing["content"] if i["type"] == "notebook"}
    notebooks = {n for n in before | after if n.endswith(".ipynb")}
    assert {n for n in before & after if n.endswith(".ipynb")} <= served <= notebooks

    # The token is what lets a request in.
    r = requests.get(f"{lab.url}/api/contents", headers={"Authorization": "token no"}, timeout=10)
    assert r.status_code == 403

    specs = lab.get("/api/kernelspecs").json()
    assert specs["default"] == "containerlab"
    assert "containerlab" in specs["kernelspecs"]

    # A kernel started with no name gets the default, and it runs as root.
    r = requests.post(f"{lab.url}/api/kernels", headers=lab.headers, json={}, timeout=30)
    r.raise_for_status()
    kernel = r.json()
    assert kernel["name"] == "containerlab"
    try:
        # The kernel is found by what the cleanup looks for, so that check is not vacuous.
        running = _processes_of(str(lab.state), lab.proc.pid).values()
        assert any("ipykernel_launcher" in cmd for cmd in running), running
        assert _run_in_kernel(lab, kernel["id"], "import os; print(os.getuid())").strip() == "0"
    finally:
        url = f"{lab.url}/api/kernels/{kernel['id']}"
        r = requests.delete(url, headers=lab.headers, timeout=30)
        assert r.status_code == 204
    assert lab.get("/api/kernels").json() == []


# The Vagrant VM's shape, on this machine: setup.sh --lab-user makes a sudo kernelspec and
# a sudoers rule, and the server runs as that unprivileged user (no --allow-root) while its
# kernels run as root. It runs in a throwaway venv that borrows the shared venv's packages
# (no download; the shared venv's kernelspec is never touched), for a throwaway user; the
# user, the sudoers file and the /usr/local/bin link are restored however the test ends.
SUDOERS = Path("/etc/sudoers.d/containerlab-lab")
CLI_LINK = Path("/usr/local/bin/containerlab")
ACCOUNTS = ("passwd", "shadow", "group", "gshadow")
ACCOUNT_FILES = [Path(f"/etc/{n}{b}") for n in ACCOUNTS for b in ("", "-")]


@contextlib.contextmanager
def _throwaway_user() -> Iterator[tuple[str, int]]:
    name = f"clablab{uuid.uuid4().hex[:6]}"
    saved = {p: p.read_bytes() for p in ACCOUNT_FILES if p.exists()}
    subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--no-log-init",
            "--user-group",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        check=True,
    )
    try:
        yield name, pwd.getpwnam(name).pw_uid
    finally:
        subprocess.run(["userdel", name], check=True)
        # userdel puts the account back; the "-" backups it rewrote get their old bytes.
        for p, data in saved.items():
            if p.read_bytes() != data:
                p.write_bytes(data)


def _borrowing_venv(at: Path) -> Path:
    """A venv whose packages are the shared venv's, with setup.sh's install step marked done."""
    shared = Path(sys.prefix)
    # From the interpreter setup.sh uses, as the shared venv is.
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", at], check=True)
    site_dir = next((at / "lib").glob("python3*/site-packages"))
    shared_site = next((shared / "lib").glob("python3*/site-packages"))
    (site_dir / "_containerlab_shared.pth").write_text(
        f"import site; site.addsitedir({str(shared_site)!r})\n"
    )
    script = (shared / "bin" / "jupyter-lab").read_text().split("\n", 1)[1]
    (at / "bin" / "jupyter-lab").write_text(f"#!{at}/bin/python\n{script}")
    (at / "bin" / "jupyter-lab").chmod(0o755)
    (at / "bin" / "containerlab").symlink_to(shared / "bin" / "containerlab")
    # JupyterLab's built assets and extensions live under the venv's prefix.
    (at / "share" / "jupyter").mkdir(parents=True)
    for d in ("lab", "labextensions"):
        (at / "share" / "jupyter" / d).symlink_to(shared / "share" / "jupyter" / d)
    (at / ".containerlab-installed").touch()  # newer than pyproject.toml: no pip install
    return at


@pytest.mark.skipif(shutil.which("sudo") is None, reason="needs sudo")
@pytest.mark.skipif(SUDOERS.exists(), reason=f"{SUDOERS} exists: not overwriting it")
def test_lab_as_a_user_with_sudo_kernels(tmp_path: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="clab-lab-"))  # pytest's tmp is 0700: the user needs in
    tmp.chmod(0o755)
    link = os.readlink(CLI_LINK) if CLI_LINK.is_symlink() else None
    try:
        with _throwaway_user() as (name, uid):
            venv = _borrowing_venv(tmp / "venv")
            env = {"CONTAINERLAB_VENV": str(venv)}
            try:
                subprocess.run(
                    ["bash", str(REPO / "scripts" / "setup.sh"), "--lab-user", name],
                    env={**os.environ, **env},
                    check=True,
                    capture_output=True,
                )
            finally:
                if link is not None:  # setup.sh points the CLI at its venv: put it back
                    CLI_LINK.unlink()
                    CLI_LINK.symlink_to(link)
            spec = json.loads((venv / "share/jupyter/kernels/containerlab/kernel.json").read_text())
            assert spec["argv"][:2] == ["sudo", "-n"]
            try:
                with _running_lab(["--no-setup"], tmp, env, user=uid) as lab:
                    assert os.stat(f"/proc/{lab.proc.pid}").st_uid == uid  # not root
                    url = f"{lab.url}/api/kernels"
                    r = requests.post(url, headers=lab.headers, json={}, timeout=30)
                    r.raise_for_status()
                    kernel_id = r.json()["id"]
                    try:
                        code = "import os; print(os.getuid())"
                        assert _run_in_kernel(lab, kernel_id, code).strip() == "0"
                    finally:
                        url = f"{lab.url}/api/kernels/{kernel_id}"
                        r = requests.delete(url, headers=lab.headers, timeout=30)
                        assert r.status_code == 204
            finally:
                SUDOERS.unlink(missing_ok=True)
            assert not [p for p in os.listdir("/proc") if p.isdigit() and _owned_by(p, uid)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _owned_by(pid: str, uid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}").st_uid == uid
    except OSError:
        return False
