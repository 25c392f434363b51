"""The floor under ``containerlab run --rm IMAGE true``: its kernel steps, and nothing else.

    sudo python3 -S -E scripts/floor_run.py LOWERDIR SCRATCH

bench_runtime.py times this next to the real CLI and runc. It does what a container start
must do in the kernel, in as little Python as possible: cgroup directories (and cpuset's
cpus/mems on cgroup v1) joined by the child, unshare(mount, uts, ipc, pid, net, cgroup),
fork (PID 1 of the new PID namespace), an overlay of LOWERDIR with an upper and a work dir
under SCRATCH, /proc, pivot_root, exec ``/bin/true``; then wait, remove the cgroups and
the directories. It keeps no record, takes no lock, writes no /etc/hosts, masks nothing,
mounts no /dev and checks nothing: a lower bound, not a runtime. What the CLI takes above
this row is what containerlab itself adds (the interpreter start is counted in both).
"""

import ctypes
import os
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP = 0x20000000, 0x40000000, 0x02000000
MS_REC, MS_PRIVATE, MNT_DETACH = 0x4000, 0x40000, 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}[os.uname().machine]
CONTROLLERS = {"cpu", "cpuacct", "cpuset", "memory", "freezer", "blkio", "pids"}

libc = ctypes.CDLL(None, use_errno=True)


def check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def cgroup_dirs(name: str) -> list[str]:
    """Where the new cgroup goes: below this process's own cgroup, in every hierarchy."""
    out = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controllers == "":  # cgroup v2: only when it is the whole tree
                mount = "/sys/fs/cgroup"
                if not os.path.exists(mount + "/cgroup.controllers"):
                    continue
            elif set(controllers.split(",")) & CONTROLLERS:
                mount = "/sys/fs/cgroup/" + controllers
            else:
                continue
            out.append(f"{mount}{path.rstrip('/')}/{name}")
    return out


def main(lower: str, scratch: str) -> int:
    base = f"{scratch}/floor-{os.getpid()}"
    upper, work, merged = base + "/upper", base + "/work", base + "/rootfs"
    for d in (base, upper, work, merged):
        os.mkdir(d)
    cgroups = cgroup_dirs(f"clab-floor-{os.getpid()}")
    for cg in cgroups:
        os.mkdir(cg)
        if cg.startswith("/sys/fs/cgroup/cpuset/"):  # v1 cpuset starts empty: copy the parent's
            for knob in ("cpuset.cpus", "cpuset.mems"):
                with open(f"{os.path.dirname(cg)}/{knob}") as src, open(f"{cg}/{knob}", "w") as dst:
                    dst.write(src.read())
    try:
        pid = os.fork()
        if pid == 0:
            try:
                for cg in cgroups:
                    with open(cg + "/cgroup.procs", "w") as f:
                        f.write("0")
                new = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
                check(libc.unshare(new), "unshare")
                check(libc.unshare(CLONE_NEWCGROUP), "unshare cgroup")
                check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
                opts = f"lowerdir={lower},upperdir={upper},workdir={work}".encode()
                check(libc.mount(b"overlay", merged.encode(), b"overlay", 0, opts), "mount overlay")
                child = os.fork()
                if child == 0:  # PID 1 of the new PID namespace
                    os.chdir(merged)
                    check(libc.mount(b"proc", b"proc", b"proc", 0, None), "mount proc")
                    check(libc.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
                    check(libc.umount2(b".", MNT_DETACH), "umount the old root")
                    os.execv("/bin/true", ["true"])
                _, status = os.waitpid(child, 0)
                os._exit(os.waitstatus_to_exitcode(status))
            except BaseException as e:
                print(f"floor_run: {e}", file=sys.stderr)
                os._exit(125)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    finally:
        for cg in cgroups:
            os.rmdir(cg)
        for d in (merged, work + "/work", work, upper, base):
            if os.path.isdir(d):
                os.rmdir(d)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
