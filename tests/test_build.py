"""The builder end to end: every Dockerfile instruction, the cache, .dockerignore, multi-stage,
push to the local registry, and malformed Dockerfiles that must build nothing.

Real containers run each RUN; files are checked in the built image's filesystem, mounted
read-only from the store (faster than a container per check) and through ``run``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerlab.build import builder, steps
from containerlab.build.snapshot import Snapshot
from containerlab.errors import BuildError
from containerlab.image.store import Store

CLI = os.path.join(os.path.dirname(sys.executable), "containerlab")


def clab(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert res.returncode == 0, f"containerlab {' '.join(args)}: {res.stdout}{res.stderr}"
    return res


def context(tmp_path: Path, dockerfile: str, files: dict[str, str | bytes] | None = None) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, content in (files or {}).items():
        p = ctx / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    return ctx


@contextlib.contextmanager
def image_fs(ref: str) -> Iterator[Path]:
    """The image's merged filesystem, read-only."""
    store = Store()
    with steps.mounted(store, Snapshot.of(store.image(ref))) as root:
        assert root is not None
        yield root


def config(ref: str) -> dict:
    return json.loads(clab("inspect", "-f", "{{json .Config}}", ref).stdout)


def nothing_running() -> None:
    assert clab("ps", "-aq").stdout.strip() == ""


# --- every instruction ------------------------------------------------------------------------
EVERYTHING = """\
# syntax=docker/dockerfile:1
ARG BASE=busybox
ARG UNUSED_AFTER_FROM=global
FROM --platform=$BUILDPLATFORM ${BASE} AS base
ARG GREETING=hello
ARG UNUSED_AFTER_FROM
ENV APP_HOME=/srv/app \\
    MODE=prod
WORKDIR /srv
WORKDIR app
LABEL org.example.team="builders" version=1
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD wget -q -O- http://localhost:8080/ || exit 1
RUN echo "$GREETING from $APP_HOME in $(pwd) [$UNUSED_AFTER_FROM]" > greeting.txt \\
    && echo streamed-line
RUN ["/bin/sh", "-c", "echo exec-form > /exec.txt"]
COPY a.txt b.txt ./
COPY conf/ /etc/myconf/
COPY conf /etc/conf2
COPY a.txt /opt/renamed.txt
COPY a.txt /opt/dir/
COPY *.md /docs/
COPY --chown=nobody a.txt /own/name.txt
COPY --chown=1234:5678 a.txt /own/num.txt
COPY --chown=1234 a.txt /own/uidonly.txt
COPY --chmod=0640 a.txt /own/mode.txt
COPY a.txt rel/
ADD payload.tar /unpacked/
ADD payload.tar.gz /unpacked-gz
ADD notatar.tar zeros.img /opt/
RUN rm /srv/app/b.txt && rm -r /etc/conf2
SHELL ["/bin/sh", "-x", "-c"]
RUN echo via-shell > /shell.txt
USER nobody
RUN id -u > /tmp/uid
ENTRYPOINT ["/bin/echo", "entry:"]
"""


def _tar(files: dict[str, bytes], gz: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_every_instruction_through_the_cli(tmp_path: Path):
    ctx = context(
        tmp_path,
        EVERYTHING,
        {
            "a.txt": "A\n",
            "b.txt": "B\n",
            "conf/x.conf": "x=1\n",
            "conf/sub/y.conf": "y=2\n",
            "README.md": "readme\n",
            "NOTES.md": "notes\n",
            "doc/nested.md": "not matched by *.md\n",
            "payload.tar": _tar({"inner/file.txt": b"from tar\n"}, gz=False),
            "payload.tar.gz": _tar({"gz.txt": b"from gz\n"}, gz=True),
            "notatar.tar": "just text named .tar\n",
            "zeros.img": bytes(4096),
        },
    )
    res = clab("build", "-t", "every:1", "--build-arg", "GREETING=bonjour", str(ctx))
    out = res.stdout
    steps_total = EVERYTHING.count("\n") - 5  # minus the 3 lines before FROM, 2 continuations
    assert f"[1/{steps_total}] FROM" in out and f"[{steps_total}/{steps_total}] ENTRYPOINT" in out
    assert "streamed-line" in out  # RUN output is shown
    assert "+ echo via-shell" in out  # the SHELL's -x traced the next RUN
    image_id = clab("inspect", "-f", "{{.Id}}", "every:1").stdout.strip()
    assert out.rstrip().splitlines()[-2].endswith(image_id)  # the final id is printed

    cfg = config("every:1")
    assert cfg["WorkingDir"] == "/srv/app"
    assert "APP_HOME=/srv/app" in cfg["Env"] and "MODE=prod" in cfg["Env"]
    assert not any(e.startswith("GREETING=") for e in cfg["Env"])  # ARGs stay out of the image
    assert cfg["Labels"] == {"org.example.team": "builders", "version": "1"}
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["Volumes"] == {"/data": {}}
    assert cfg["StopSignal"] == "SIGQUIT"
    assert cfg["Shell"] == ["/bin/sh", "-x", "-c"]
    assert cfg["User"] == "nobody"
    assert cfg["Entrypoint"] == ["/bin/echo", "entry:"]
    assert not cfg.get("Cmd")  # ENTRYPOINT dropped busybox's CMD ["sh"]
    health = json.loads(clab("inspect", "-f", "{{json .Config.Healthcheck}}", "every:1").stdout)
    assert health == {
        "Test": ["CMD-SHELL", "wget -q -O- http://localhost:8080/ || exit 1"],
        "Interval": 5_000_000_000,
        "Timeout": 2_000_000_000,
        "Retries": 4,
    }

    with image_fs("every:1") as root:
        assert (
            root / "srv/app/greeting.txt"
        ).read_text() == "bonjour from /srv/app in /srv/app [global]\n"
        assert (root / "exec.txt").read_text() == "exec-form\n"
        assert (root / "srv/app/a.txt").read_text() == "A\n"
        assert not (root / "srv/app/b.txt").exists()  # removed by a later RUN
        assert (root / "etc/myconf/x.conf").read_text() == "x=1\n"  # a dir's contents...
        assert (root / "etc/myconf/sub/y.conf").read_text() == "y=2\n"
        assert not (root / "etc/myconf/conf").exists()  # ...not the dir itself
        assert not (root / "etc/conf2").exists()  # rm -r in a RUN
        assert (root / "opt/renamed.txt").read_text() == "A\n"  # file to file
        assert (root / "opt/dir/a.txt").read_text() == "A\n"  # file into dir/
        assert sorted(p.name for p in (root / "docs").iterdir()) == ["NOTES.md", "README.md"]
        own = {n: (root / "own" / n).stat() for n in ("name.txt", "num.txt", "uidonly.txt")}
        assert (own["name.txt"].st_uid, own["name.txt"].st_gid) == (65534, 65534)
        assert (own["num.txt"].st_uid, own["num.txt"].st_gid) == (1234, 5678)
        assert (own["uidonly.txt"].st_uid, own["uidonly.txt"].st_gid) == (1234, 1234)
        assert (root / "own/mode.txt").stat().st_mode & 0o7777 == 0o640
        assert (root / "srv/app/rel/a.txt").read_text() == "A\n"  # relative dest: WORKDIR
        assert (root / "unpacked/inner/file.txt").read_text() == "from tar\n"
        assert (root / "unpacked-gz/gz.txt").read_text() == "from gz\n"
        assert (root / "opt/notatar.tar").read_text() == "just text named .tar\n"
        assert not (root / "unpacked/payload.tar").exists()
        assert (root / "opt/zeros.img").read_bytes() == bytes(4096)  # not an (empty) tar
        assert (root / "shell.txt").read_text() == "via-shell\n"
        assert (root / "tmp/uid").read_text() == "65534\n"  # USER applies to later RUNs
        assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777  # parents keep their modes

    # the deletion is a whiteout in the RUN's layer
    store = Store()
    image = store.image("every:1")
    names: list[str] = []
    rm_layer = image.layers[-3]  # rm, (SHELL), via-shell, (USER), id -u, (ENTRYPOINT)
    with store.open_blob(rm_layer["digest"]) as f, tarfile.open(fileobj=f) as t:
        names = t.getnames()
    assert "srv/app/.wh.b.txt" in names and "etc/.wh.conf2" in names

    history = clab("history", "--no-trunc", "every:1").stdout
    assert "WORKDIR /srv/app" in history
    assert "/bin/sh -x -c echo via-shell > /shell.txt" in history
    assert "|2 GREETING=bonjour UNUSED_AFTER_FROM=global /bin/sh -c echo" in history

    # ENTRYPOINT + run's arguments, as the USER from the image
    assert clab("run", "--rm", "every:1", "hi").stdout == "entry: hi\n"
    nothing_running()


def test_entrypoint_and_cmd_interplay(tmp_path: Path):
    store = Store()
    lines: list[str] = []
    ctx = context(
        tmp_path,
        "FROM busybox AS only_entry\nENTRYPOINT echo entry\n"
        'FROM busybox AS entry_then_cmd\nENTRYPOINT ["echo"]\nCMD ["default"]\n'
        'FROM busybox AS cmd_then_entry\nCMD ["kept"]\nENTRYPOINT ["echo"]\n'
        'FROM only_entry AS inherits\nCMD ["x"]\n',
    )
    results = {}
    for stage in ("only_entry", "entry_then_cmd", "cmd_then_entry", "inherits"):
        results[stage] = builder.build(
            ctx,
            target=stage,
            tags=(f"ec:{stage.replace('_', '-')}",),
            out=lines.append,
            store=store,
        )
    run = {s: store.image(r.digest).run_config for s, r in results.items()}
    assert run["only_entry"]["Entrypoint"] == ["/bin/sh", "-c", "echo entry"]
    assert not run["only_entry"].get("Cmd")
    assert run["entry_then_cmd"]["Cmd"] == ["default"]
    assert run["cmd_then_entry"]["Cmd"] == ["kept"]  # a CMD of this stage survives ENTRYPOINT
    assert run["inherits"]["Entrypoint"] == ["/bin/sh", "-c", "echo entry"]
    assert run["inherits"]["Cmd"] == ["x"]
    # the same on a cache hit: the CMD step comes from the cache, the ENTRYPOINT is new
    (ctx / "Dockerfile").write_text('FROM busybox\nCMD ["kept"]\nENTRYPOINT ["printf"]\n')
    r = builder.build(ctx, out=lines.append, store=store)
    assert r.steps[1].cached and not r.steps[2].cached
    assert store.image(r.digest).run_config["Cmd"] == ["kept"]
    assert clab("run", "--rm", "ec:entry-then-cmd").stdout == "default\n"


def test_run_output_streams_while_the_step_runs(tmp_path: Path):
    seen: list[tuple[float, str]] = []
    ctx = context(tmp_path, "FROM busybox\nRUN echo first; sleep 1; echo second\n")
    builder.build(ctx, out=lambda line: seen.append((time.monotonic(), line)), no_cache=True)
    when = {line.strip(): t for t, line in seen}
    assert when["second"] - when["first"] > 0.7  # "first" arrived before the sleep ended
    nothing_running()


# --- multi-stage ------------------------------------------------------------------------------
MULTI = """\
FROM busybox AS compiler
RUN mkdir /out && head -c 300000 /dev/zero > /toolchain.bin \\
    && printf '#!/bin/sh\\necho built app\\n' > /out/app && chmod 755 /out/app
FROM busybox AS tests
RUN echo never built > /tests.txt
FROM busybox
COPY --from=compiler /out/app /usr/local/bin/app
CMD ["app"]
"""


def test_multi_stage_leaves_the_compiler_behind(tmp_path: Path):
    ctx = context(tmp_path, MULTI)
    out = clab("build", "-t", "app:final", str(ctx)).stdout
    assert "never built" not in out and "/tests.txt" not in out  # an unneeded stage is skipped
    assert clab("run", "--rm", "app:final").stdout == "built app\n"
    store = Store()
    final = store.image("app:final")
    base = store.image("busybox")
    assert len(final.layers) == len(base.layers) + 1  # busybox + the COPY, nothing else
    with image_fs("app:final") as root:
        assert not (root / "toolchain.bin").exists() and not (root / "out").exists()
    # --target stops at the compiler: its files are there
    clab("build", "-q", "-t", "app:compiler", "--target", "compiler", str(ctx))
    compiler = store.image("app:compiler")
    assert compiler.layers[-1]["digest"] not in {d["digest"] for d in final.layers}
    with image_fs("app:compiler") as root:
        assert (root / "toolchain.bin").stat().st_size == 300000
        assert not (root / "usr/local/bin/app").exists()
    res = clab("build", "--target", "nosuch", str(ctx), check=False)
    assert res.returncode != 0 and "target stage 'nosuch' could not be found" in res.stderr


# --- the cache --------------------------------------------------------------------------------
CACHED = """\
FROM busybox
COPY a.txt /a.txt
RUN cat /a.txt > /a.copy
COPY b.txt /b.txt
RUN cat /b.txt > /b.copy
CMD ["cat", "/b.copy"]
"""


def test_cache_hits_misses_on_content_not_mtime(tmp_path: Path):
    store = Store()
    ctx = context(tmp_path, CACHED, {"a.txt": "a\n", "b.txt": "b1\n"})
    log: list[str] = []
    first = builder.build(ctx, tags=("cache:1",), out=log.append, store=store)
    assert not any(s.cached for s in first.steps[1:])

    t0 = time.monotonic()
    again = builder.build(ctx, tags=("cache:1",), out=log.append, store=store)
    elapsed = time.monotonic() - t0
    assert all(s.cached for s in again.steps) and again.digest == first.digest
    assert elapsed < max(0.5, sum(s.seconds for s in first.steps) / 2)
    assert sum("CACHED" in line for line in log[-8:]) == 5

    # a new mtime, the same content: still all cached
    os.utime(ctx / "a.txt", (1, 1))
    os.utime(ctx / "b.txt")
    touched = builder.build(ctx, out=log.append, store=store)
    assert all(s.cached for s in touched.steps) and touched.digest == first.digest

    # b.txt's content changes: everything from its COPY on runs again
    (ctx / "b.txt").write_text("b2\n")
    changed = builder.build(ctx, tags=("cache:2",), out=log.append, store=store)
    assert [s.cached for s in changed.steps] == [True, True, True, False, False, False]
    assert clab("run", "--rm", "cache:2").stdout == "b2\n"
    assert clab("run", "--rm", "cache:1").stdout == "b1\n"

    # --no-cache: every step runs again (and the result is still right)
    fresh = builder.build(ctx, no_cache=True, out=log.append, store=store)
    assert not any(s.cached for s in fresh.steps[1:])
    res = clab("build", str(ctx))
    assert res.stdout.count("CACHED") == 5

    # builder prune forgets the cache
    assert "Removed" in clab("builder", "prune").stdout
    assert "CACHED" not in clab("build", str(ctx)).stdout


def test_dockerignore(tmp_path: Path):
    ctx = context(
        tmp_path,
        "FROM busybox\nCOPY . /app\nRUN ls -a /app > /listing\n",
        {
            ".dockerignore": "*.log\n!keep.log\nsecret/\n**/*.tmp\nDockerfile\n",
            "main.py": "print()\n",
            "debug.log": "noise\n",
            "keep.log": "kept\n",
            "secret/key": "k\n",
            "pkg/mod.py": "x = 1\n",
            "pkg/cache.tmp": "tmp\n",
        },
    )
    store = Store()
    builder.build(ctx, tags=("ign:1",), out=lambda _l: None, store=store)
    with image_fs("ign:1") as root:
        app = root / "app"
        present = sorted(str(p.relative_to(app)) for p in app.rglob("*"))
    assert present == [".dockerignore", "keep.log", "main.py", "pkg", "pkg/mod.py"]
    # ignored files do not affect the cache, the others do
    (ctx / "debug.log").write_text("more noise\n")
    (ctx / "secret/key").write_text("rotated\n")
    (ctx / "pkg/cache.tmp").write_text("tmp2\n")
    r = builder.build(ctx, out=lambda _l: None, store=store)
    assert all(s.cached for s in r.steps)
    (ctx / "keep.log").write_text("kept2\n")
    r = builder.build(ctx, out=lambda _l: None, store=store)
    assert [s.cached for s in r.steps] == [True, False, False]


def test_copy_from_an_image_and_heredoc(tmp_path: Path):
    ctx = context(
        tmp_path,
        "FROM scratch\n"
        "COPY --from=busybox:latest /bin/busybox /bin/busybox\n"
        "COPY <<EOF /etc/motd\nhello $NAME\nEOF\n"
        "COPY <<one.txt <<two.txt /notes/\nfirst\none.txt\nsecond\ntwo.txt\n"
        'CMD ["/bin/busybox", "cat", "/etc/motd", "/notes/one.txt", "/notes/two.txt"]\n',
    )
    clab("build", "-q", "-t", "scratchy:1", str(ctx))
    assert len(Store().image("scratchy:1").layers) == 3
    with image_fs("scratchy:1") as root:
        assert (root / "bin/busybox").stat().st_mode & 0o111
        assert (root / "etc/motd").read_text() == "hello \n"  # $NAME is unset
        assert (root / "notes/one.txt").read_text() == "first\n"
        assert (root / "notes/two.txt").read_text() == "second\n"
        assert (root / "etc/motd").stat().st_mode & 0o777 == 0o644


# --- push to the local registry ---------------------------------------------------------------
def test_built_image_is_pushed_and_read_by_skopeo(tmp_path: Path, registry: str):
    ctx = context(
        tmp_path, 'FROM busybox\nRUN echo x > /x\nCOPY a.txt /\nCMD ["cat", "/x"]\n', {"a.txt": "a"}
    )
    ref = f"{registry}/build/app:1"
    clab("build", "-q", "-t", ref, str(ctx))
    assert "digest: sha256:" in clab("push", ref).stdout
    skopeo = ["skopeo", "inspect", "--tls-verify=false"]
    info = json.loads(
        subprocess.run(
            [*skopeo, f"docker://{ref}"], capture_output=True, text=True, check=True
        ).stdout
    )
    raw = json.loads(
        subprocess.run(
            [*skopeo, "--config", f"docker://{ref}"], capture_output=True, text=True, check=True
        ).stdout
    )
    local = Store().image(ref)
    assert len(info["Layers"]) == len(local.layers) == len(Store().image("busybox").layers) + 2
    assert raw["config"]["Cmd"] == ["cat", "/x"]
    assert [h["created_by"] for h in raw["history"]] == [
        h["created_by"] for h in local.config["history"]
    ]


# --- malformed Dockerfiles build nothing ------------------------------------------------------
BAD = {
    "unknown instruction": ("FROM busybox\nRUN true\nFETCH http://x\n", 3, "unknown instruction"),
    "unterminated quote": ('FROM busybox\nENV A="open\n', 2, "quote"),
    "unterminated heredoc": ("FROM busybox\nRUN <<EOF\necho hi\n", 2, "EOF"),
    "bad json in SHELL": ('FROM busybox\nSHELL ["/bin/sh", "-c"\n', 2, "SHELL"),
    "missing copy source": ("FROM busybox\nRUN true\nCOPY nothere.txt /x\n", 3, "nothere.txt"),
    "malformed chown": ("FROM busybox\nCOPY --chown=a:b:c a.txt /x\n", 2, "--chown"),
    "unknown chown user": ("FROM busybox\nRUN true\nCOPY --chown=ghost a.txt /x\n", 3, "ghost"),
    "run exits 3": ("FROM busybox\nRUN echo before\nRUN echo out; exit 3\nCMD x\n", 3, "3"),
    "wrong platform": ("FROM --platform=linux/s390x busybox\nRUN true\n", 1, "platform"),
    "unknown base": ("FROM nosuchimage:1\nRUN true\n", 1, "nosuchimage"),
    "add from a url": ("FROM busybox\nADD https://127.0.0.1:1/x.tgz /x\n", 2, "URL"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_dockerfile_builds_nothing(tmp_path: Path, case: str):
    text, line, words = BAD[case]
    ctx = context(tmp_path, text, {"a.txt": "a\n"})
    images_before = clab("images").stdout  # (which also makes the offline base image)
    tags_before = Store().tags()
    res = clab("build", "-t", "bad:1", str(ctx), check=False)
    assert res.returncode != 0
    err = res.stderr
    assert f"Dockerfile:{line}" in err, err
    assert words in err, err
    assert "Traceback" not in err
    assert clab("images").stdout == images_before
    assert Store().tags() == tags_before
    nothing_running()
    if case in ("run exits 3", "missing copy source"):  # the API says the same
        with pytest.raises(BuildError, match=f"Dockerfile:{line}"):
            builder.build(ctx, tags=("bad:2",), out=lambda _l: None)
        assert Store().tags() == tags_before
        nothing_running()
