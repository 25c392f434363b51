"""Shared helpers of the bench_*.py scripts: timing, tables, and Docker and Podman run apart.

The benchmarks put containerlab side by side with runc, crun, podman and docker on the same
busybox image. Docker and Podman are not part of the project (setup.sh does not install
them), so each benchmark looks for them, says how to install them when they are missing
(``--install`` installs them with apt), and otherwise skips their column.

Docker and Podman never run in this machine's own mount and network namespaces: a
``Sandbox`` gives them a private pair, so that

- their bridges (docker0, cni-podman0), veths, iptables chains, NAT rules and ip_forward
  live and die in a network namespace of their own, with only a loopback: a container
  started there can reach no outside address, and nothing is left on the host's firewall
  for the project's tests (which may run at the same time) to trip over;
- their mounts (overlay layers, netns bind mounts, shm) go away with the namespace;
- the host's cgroup2 mount at /sys/fs/cgroup/unified (a v1/v2 hybrid, as on the CI machine)
  is hidden from them: crun refuses hybrid hosts that mount cgroup2 there.

What does leak out of a namespace is removed on the way out: cgroups they created (docker/,
libpod_parent/, ...) and orphaned processes (conmon, containerd-shim), which this process
adopts as a child subreaper and reaps, since PID 1 may not reap on some machines.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLI = str(Path(sys.executable).parent / "containerlab")

# Debian package of each outside tool a benchmark may compare against.
PACKAGES = {
    "runc": "runc",
    "crun": "crun",
    "podman": "podman",
    "dockerd": "docker.io",
    "docker": "docker.io",
}

# Cgroup names Docker and Podman create with the cgroupfs driver (and systemd's slices).
FOREIGN_CGROUPS = ("docker", "libpod_parent", "machine.slice", "conmon", "libpod")


# --- running and timing ---------------------------------------------------------------------
def python_as_installed(work: Path) -> None:
    """Let the containerlab CLI run as an installed package does: with compiled bytecode.

    This machine's environment may set PYTHONDONTWRITEBYTECODE; with a source tree newer
    than its __pycache__, every CLI run would then compile the package again (~150 ms).
    The bytecode goes to ``work`` (the warm-up run writes it), not into the source tree.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")


def need_root(script: str) -> None:
    if os.geteuid() != 0:
        sys.exit(f"{script} needs root (sudo)")


def run(cmd: Sequence[str], **kw) -> subprocess.CompletedProcess:
    """Run a command, raising with its stderr (not just its exit code) when it fails."""
    p = subprocess.run(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    if p.returncode:
        err = p.stderr.decode(errors="replace").strip()[-2000:]
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {p.returncode}: {err}")
    return p


def timed(cmd: Sequence[str], **kw) -> float:
    """Seconds one run of ``cmd`` takes (output discarded)."""
    t0 = time.perf_counter()
    run(cmd, **kw)
    return time.perf_counter() - t0


def timed_call(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def command(cmd: Sequence[str], env: dict[str, str] | None = None) -> Callable[[], object]:
    """A callable running ``cmd``: what ``alternate`` times."""
    return lambda: run(cmd, env=env)


def alternate(
    tools: dict[str, Callable[[], object]], runs: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Time each tool ``runs`` times, interleaved (forward, then backward), after warm-up.

    Interleaving spreads the machine's changing load (other test runs) over every tool
    alike, and reversing the order each round cancels "who runs right after whom".
    """
    for fn in tools.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {t: [] for t in tools}
    order = list(tools.items())
    for i in range(runs):
        for name, fn in order if i % 2 == 0 else reversed(order):
            times[name].append(timed_call(fn))
        reap_orphans()
    return times


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def print_table(times: dict[str, list[float]], skipped: dict[str, str] | None = None) -> None:
    """A markdown table: median and minimum of each tool's runs, then the skipped ones."""
    print("| command | median | min |")
    print("|---|---|---|")
    for name, xs in times.items():
        print(f"| {name} | {ms(statistics.median(xs))} | {ms(min(xs))} |")
    for name, why in (skipped or {}).items():
        print(f"| {name} | skipped: {why} | |")


# --- outside tools --------------------------------------------------------------------------
def missing(binaries: Sequence[str], install: bool) -> str | None:
    """None when every binary is on PATH (installing their packages first if ``install``),
    else the apt command that would bring them."""
    absent = [b for b in binaries if not shutil.which(b)]
    if not absent:
        return None
    pkgs = sorted({PACKAGES.get(b, b) for b in absent})
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *pkgs]
    if install:
        print(f"installing {' '.join(pkgs)}: {' '.join(cmd)}", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode:
            subprocess.run(["apt-get", "update", "-qq"], env=env)
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL)
        absent = [b for b in binaries if not shutil.which(b)]
        if not absent:
            return None
    return f"not installed ({' '.join(cmd)}, or pass --install)"


# --- orphans and cgroups --------------------------------------------------------------------
def become_subreaper() -> None:
    """Adopt orphaned descendants (conmon and containerd-shim double-fork away from their
    parent), so that they are reaped here rather than left as zombies under a PID 1 that
    may not reap."""
    from containerlab import syscalls

    syscalls.set_child_subreaper()


def _children() -> dict[int, str]:
    """This process's children and their state letter."""
    me, out = os.getpid(), {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            out[int(entry)] = fields[0]
    return out


def reap_orphans(keep: Sequence[int] = (), wait: float = 0) -> None:
    """Reap the zombies among this process's children (except ``keep``, which a Popen
    object will wait for); with ``wait``, give the others that long to exit first."""
    deadline = time.monotonic() + wait
    while True:
        children = {p: st for p, st in _children().items() if p not in keep}
        for pid, st in children.items():
            if st == "Z":
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
        if all(st == "Z" for st in children.values()) or time.monotonic() >= deadline:
            return
        time.sleep(0.05)


def cgroup_dirs() -> set[Path]:
    """Every cgroup directory of every mounted hierarchy (v1 controllers and v2)."""
    out: set[Path] = set()
    with open("/proc/self/mounts") as f:
        roots = [line.split()[1] for line in f if line.split()[2] in ("cgroup", "cgroup2")]
    for root in roots:
        for d, subdirs, _files in os.walk(root):
            out.update(Path(d) / s for s in subdirs)
    return out


def remove_foreign_cgroups(before: set[Path]) -> list[Path]:
    """rmdir the cgroups Docker or Podman made since ``before`` (deepest first); the
    project's own (clab*) and anything that existed before are never touched."""
    removed = []
    for d in sorted(cgroup_dirs() - before, key=lambda p: len(p.parts), reverse=True):
        if any(part.startswith(FOREIGN_CGROUPS) for part in d.parts[4:]):
            try:
                d.rmdir()
                removed.append(d)
            except OSError as e:
                print(f"warning: cgroup {d} not removed: {e}", file=sys.stderr)
    return removed


# --- the sandbox ----------------------------------------------------------------------------
def _ns(pid: int | str, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


class Sandbox:
    """A private mount + network namespace, held by a sleeping process, for docker/podman.

    Inside: only a loopback interface; tmpfs over /run, /dev/shm, /etc/docker, /var/lib/cni
    and /var/lib/containers (so sockets, netns files, shm locks, dockerd's key.json, CNI
    leases and podman's blob cache stay inside); the hybrid host's cgroup2 mount unmounted.
    ``prefix`` runs a command in it.
    """

    SHADOW = ("/run", "/dev/shm", "/etc/docker", "/var/lib/cni", "/var/lib/containers")

    def __init__(self) -> None:
        self.holder: subprocess.Popen | None = None
        self._made: list[Path] = []
        self._cgroups: set[Path] = set()

    @property
    def prefix(self) -> list[str]:
        assert self.holder is not None
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", "--"]

    def __enter__(self) -> Sandbox:
        become_subreaper()
        self._cgroups = cgroup_dirs()
        for d in map(Path, self.SHADOW):
            # A mount point must exist: make it (and missing parents), remove them after.
            missing_dirs = [p for p in (d, *d.parents) if not p.exists()]
            for p in reversed(missing_dirs):
                p.mkdir()
                self._made.append(p)
        mounts = " && ".join(
            f"mount -t tmpfs -o mode={'1777' if d == '/dev/shm' else '755'} bench {d}"
            for d in self.SHADOW
        )
        script = (
            "set -e; "
            "if grep -q ' /sys/fs/cgroup/unified cgroup2 ' /proc/mounts; "
            "then umount /sys/fs/cgroup/unified; fi; "
            f"ip link set lo up && {mounts} && echo ready && exec sleep infinity"
        )
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.holder.stdout.readline().strip() != "ready":
            self.__exit__(None, None, None)
            raise RuntimeError("the sandbox namespace could not be set up")
        return self

    def pids(self) -> list[int]:
        """Processes in the sandbox's mount namespace, the holder excluded."""
        assert self.holder is not None
        mine = _ns(self.holder.pid, "mnt")
        return [
            int(p)
            for p in os.listdir("/proc")
            if p.isdigit() and int(p) != self.holder.pid and _ns(p, "mnt") == mine
        ]

    def __exit__(self, *exc) -> None:
        if self.holder is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                for pid in self.pids():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
                deadline = time.monotonic() + 10
                while self.pids() and time.monotonic() < deadline:
                    reap_orphans(keep=[self.holder.pid])
                    time.sleep(0.1)
            self.holder.kill()
            self.holder.wait()
            self.holder.stdout.close()
            reap_orphans()
        # The namespace is gone with its last process: its mounts, links and rules with it.
        remove_foreign_cgroups(self._cgroups)
        for d in reversed(self._made):
            with contextlib.suppress(OSError):
                d.rmdir()


# --- the busybox image for docker and podman ------------------------------------------------
def busybox_archive(work: Path) -> Path:
    """The project's offline busybox image as a `docker save` tarball (nothing pulled).

    Uses the containerlab store of ``CONTAINERLAB_ROOT`` (the caller's), making the base
    image there first if needed.
    """
    from containerlab.image import base
    from containerlab.image.store import Store

    base.ensure_base_image(Store())
    out = work / "busybox.tar"
    if not out.exists():
        run([CLI, "save", "busybox", "-o", str(out)])
    return out


@dataclass
class Engine:
    """How to call one engine's CLI: ``engine(subcommand, ...)`` is the argv, run with
    ``engine.env``; the CLI runs inside the sandbox, as the daemon does."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    # The argv that builds with BuildKit (docker only); None when no BuildKit client exists.
    build_argv: list[str] | None = None
    version: str = ""

    def __call__(self, *args: str) -> list[str]:
        return [*self.argv, *args]

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return run(self(*args), env=self.env, timeout=300)

    def out(self, *args: str) -> str:
        p = subprocess.run(self(*args), capture_output=True, text=True, env=self.env)
        return p.stdout.strip()


def _docker_build_cli(env: dict[str, str]) -> str | None:
    """A docker CLI that builds with BuildKit: one with the buildx plugin, else a 20.10 or
    older CLI (BuildKit built in; Debian 12's docker.io ships /usr/bin/docker), else None.

    A docker 23+ CLI without buildx refuses ``DOCKER_BUILDKIT=1 docker build``.
    """
    for cli in dict.fromkeys(filter(None, [shutil.which("docker"), "/usr/bin/docker"])):
        if not os.access(cli, os.X_OK):
            continue
        if subprocess.run([cli, "buildx", "version"], capture_output=True, env=env).returncode == 0:
            return cli
        v = subprocess.run(
            [cli, "version", "-f", "{{.Client.Version}}"], capture_output=True, text=True, env=env
        ).stdout.strip()
        with contextlib.suppress(ValueError):
            if int(v.split(".")[0]) < 23:
                return cli
    return None


@contextlib.contextmanager
def docker_daemon(work: Path, sandbox: Sandbox, busybox: Path) -> Iterator[Engine]:
    """A private dockerd (with the containerd it starts itself) inside ``sandbox``: data
    root, exec root, pidfile and socket under ``work``, default settings otherwise (docker0
    bridge, iptables, overlay2, runc), the busybox archive loaded. Containers removed and
    the daemon stopped on the way out (the sandbox takes its bridge, rules and mounts)."""
    d = work / "docker"  # short: containerd's socket path must fit in 108 bytes
    d.mkdir()
    (d / "daemon.json").write_text("{}")  # not /etc/docker/daemon.json
    sock = d / "docker.sock"
    with open(d / "dockerd.log", "wb") as log:  # the daemon holds its own copy
        daemon = subprocess.Popen(
            [
                *sandbox.prefix,
                "dockerd",
                "--config-file", str(d / "daemon.json"),
                "--data-root", str(d / "data"),
                "--exec-root", str(d / "exec"),
                "--pidfile", str(d / "dockerd.pid"),
                "-H", f"unix://{sock}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(d / "config")}
    docker = Engine("docker", [*sandbox.prefix, shutil.which("docker") or "docker"], env)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(docker("version"), capture_output=True, env=env).returncode:
            if daemon.poll() is not None or time.monotonic() > deadline:
                tail = (d / "dockerd.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"dockerd did not start:\n{tail}")
            time.sleep(0.2)
        docker.run("load", "-i", str(busybox))
        cli = _docker_build_cli(env)
        docker.build_argv = [*sandbox.prefix, cli] if cli else None
        docker.version = "dockerd " + docker.out("version", "-f", "{{.Server.Version}}")
        yield docker
    finally:
        if daemon.poll() is None:
            ids = docker.out("ps", "-aq").split()
            if ids:
                subprocess.run(docker("rm", "-f", *ids), capture_output=True, env=env)
            daemon.terminate()  # dockerd stops its containerd, then exits
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        reap_orphans()


@contextlib.contextmanager
def podman_engine(
    work: Path, sandbox: Sandbox, busybox: Path, runtime: str = "crun"
) -> Iterator[Engine]:
    """podman with a private storage root, run root, tmp dir and configuration under
    ``work`` (nothing in /var/lib/containers), run inside ``sandbox``, the busybox archive
    loaded.

    The cgroupfs manager (no systemd here), file events (no journald), CNI networking (what
    Debian 12's podman uses), and no registry to search: a short name resolves to the
    loaded image or fails, never to a pull.
    """
    d = work / "podman"
    d.mkdir()
    (d / "registries.conf").write_text("unqualified-search-registries = []\n")
    (d / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{d}/root"\nrunroot = "{d}/run"\n'
    )
    # Podman sets a container's open-files and process limits to 1048576; where root lacks
    # CAP_SYS_RESOURCE (some sandboxed machines) the runtime's setrlimit then fails with
    # EPERM. So: the current hard limits, as docker's containers inherit them, the process
    # limit no higher than pid_max (podman caps its own, and so conmon's, there).
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    nproc = pid_max if nproc == resource.RLIM_INFINITY else min(nproc, pid_max)
    ulimits = f'"nproc={nproc}:{nproc}"'
    if nofile != resource.RLIM_INFINITY:
        ulimits += f', "nofile={nofile}:{nofile}"'
    (d / "containers.conf").write_text(
        f"[containers]\ndefault_ulimits = [{ulimits}]\n"
        f'[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        f'events_logfile_path = "{d}/events.log"\ntmp_dir = "{d}/tmp"\n'
        f'runtime = "{runtime}"\n[network]\nnetwork_backend = "cni"\n'
    )
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(d / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(d / "storage.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(d / "registries.conf"),
        "XDG_CONFIG_HOME": str(d / "config"),  # not ~/.config/containers
    }
    podman = Engine(
        "podman",
        [
            *sandbox.prefix,
            "podman",
            "--root", f"{d}/root",
            "--runroot", f"{d}/run",
            "--tmpdir", f"{d}/tmp",
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
            "--runtime", runtime,
        ],
        env,
    )  # fmt: skip
    try:
        podman.run("load", "-i", str(busybox))
        podman.version = f"podman {podman.out('version', '-f', '{{.Version}}')} ({runtime})"
        yield podman
    finally:
        subprocess.run(podman("rm", "-af", "-t", "0"), capture_output=True, env=env)
        # Unmounts the image layers; the rest goes with the sandbox and the work dir.
        subprocess.run(podman("system", "reset", "-f"), capture_output=True, env=env)
        reap_orphans()


def engines(
    stack: contextlib.ExitStack,
    work: Path,
    which: Sequence[str] = ("podman", "docker"),
    install: bool = False,
    podman_runtime: str = "crun",
) -> tuple[Sandbox | None, dict[str, Engine], dict[str, str]]:
    """Start the engines that can run here, in one sandbox, all undone by ``stack``.

    Returns the sandbox (None when no engine is installed), {name: engine}, and {name: why
    it is skipped}. ``work`` holds their data; ``CONTAINERLAB_ROOT`` must be set (the
    busybox image comes from that store).
    """
    found: dict[str, Engine] = {}
    skipped: dict[str, str] = {}
    need = {"podman": ["podman", podman_runtime], "docker": ["dockerd", "docker"]}
    wanted = []
    for name in which:
        why = missing(need[name], install)
        if why:
            skipped[name] = why
        else:
            wanted.append(name)
    if not wanted:
        return None, found, skipped
    busybox = busybox_archive(work)
    sandbox = stack.enter_context(Sandbox())
    for name in wanted:
        try:
            if name == "docker":
                found[name] = stack.enter_context(docker_daemon(work, sandbox, busybox))
            else:
                found[name] = stack.enter_context(
                    podman_engine(work, sandbox, busybox, runtime=podman_runtime)
                )
        except RuntimeError as e:
            skipped[name] = f"cannot run here: {str(e).splitlines()[0][:300]}"
            print(f"{name}: {e}", file=sys.stderr)
    return sandbox, found, skipped


# --- memory ---------------------------------------------------------------------------------
def pss_kb(pid: int) -> int:
    """Proportional set size of a process (shared pages split among their users), in kB."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def cmdline(pid: int, words: int = 4) -> str:
    """The first words of a process's command line, the venv's bin dir left out."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    argv = [os.path.basename(argv[0]), *argv[1:words]] if argv else ["?"]
    return " ".join(argv)
