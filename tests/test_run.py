"""`containerlab run`: the first container, against the real kernel, through the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from containerlab import rootfs
from containerlab.errors import CommandNotFoundError
from containerlab.image.store import Store
from containerlab.runtime import container
from containerlab.runtime.spec import ContainerSpec

CLI = os.path.join(os.path.dirname(sys.executable), "containerlab")


def clab(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, **kw)


def test_the_issue_example_prints_pid_1_and_its_own_hostname():
    res = clab("run", "--rm", "busybox", "sh", "-c", "echo $$; hostname")
    assert res.returncode == 0, res.stderr
    pid, hostname = res.stdout.split()
    assert pid == "1"
    assert hostname != os.uname().nodename
    assert len(hostname) == 12 and all(c in "0123456789abcdef" for c in hostname)


def test_exit_code_is_the_commands():
    assert clab("run", "--rm", "busybox", "sh", "-c", "exit 3").returncode == 3


def test_command_not_found_is_127():
    res = clab("run", "--rm", "busybox", "no-such-command")
    assert res.returncode == 127
    assert 'exec: "no-such-command": executable file not found in $PATH' in res.stderr


def test_command_not_executable_is_126():
    res = clab("run", "--rm", "busybox", "/etc/passwd")
    assert res.returncode == 126
    assert '"/etc/passwd"' in res.stderr


def test_unknown_image_is_125_and_changes_nothing(clab_root):
    res = clab("run", "--rm", "busybx", "true")
    assert res.returncode == 125
    assert "image 'busybx:latest' not found" in res.stderr
    assert not (clab_root / "run").exists()


def test_unknown_flag_is_125():
    res = clab("run", "--bogus", "busybox", "true")
    assert res.returncode == 125
    assert "unknown flag: --bogus" in res.stderr
    assert "See 'containerlab run --help'" in res.stderr


def test_not_root_is_refused_with_the_fix(clab_root):
    res = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            CLI,
            "run",
            "--rm",
            "busybox",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert res.returncode == 125
    assert "needs root" in res.stderr and "sudo" in res.stderr


def test_preflight_names_a_missing_overlayfs():
    from containerlab.errors import KernelFeatureError

    with pytest.raises(KernelFeatureError, match="modprobe overlay"):
        container.preflight(filesystems_text="nodev\tproc\nnodev\ttmpfs\n")


def test_env_workdir_and_hostname_flags():
    res = clab(
        "run",
        "--rm",
        "-e",
        "GREETING=hi",
        "-w",
        "/work/dir",
        "--hostname",
        "box",
        "busybox",
        "sh",
        "-c",
        'echo "$GREETING $(pwd) $(hostname) $HOSTNAME $HOME"',
    )
    assert res.stdout.split() == ["hi", "/work/dir", "box", "box", "/root"]


def test_env_file(tmp_path):
    f = tmp_path / "env"
    f.write_text("# comment\nA=1\nB=two words\n")
    res = clab("run", "--rm", "--env-file", str(f), "busybox", "sh", "-c", 'echo "$A|$B"')
    assert res.stdout.strip() == "1|two words"


def test_bad_env_is_refused():
    res = clab("run", "--rm", "-e", "=x", "busybox", "true")
    assert res.returncode == 125 and "invalid environment variable" in res.stderr


def test_container_sees_only_its_own_processes_and_filesystems():
    script = (
        "ps -o pid= | wc -l; "
        "ls /; "
        "wc -c < /proc/interrupts; "
        "touch /sys/x 2>&1 || true; "
        "echo x > /proc/sys/kernel/hostname 2>&1 || true; "
        "grep -c devpts /proc/mounts; "
        "ip -o link | wc -l"
    )
    # --network none: only lo (the bridge network's eth0: test_container_network.py)
    res = clab("run", "--rm", "--network", "none", "busybox", "sh", "-c", script)
    out = res.stdout
    lines = out.splitlines()
    assert int(lines[0]) <= 3
    assert "work" not in lines  # the host's directories are gone
    assert "0" in lines  # /proc/interrupts is masked: /dev/null over it
    assert "Read-only file system" in out  # /sys and /proc/sys
    assert lines[-2] == "1" and lines[-1] == "1"  # one devpts, one link (lo)


def test_masked_paths_can_be_turned_off_to_show_why():
    spec = ContainerSpec(
        image="busybox", argv=("sh", "-c", "grep -c /proc/kcore /proc/mounts"), masked_paths=False
    )
    with container.start(spec, stdout=subprocess.PIPE) as c:
        out, _ = c.process.communicate(timeout=30)
        assert c.wait() in (0, 1)
    assert out.decode().strip() == "0"


def test_writes_go_to_the_container_not_the_image(clab_root):
    res = clab("run", "--rm", "busybox", "sh", "-c", "echo changed > /etc/hostname; rm /bin/ls")
    assert res.returncode == 0
    store = Store()
    (base,) = store.layer_dirs(store.image("busybox"))
    assert (base / "etc/hostname").read_text() == "containerlab\n"
    assert (base / "bin/ls").is_symlink()


def test_nothing_is_left_after_run(clab_root):
    before = rootfs.mountinfo()
    assert clab("run", "--rm", "busybox", "true").returncode == 0
    assert list((clab_root / "containers").iterdir()) == []
    assert rootfs.mountinfo() == before


def test_a_failed_start_leaves_nothing(clab_root):
    with pytest.raises(CommandNotFoundError):
        container.start(ContainerSpec(image="busybox", argv=("nope",)))
    assert list((clab_root / "containers").iterdir()) == []


def test_killed_container_exits_137():
    with container.start(ContainerSpec(image="busybox", argv=("sleep", "30"))) as c:
        os.kill(c.pid, signal.SIGKILL)
        assert c.wait(10) == 137


def test_sigterm_to_the_cli_reaches_the_container():
    proc = subprocess.Popen(
        [
            CLI,
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # Once the trap is set (not after a fixed delay: a slow machine, such as the emulated
        # v2 kernel, may still be starting the CLI, which a SIGTERM then simply ends).
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 42
    assert "got-term" in out


def test_explain_prints_every_kernel_step_with_its_shell_equivalent():
    res = clab("run", "--rm", "--explain", "busybox", "true")
    assert res.returncode == 0
    err = res.stderr
    for shell in (
        "unshare --mount --uts --ipc --net --pid",
        "unshare --cgroup",  # after the launcher is in the container's cgroup
        "mkdir /sys/fs/cgroup/",
        "mount -t overlay",
        "mount -t proc",
        "pivot_root . .",
        "umount -l .",
        "ip link set lo up",
        "hostname ",
    ):
        assert shell in err, shell


def test_stdin_is_passed_through():
    res = subprocess.run(
        [CLI, "run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z"],
        input="hello\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.stdout == "HELLO\n"
