"""The kernel seam: errors carry operation and path; explain prints shell equivalents."""

from __future__ import annotations

import errno
import os

import pytest

from containerlab import syscalls as S


def test_mount_failure_names_operation_and_path(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(S.SyscallError) as info:
        S.mount("tmpfs", missing, "tmpfs")
    err = info.value
    assert isinstance(err, OSError)
    assert err.errno == errno.ENOENT
    assert err.operation == "mount"
    assert err.filename == missing
    assert str(err).startswith(f"mount {missing}: No such file or directory [ENOENT]")


def test_umount_of_a_non_mount_is_einval(tmp_path):
    with pytest.raises(S.SyscallError) as info:
        S.umount2(str(tmp_path))
    assert info.value.errno == errno.EINVAL
    assert "umount2" in str(info.value)


def test_write_file_reports_the_path(tmp_path):
    with pytest.raises(S.SyscallError) as info:
        S.write_file(str(tmp_path / "absent" / "file"), "x")
    assert info.value.operation == "open"


@pytest.mark.parametrize(
    ("args", "shell"),
    [
        (
            ("proc", "/c/proc", "proc", S.MS_NOSUID | S.MS_NODEV, None),
            "mount -t proc proc /c/proc -o nosuid,nodev",
        ),
        (("/a", "/b", None, S.MS_BIND | S.MS_REC, None), "mount --rbind /a /b"),
        ((None, "/", None, S.MS_REC | S.MS_PRIVATE, None), "mount --make-rprivate /"),
        (
            (None, "/x", None, S.MS_BIND | S.MS_REMOUNT | S.MS_RDONLY, None),
            "mount -o remount,bind,ro /x",
        ),
        (
            ("overlay", "/m", "overlay", 0, "lowerdir=/l,upperdir=/u,workdir=/w"),
            "mount -t overlay overlay /m -o lowerdir=/l,upperdir=/u,workdir=/w",
        ),
    ],
)
def test_mount_shell_equivalents(args, shell):
    assert S._mount_shell(*args) == shell


def test_explain_prints_the_step_and_its_shell_command(capsys):
    S.set_explain(True)
    try:
        S.explain("sethostname('box')", "hostname box")
    finally:
        S.set_explain(None)
    err = capsys.readouterr().err
    assert "[explain] sethostname('box')" in err
    assert "$ hostname box" in err


def test_explain_is_off_by_default(capsys, monkeypatch):
    monkeypatch.delenv("CONTAINERLAB_EXPLAIN", raising=False)
    S.explain("nothing")
    assert capsys.readouterr().err == ""


def test_clone_flag_names():
    assert S.clone_flag_names(S.CLONE_NEWPID | S.CLONE_NEWNS) == ["mount", "pid"]
    assert set(S.NS_FLAGS) == {"mnt", "uts", "ipc", "net", "pid", "user", "cgroup", "time"}


def test_sethostname_outside_a_new_uts_namespace_is_refused_for_nobody():
    # Run as nobody in a child: sethostname needs CAP_SYS_ADMIN in the UTS namespace.
    pid = os.fork()
    if pid == 0:
        try:
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            S.sethostname("nope")
            os._exit(0)
        except S.SyscallError as e:
            os._exit(10 if e.errno == errno.EPERM else 11)
        except BaseException:
            os._exit(12)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 10
