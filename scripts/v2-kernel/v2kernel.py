#!/usr/bin/env python3
"""Run a command on a real cgroup v2 kernel: Debian's kernel under QEMU, the host's files.

The CI machine has a cgroup v1/v2 hybrid; learners' VMs are pure cgroup v2. This boots
Debian's stock kernel under QEMU (TCG: no KVM needed) with ``cgroup_no_v1=all``, shares the
host's root read-only over 9p, lays a tmpfs-backed overlay on it so the host's own Python,
venv and repo run unchanged and can write, mounts cgroup2 at /sys/fs/cgroup (laid out as
systemd does), puts the command's TMPDIR on an ext4 scratch disk (a sparse file, so the
io controller has a block device) and runs one command there; the guest has no network
device. The command's output comes back on the serial console, its exit status as the
line ``CLAB-V2-EXIT=<n>``, and this script exits with that status.

    v2kernel.py [options] [-- PYTEST_ARGS...]   pytest on the v2 kernel (in the repo)
    v2kernel.py [options] --shell 'COMMAND'     any shell command line instead

Without arguments it runs smoke.py (this kernel really is pure v2 and its controllers
work) and then ``pytest tests/test_cgroups.py tests/test_run.py``.

Exit status: the guest command's; 124 on timeout; 125 when the guest could not be set up;
77 when QEMU or the kernel cannot be installed (no Debian mirror, or not Debian on amd64).

What stays on the host: the kernel (vmlinuz and the few modules the guest loads, with the
.deb they came from: ~80 MB) in the cache directory, reused by every later run; remove it
with ``rm -rf /var/cache/containerlab/v2-kernel``. Nothing else: the initramfs lives in a
temporary directory removed as soon as QEMU has read it (the scratch disk with it: QEMU
keeps it open), and QEMU is killed and reaped on timeout, SIGTERM or Ctrl-C, and dies with
this script (PR_SET_PDEATHSIG) even when it is SIGKILLed.

Measured on the 2-core CI machine: kernel download and unpack once ~12 s; boot to the
command ~10 s (under TCG); smoke check plus tests/test_cgroups.py ~35 s, tests/test_run.py
~90 s more.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import lzma
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_REPO = HERE.parent.parent
CACHE = Path(os.environ.get("CLAB_V2_CACHE", "/var/cache/containerlab/v2-kernel"))
KERNEL_META = "linux-image-amd64"  # Debian's meta package: depends on the current kernel
# What the guest loads (with their dependencies, read from modules.dep): PCI virtio and
# 9p to reach the host's files, overlay to make them writable, veth for the network
# namespace tests, virtio_rng so early getrandom() never waits for entropy, and
# virtio_blk + ext4 (+ crc32c, which ext4 asks the crypto API for) for a real disk at /tmp:
# the io controller only limits and counts block devices. Then what a container's default
# network needs (a bridge, nftables' NAT and fib matches), so `run` works as in a VM.
MODULES = ["virtio_pci", "virtio_rng", "9pnet_virtio", "9p", "overlay", "veth"]
MODULES += ["virtio_blk", "crc32c_generic", "ext4"]
MODULES += ["bridge", "nf_tables", "nft_chain_nat", "nft_masq", "nft_nat", "nft_ct"]
MODULES += ["nft_fib_ipv4", "nft_fib_inet"]
SCRATCH_MIB = 2048  # the /tmp disk: a sparse file, so only what the guest writes is used
BUSYBOX = Path("/bin/busybox")  # static (busybox-static): the whole initramfs userland
EXIT_RE = re.compile(r"CLAB-V2-EXIT=(\d+)")
BEGIN = "CLAB-V2-BEGIN"
ANSI_RE = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|[A-Za-z])")
SKIP, TIMEOUT, SETUP_FAILED = 77, 124, 125
# pytest in the guest, without the plugins whose imports cost ~30 s under emulation and
# that no test run there needs (nbval for notebooks; hypothesis works without its plugin).
PYTEST = "-m pytest -p no:cacheprovider -p no:nbval -p no:hypothesispytest -q"


class Unavailable(Exception):
    """QEMU or the kernel cannot be installed here: the caller should skip, not fail."""


def log(msg: str) -> None:
    print(f"v2-kernel: {msg}", file=sys.stderr, flush=True)


# --- prerequisites -----------------------------------------------------------------------


def apt(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)


def ensure_qemu() -> str:
    """qemu-system-x86_64, installed without recommends when missing."""
    qemu = shutil.which("qemu-system-x86_64")
    if qemu:
        return qemu
    if os.uname().machine != "x86_64":
        raise Unavailable(f"only amd64 hosts are supported (this is {os.uname().machine})")
    log("installing qemu-system-x86 (apt-get, --no-install-recommends)")
    res = apt("apt-get", "install", "-y", "-q", "--no-install-recommends", "qemu-system-x86")
    if res.returncode != 0:
        apt("apt-get", "update", "-q")
        res = apt("apt-get", "install", "-y", "-q", "--no-install-recommends", "qemu-system-x86")
    qemu = shutil.which("qemu-system-x86_64")
    if res.returncode != 0 or not qemu:
        raise Unavailable(f"cannot install qemu-system-x86: {res.stderr.strip()[-500:]}")
    return qemu


def kernel_package() -> tuple[str, str] | None:
    """(package, version) of the kernel linux-image-amd64 depends on, or None if apt can't say."""
    for attempt in range(2):
        dep = apt("apt-cache", "depends", KERNEL_META)
        m = re.search(r"Depends: (linux-image-[0-9][^\s]*)", dep.stdout)
        if m:
            pol = apt("apt-cache", "policy", m.group(1))
            v = re.search(r"Candidate: (\S+)", pol.stdout)
            if v and v.group(1) != "(none)":
                return m.group(1), v.group(1)
        if attempt == 0:
            apt("apt-get", "update", "-q")  # no package lists yet (a fresh container)
    return None


def _closure(dep_lines: dict[str, list[str]], names: list[str]) -> list[str]:
    """Module paths to insmod, each after its dependencies (a depth-first walk of modules.dep)."""
    by_name = {Path(p).name.split(".ko")[0].replace("-", "_"): p for p in dep_lines}
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for d in dep_lines[path]:
            visit(d)
        order.append(path)

    for n in names:
        key = n.replace("-", "_")
        if key not in by_name:
            raise SystemExit(f"v2-kernel: no module {n!r} in the kernel's modules.dep")
        visit(by_name[key])
    return order


def _read_modules_dep(path: Path) -> dict[str, list[str]]:
    out = {}
    for line in path.read_text().splitlines():
        if ":" in line:
            mod, deps = line.split(":", 1)
            out[mod.strip()] = deps.split()
    return out


def ensure_kernel(modules: list[str], refresh: bool = False) -> tuple[Path, Path, list[str]]:
    """The cached kernel: (vmlinuz, modules dir, module paths in load order).

    Fetched once with ``apt-get download`` into CACHE, unpacked with ``dpkg-deb -x``,
    indexed with ``depmod -b``; only vmlinuz, modules.dep and the modules we load are kept
    (the full tree is 400 MB), so another module later means one more unpack of the .deb.
    A cached kernel is used as it is (no apt at all) unless ``refresh`` asks apt for the
    current one.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once prepare the cache once
        ready = sorted(CACHE.glob("*/.ready"))
        pkg = kernel_package() if refresh or not ready else None
        if pkg:
            kdir = CACHE / f"{pkg[0]}_{pkg[1]}"
            if not (kdir / ".ready").exists():
                _fetch(kdir, *pkg)
        elif ready:
            kdir = ready[-1].parent
            if refresh:
                log(f"apt cannot resolve {KERNEL_META}; using the cached {kdir.name}")
        else:
            raise Unavailable(f"apt knows no {KERNEL_META} (no Debian mirror, or not Debian)")
        kver = (kdir / "kver").read_text().strip()
        moddir = kdir / "lib" / "modules" / kver
        order = _closure(_read_modules_dep(moddir / "modules.dep"), modules)
        missing = [m for m in order if not (moddir / m).exists()]
        if missing:  # a module not kept last time: unpack the .deb again for it
            _unpack_modules(kdir, kver, missing)
        return kdir / "vmlinuz", moddir, order


def _fetch(kdir: Path, name: str, version: str) -> None:
    for old in CACHE.iterdir():  # one kernel in the cache: drop older versions
        if old.name != ".lock" and old != kdir:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    kdir.mkdir(parents=True, exist_ok=True)
    if not list(kdir.glob("*.deb")):
        log(f"downloading {name} {version} (apt-get download, once; cached in {CACHE})")
        t0 = time.monotonic()
        # _apt cannot write into root's directory: download as root, without the warning.
        res = apt(
            "apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
            f"{name}={version}", cwd=kdir,
        )  # fmt: skip
        if res.returncode != 0:
            raise Unavailable(f"cannot download {name}: {res.stderr.strip()[-500:]}")
        log(f"downloaded in {time.monotonic() - t0:.1f} s")
    deb = next(kdir.glob("*.deb"))
    with tempfile.TemporaryDirectory(dir=kdir) as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        (kver,) = [p.name for p in (Path(tmp) / "lib" / "modules").iterdir()]
        # kmod's depmod when installed, else busybox's: both write the same modules.dep.
        depmod = shutil.which("depmod")
        cmd = [depmod] if depmod else [str(BUSYBOX), "depmod"]
        subprocess.run([*cmd, "-b", tmp, kver], check=True)
        src = Path(tmp) / "lib" / "modules" / kver
        dst = kdir / "lib" / "modules" / kver
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / "modules.dep", dst / "modules.dep")
        shutil.copy2(next((Path(tmp) / "boot").glob("vmlinuz-*")), kdir / "vmlinuz")
        for m in _closure(_read_modules_dep(dst / "modules.dep"), MODULES):
            (dst / m).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / m, dst / m)
    (kdir / "kver").write_text(kver + "\n")
    (kdir / ".ready").touch()


def _unpack_modules(kdir: Path, kver: str, paths: list[str]) -> None:
    debs = list(kdir.glob("*.deb"))
    if not debs:
        raise SystemExit(f"v2-kernel: {paths} not cached and no .deb; rm -rf {CACHE}")
    with tempfile.TemporaryDirectory(dir=kdir) as tmp:
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), tmp], check=True)
        for m in paths:
            dst = kdir / "lib" / "modules" / kver / m
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(tmp) / "lib" / "modules" / kver / m, dst)


# --- the initramfs -----------------------------------------------------------------------


class Cpio:
    """A newc ("070701") cpio archive, the format the kernel unpacks an initramfs from.

    Written here so device nodes (/dev/console) need no mknod on the host, and no cpio.
    """

    def __init__(self) -> None:
        self.data = bytearray()
        self.ino = 1

    def _add(self, name: str, mode: int, body: bytes = b"", rdev: tuple[int, int] = (0, 0)):
        fields = [self.ino, mode, 0, 0, 1, 0, len(body), 0, 0, *rdev, len(name) + 1, 0]
        self.ino += 1
        self.data += b"070701" + b"".join(b"%08X" % f for f in fields)
        self.data += name.encode() + b"\0"
        self.data += b"\0" * (-len(self.data) % 4)
        self.data += body
        self.data += b"\0" * (-len(self.data) % 4)

    def dir(self, name: str) -> None:
        self._add(name, 0o040755)

    def file(self, name: str, body: bytes, mode: int = 0o644) -> None:
        self._add(name, 0o100000 | mode, body)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._add(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._add("TRAILER!!!", 0)
        return bytes(self.data) + b"\0" * (-len(self.data) % 512)


# Stage 1, /init in the initramfs (busybox sh): load the modules, reach the host's root
# over 9p, make it writable with a tmpfs overlay, mount the kernel filesystems and pure
# cgroup2 inside it, then switch_root into it and run stage 2 with the host's /bin/sh.
STAGE1 = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "clab-v2: $*"; echo "CLAB-V2-EXIT=125"; poweroff -f; }
while read -r m; do insmod "/lib/modules/$m" || fail "insmod $m"; done < /modules.list
mkdir -p /host /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /host \
  || fail "cannot mount the host's root over 9p"
# The overlay's upper layer, and the state dirs: tmpfs (an overlay cannot be the upper
# layer of the overlays containerlab makes, so state and tmp are plain tmpfs).
mount -t tmpfs -o mode=0755 tmpfs /rw && mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
  || fail "cannot mount the overlay over the host's root"
n=/newroot
mount --move /proc $n/proc && mount --move /sys $n/sys && mount --move /dev $n/dev
mount -t cgroup2 -o nsdelegate cgroup2 $n/sys/fs/cgroup || fail "cannot mount cgroup2"
mkdir -p $n/dev/pts $n/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts $n/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $n/dev/shm
for f in fd:/proc/self/fd stdin:/proc/self/fd/0 stdout:/proc/self/fd/1 \
         stderr:/proc/self/fd/2; do ln -sf "${f#*:}" "$n/dev/${f%%:*}"; done
# The command's TMPDIR on a real (virtio) disk when the host gave one, so pytest's tmp_path
# is on a block device the io controller can limit; tmpfs otherwise. Not over /tmp: the
# repository itself may live there (CI clones into a temporary directory).
mkdir -p $n/clab-v2-tmp
if [ -b $n/dev/vda ] && mount -t ext4 $n/dev/vda $n/clab-v2-tmp; then chmod 1777 $n/clab-v2-tmp
else mount -t tmpfs -o mode=1777 tmpfs $n/clab-v2-tmp; fi
mount -t tmpfs -o mode=0755 tmpfs $n/run
mkdir -p $n/var/lib/containerlab && mount -t tmpfs -o mode=0755 tmpfs $n/var/lib/containerlab
# Cgroups as systemd lays them out on a v2 host: every controller enabled at the root,
# PID 1 in init.scope, the command in a service under system.slice (with memory and pids).
cg=$n/sys/fs/cgroup
for c in $(cat $cg/cgroup.controllers); do echo "+$c" > $cg/cgroup.subtree_control; done
mkdir -p $cg/init.scope $cg/system.slice/v2-harness.service
echo "+memory +pids" > $cg/system.slice/cgroup.subtree_control
echo $$ > $cg/init.scope/cgroup.procs
mkdir -p $n/run/clab-v2 && cp /stage2 $n/run/clab-v2/stage2
exec switch_root $n /bin/sh /run/clab-v2/stage2
"""

# Stage 2, PID 1 in the host's root (overlaid): run the command, report, power off.
STAGE2 = r"""#!/bin/sh
exec </dev/null >/dev/console 2>&1
hostname clab-v2
ip link set lo up
cd {repo} || {{ echo "CLAB-V2-EXIT=125"; /bin/busybox poweroff -f; }}
echo {begin}
sh -c 'echo $$ > /sys/fs/cgroup/system.slice/v2-harness.service/cgroup.procs && exec "$@"' \
  sh env -i HOME=/root TERM=dumb LANG=C.UTF-8 TMPDIR=/clab-v2-tmp \
  PATH={repo}/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  CONTAINERLAB_ROOT=/var/lib/containerlab PYTHONDONTWRITEBYTECODE=1 \
  sh -c {command}
rc=$?
echo "CLAB-V2-EXIT=$rc"
sync
/bin/busybox poweroff -f
"""


def build_initramfs(path: Path, moddir: Path, order: list[str], repo: Path, command: str):
    a = Cpio()
    for d in ("bin", "dev", "proc", "sys", "lib", "lib/modules"):
        a.dir(d)
    a.chardev("dev/console", 5, 1)  # the kernel opens it for init before anything is mounted
    a.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    a.file("init", STAGE1.encode(), 0o755)
    stage2 = STAGE2.format(repo=shlex.quote(str(repo)), begin=BEGIN, command=shlex.quote(command))
    a.file("stage2", stage2.encode(), 0o755)
    names = []
    for m in order:
        body = (moddir / m).read_bytes()
        name = Path(m).name
        if name.endswith(".xz"):  # busybox insmod wants plain .ko
            body, name = lzma.decompress(body), name[: -len(".xz")]
        a.file(f"lib/modules/{name}", body)
        names.append(name)
    a.file("modules.list", ("\n".join(names) + "\n").encode())
    path.write_bytes(a.finish())


# --- running QEMU ------------------------------------------------------------------------


def _scratch_disk(tmp: Path) -> Path | None:
    """An empty ext4 image for the guest's /tmp (None without mkfs.ext4: /tmp is tmpfs)."""
    mkfs = shutil.which("mkfs.ext4") or shutil.which("mkfs.ext4", path="/usr/sbin:/sbin")
    if not mkfs:
        return None
    img = tmp / "scratch.img"
    with open(img, "wb") as f:
        f.truncate(SCRATCH_MIB << 20)
    res = subprocess.run([mkfs, "-q", "-F", "-L", "clab-v2-tmp", str(img)], capture_output=True)
    return img if res.returncode == 0 else None


def _die_with_parent() -> None:
    # QEMU dies with this script even if it is SIGKILLed (pytest-timeout, a CI abort).
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_guest(args: argparse.Namespace, command: str) -> int:
    qemu = ensure_qemu()
    t0 = time.monotonic()
    vmlinuz, moddir, order = ensure_kernel(MODULES + args.module, args.refresh)
    t_kernel = time.monotonic() - t0
    tmpdir = tempfile.TemporaryDirectory(prefix="clab-v2-")
    with tmpdir as tmp:
        initrd = Path(tmp) / "initramfs.cpio"
        build_initramfs(initrd, moddir, order, args.repo, command)
        disk = _scratch_disk(Path(tmp))
        append = (
            "console=ttyS0 quiet loglevel=3 panic=-1 cgroup_no_v1=all tsc=reliable "
            # a throwaway VM with no network: skip the speculation mitigations that make
            # every syscall dear under emulation
            "mitigations=off"
        )
        cmd = [
            qemu, "-machine", "q35", "-accel", "tcg", "-cpu", args.cpu,
            "-m", str(args.memory), "-smp", str(args.smp),
            "-nographic", "-no-reboot", "-nic", "none", "-vga", "none",
            "-serial", "stdio", "-monitor", "none",
            "-kernel", str(vmlinuz), "-initrd", str(initrd), "-append", append,
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=passthrough,"
            "readonly=on,multidevs=remap",
            "-device", "virtio-rng-pci",
        ]  # fmt: skip
        if disk:  # cache=unsafe: a scratch disk thrown away at exit needs no flushes
            cmd += ["-drive", f"file={disk},format=raw,if=virtio,cache=unsafe"]
        return _supervise(cmd, args, t0, t_kernel, tmpdir.cleanup)


def _supervise(
    cmd: list[str], args: argparse.Namespace, t0: float, t_kernel: float, loaded: Callable
) -> int:
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    lines: list[str] = []
    began: list[float] = []
    out = open(args.console, "w") if args.console else None  # noqa: SIM115 (closed below)

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            if not lines:
                # QEMU read the kernel and initramfs before the guest printed anything: drop
                # them now, so not even a SIGKILL of this script can leave them behind.
                loaded()
            # SeaBIOS clears the screen with escape sequences: keep the text only
            line = ANSI_RE.sub("", raw.decode(errors="replace")).rstrip("\r\n").replace("\r", "")
            lines.append(line)
            if line.endswith(BEGIN) and not began:
                began.append(time.monotonic())
            if out:
                out.write(line + "\n")
                out.flush()
            if not args.quiet:
                print(line, flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)
        if out:
            out.close()
    end = time.monotonic()
    boot = f"{began[0] - start:.1f} s" if began else "never"
    ran = f"{end - began[0]:.1f} s" if began else "-"
    log(
        f"kernel ready in {t_kernel:.1f} s; boot to command {boot}; command and power-off "
        f"{ran}; total {end - t0:.1f} s"
    )
    if timed_out:
        log(f"timed out after {args.timeout} s; QEMU killed")
        return TIMEOUT
    codes = [m.group(1) for line in lines for m in [EXIT_RE.search(line)] if m]
    rc = int(codes[-1]) if codes else SETUP_FAILED
    if not codes:
        log(f"the guest ended without {EXIT_RE.pattern} (QEMU status {proc.returncode})")
    if rc and args.quiet:  # quiet shows the console only when something went wrong
        print("\n".join(lines[-60:]), file=sys.stderr)
    return rc


def default_command(repo: Path) -> str:
    py = shlex.quote(f"{repo}/.venv/bin/python")
    smoke = shlex.quote(str(HERE / "smoke.py"))
    # The cgroup code, and containers started through the CLI (learners' VMs are pure v2).
    tests = "tests/test_cgroups.py tests/test_run.py"
    return f"{py} {smoke} && {py} {PYTEST} {tests}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Run a command (default: the cgroup tests) on a cgroup v2 kernel in QEMU.",
        epilog="Arguments after -- go to pytest, run in the repo with its venv on the v2 kernel.",
    )
    p.add_argument("--repo", type=Path, default=DEFAULT_REPO, help="the repo (default: this one)")
    p.add_argument("--shell", metavar="CMD", help="run this shell command line instead of pytest")
    p.add_argument("--timeout", type=float, default=600, help="seconds (default 600)")
    p.add_argument("--memory", type=int, default=2048, help="guest MiB (default 2048)")
    p.add_argument("--cpu", default="max", help="QEMU CPU model (default max)")
    p.add_argument("--smp", type=int, default=2, help="guest CPUs (default 2)")
    p.add_argument("--module", action="append", default=[], help="load one more module")
    p.add_argument(
        "--refresh", action="store_true", help="ask apt for the current kernel, not the cached one"
    )
    p.add_argument("--console", type=Path, help="also write the serial console to this file")
    p.add_argument("-q", "--quiet", action="store_true", help="print the console only on error")
    p.add_argument("pytest_args", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.repo = args.repo.resolve()
    if os.geteuid() != 0:
        p.error("needs root (QEMU shares / with the guest as root, read-only)")
    if args.shell and args.pytest_args:
        p.error("give --shell or pytest arguments, not both")
    if args.shell:
        command = args.shell
    elif args.pytest_args:
        py = shlex.quote(f"{args.repo}/.venv/bin/python")
        command = f"{py} {PYTEST} " + shlex.join(args.pytest_args)
    else:
        command = default_command(args.repo)
    # SIGTERM (a CI cancel, the test's own timeout) runs the clean-up like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return run_guest(args, command)
    except Unavailable as e:
        log(f"unavailable: {e}")
        return SKIP
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
