"""``ADD <URL> <dest>``: real builds against the real store, downloading from an HTTP server the
test starts on 127.0.0.1 (never any other address: proxy variables are removed, so urllib
connects straight to loopback).

Checked in the built image: the name (from the URL, or dest), mode 0600 unless --chmod,
--chown, the mtime from Last-Modified, a .tar.gz left packed; the cache following the served
content; --checksum; and the failures (404, 500, connection refused, timeout, bad sources)
that must name the line and the URL and build nothing.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import io
import socket
import tarfile
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from containerlab.build import builder, fetch
from containerlab.errors import BuildError, ImageNotFoundError
from containerlab.image.store import Store
from tests.test_build import clab, context, image_fs, nothing_running

LAST_MODIFIED = 1_600_000_000  # 2020-09-13, sent as Last-Modified for every file
TOOL = b"#!/bin/sh\necho tool says hi\n"


@dataclass
class Served:
    """What the test server serves (path -> bytes; tests change it) and what it was asked."""

    base: str  # http://127.0.0.1:PORT
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)  # paths, in order
    release: threading.Event = field(default_factory=threading.Event)  # ends /slow's wait

    def url(self, path: str) -> str:
        return self.base + path


class _Handler(http.server.BaseHTTPRequestHandler):
    served: Served  # set on the subclass the fixture makes

    def do_GET(self) -> None:
        self.served.requests.append(self.path)
        path = urllib.parse.urlsplit(self.path).path
        if path == "/slow":  # headers never come (until the fixture releases it)
            self.served.release.wait(20)
            return
        if path == "/boom":
            self.send_error(500, "Internal Server Error")
            return
        body = self.served.files.get(path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Last-Modified", email.utils.formatdate(LAST_MODIFIED, usegmt=True))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep pytest's output clean
        pass


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """An HTTP server on 127.0.0.1 (a free port), in a thread; stopped after the test."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)  # the loopback rule: no proxy in between
    monkeypatch.delenv("ALL_PROXY", raising=False)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    state = Served(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = type("Handler", (_Handler,), {"served": state})
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago): connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def targz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def quiet(_line: str) -> None:
    pass


def fetch_dirs_left(store: Store) -> list[str]:
    return sorted(p.name for p in store.tmp.glob("fetch-*")) if store.tmp.is_dir() else []


# --- what lands in the image ----------------------------------------------------------------
def test_add_url_names_modes_owner_mtime_and_no_unpacking(tmp_path: Path, served: Served):
    archive = targz({"inside.txt": b"packed\n"})
    served.files.update({"/files/tool.sh": TOOL, "/files/app.tar.gz": archive})
    tool, tgz = served.url("/files/tool.sh"), served.url("/files/app.tar.gz")
    ctx = context(
        tmp_path,
        "FROM busybox\n"
        "WORKDIR /srv\n"
        f"ADD {tool} /opt/\n"  # a directory: the URL's last component names the file
        f"ADD {tool} renamed.sh\n"  # a file path, relative: under WORKDIR
        f"ADD {tool}?v=2#frag /q/\n"  # query and fragment are not part of the name
        f"ADD {tool} /tmp\n"  # a directory of the image takes the file inside, named
        f"ADD --chmod=755 --chown=1234:5678 {tool} /usr/local/bin/tool\n"
        f"ADD {tgz} /dl/\n"  # a remote archive stays an archive...
        f"ADD --unpack=true {tgz} /unpacked/\n"  # ...unless asked, as in Docker
        'CMD ["tool"]\n',
    )
    store = Store()
    result = builder.build(ctx, tags=("addurl:1",), out=quiet, store=store)
    assert not any(s.cached for s in result.steps[1:])
    with image_fs("addurl:1") as root:
        for path in ("opt/tool.sh", "srv/renamed.sh", "q/tool.sh", "tmp/tool.sh"):
            st = (root / path).stat()
            assert (root / path).read_bytes() == TOOL, path
            assert st.st_mode & 0o7777 == 0o600, path  # HTTP has no mode: Docker's 0600
            assert (st.st_uid, st.st_gid) == (0, 0), path
            assert st.st_mtime == LAST_MODIFIED, path  # from Last-Modified
        st = (root / "usr/local/bin/tool").stat()
        assert st.st_mode & 0o7777 == 0o755 and (st.st_uid, st.st_gid) == (1234, 5678)
        assert (root / "dl/app.tar.gz").read_bytes() == archive
        assert not (root / "dl/inside.txt").exists()
        assert (root / "unpacked/inside.txt").read_bytes() == b"packed\n"
        assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777  # the directory kept its mode
    # the history names the content, as for a local file
    history = [h["created_by"] for h in store.image("addurl:1").config["history"]]
    assert any("ADD file:" in h and " in /opt/" in h for h in history)
    assert fetch_dirs_left(store) == []  # the downloads went with their steps
    # the file is there for a container too (with the --chmod'ed mode it runs)
    assert clab("run", "--rm", "addurl:1").stdout == "tool says hi\n"
    nothing_running()


def test_a_url_with_no_file_name(tmp_path: Path, served: Served):
    served.files["/"] = b"index\n"
    url = served.url("/")
    ctx = context(tmp_path, f"FROM busybox\nADD {url} /index.html\n")
    builder.build(ctx, tags=("noname:1",), out=quiet)
    with image_fs("noname:1") as root:
        assert (root / "index.html").read_bytes() == b"index\n"  # dest names the file
    ctx = context(tmp_path, f"FROM busybox\nADD {url} /www/\n")
    with pytest.raises(BuildError) as err:
        builder.build(ctx, tags=("noname:2",), out=quiet)
    msg = str(err.value)
    assert msg.startswith("Dockerfile:2: ") and url in msg and "no file name" in msg, msg


# --- the cache follows the served bytes -------------------------------------------------------
def test_cache_hits_while_the_url_serves_the_same_bytes(tmp_path: Path, served: Served):
    served.files["/data.txt"] = b"version 1\n"
    url = served.url("/data.txt")
    ctx = context(tmp_path, f"FROM busybox\nADD {url} /data.txt\nRUN cat /data.txt > /seen\n")
    store = Store()
    first = builder.build(ctx, tags=("cached:1",), out=quiet, store=store)
    assert [s.cached for s in first.steps] == [True, False, False]
    assert served.requests == ["/data.txt"]

    log: list[str] = []
    again = builder.build(ctx, tags=("cached:1",), out=log.append, store=store)
    assert all(s.cached for s in again.steps) and again.digest == first.digest
    assert sum("CACHED" in line for line in log) == 2
    assert served.requests == ["/data.txt"] * 2  # downloaded again, to compare

    served.files["/data.txt"] = b"version 2\n"  # same URL, new bytes: a miss from the ADD on
    changed = builder.build(ctx, tags=("cached:2",), out=quiet, store=store)
    assert [s.cached for s in changed.steps] == [True, False, False]
    assert changed.digest != first.digest
    with image_fs("cached:2") as root:
        assert (root / "data.txt").read_bytes() == b"version 2\n"
        assert (root / "seen").read_bytes() == b"version 2\n"
    with image_fs("cached:1") as root:
        assert (root / "seen").read_bytes() == b"version 1\n"

    served.files["/data.txt"] = b"version 1\n"  # back to the first bytes: their steps again
    back = builder.build(ctx, out=quiet, store=store)
    assert all(s.cached for s in back.steps) and back.digest == first.digest
    assert fetch_dirs_left(store) == []
    nothing_running()


# --- --checksum --------------------------------------------------------------------------------
def test_checksum_good_then_cached_without_a_download(tmp_path: Path, served: Served):
    served.files["/pinned.bin"] = b"pinned bytes\n"
    url = served.url("/pinned.bin")
    good = "sha256:" + hashlib.sha256(b"pinned bytes\n").hexdigest()
    ctx = context(tmp_path, f"FROM busybox\nADD --checksum={good} {url} /pinned.bin\n")
    store = Store()
    first = builder.build(ctx, tags=("sum:1",), out=quiet, store=store)
    assert not first.steps[1].cached and served.requests == ["/pinned.bin"]
    with image_fs("sum:1") as root:
        assert (root / "pinned.bin").read_bytes() == b"pinned bytes\n"
        assert (root / "pinned.bin").stat().st_mode & 0o7777 == 0o600

    # the checksum names the content: a cached step needs no download at all...
    again = builder.build(ctx, out=quiet, store=store)
    assert again.steps[1].cached and again.digest == first.digest
    assert served.requests == ["/pinned.bin"]
    # ...and --no-cache downloads and checks again
    fresh = builder.build(ctx, no_cache=True, out=quiet, store=store)
    assert not fresh.steps[1].cached and served.requests == ["/pinned.bin"] * 2
    # sha512 is a digest Docker accepts too
    sha512 = "sha512:" + hashlib.sha512(b"pinned bytes\n").hexdigest()
    ctx = context(tmp_path, f"FROM busybox\nADD --checksum={sha512} {url} /pinned.bin\n")
    builder.build(ctx, tags=("sum:512",), out=quiet, store=store)


def test_checksum_mismatch_builds_nothing(tmp_path: Path, served: Served):
    served.files["/pinned.bin"] = b"what the server has\n"
    url = served.url("/pinned.bin")
    wrong = "sha256:" + hashlib.sha256(b"what the Dockerfile expects\n").hexdigest()
    actual = "sha256:" + hashlib.sha256(b"what the server has\n").hexdigest()
    ctx = context(tmp_path, f"FROM busybox\nRUN true\nADD --checksum={wrong} {url} /pinned.bin\n")
    clab("images")  # makes the offline base image, so the tags before include it
    store = Store()
    tags_before = store.tags()
    with pytest.raises(BuildError) as err:
        builder.build(ctx, tags=("sum:bad",), out=quiet, store=store)
    msg = str(err.value)
    assert msg.startswith("Dockerfile:3: "), msg
    assert url in msg and wrong in msg and actual in msg, msg
    assert store.tags() == tags_before
    with pytest.raises(ImageNotFoundError):
        store.image("sum:bad")
    assert fetch_dirs_left(store) == []
    nothing_running()


# --- failures: one clear error, nothing built -----------------------------------------------
@pytest.mark.parametrize(
    ("case", "path", "words"),
    [
        ("404", "/missing.txt", "HTTP 404 Not Found"),
        ("500", "/boom", "HTTP 500"),
        ("connection refused", None, "connection refused"),
    ],
)
def test_download_failures_through_the_cli(
    tmp_path: Path, served: Served, case: str, path: str | None, words: str
):
    url = served.url(path) if path else f"http://127.0.0.1:{closed_port()}/file.txt"
    ctx = context(tmp_path, f"FROM busybox\nRUN true\nADD {url} /file.txt\nCMD x\n")
    images_before = clab("images").stdout  # (which also makes the offline base image)
    tags_before = Store().tags()
    res = clab("build", "-t", "fails:1", str(ctx), check=False)
    assert res.returncode != 0
    err = res.stderr
    assert "Dockerfile:3" in err and url in err and words in err, err
    assert "Traceback" not in err and err.count("\n") <= 2, err  # one message
    assert clab("images").stdout == images_before
    assert Store().tags() == tags_before
    assert clab("inspect", "fails:1", check=False).returncode != 0  # no such tag
    nothing_running()


def test_a_silent_server_times_out(tmp_path: Path, served: Served, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(fetch, "TIMEOUT", 1.0)  # 30 s in real builds
    url = served.url("/slow")
    ctx = context(tmp_path, f"FROM busybox\nADD {url} /slow.txt\n")
    store = Store()
    with pytest.raises(BuildError) as err:
        builder.build(ctx, tags=("slow:1",), out=quiet, store=store)
    msg = str(err.value)
    assert msg.startswith("Dockerfile:2: ") and url in msg and "no answer within 1 s" in msg
    with pytest.raises(ImageNotFoundError):
        store.image("slow:1")
    assert fetch_dirs_left(store) == []


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("ADD git@github.com:moby/moby.git /src", "git sources are not supported"),
        ("ADD http://127.0.0.1:1/repo.git /src", "git sources are not supported"),
        ("ADD ftp://127.0.0.1/file.txt /f", "only http:// and https://"),
        ("COPY http://127.0.0.1:1/file.txt /f", "COPY does not download URLs; use ADD"),
        ("ADD http:///file.txt /f", "malformed URL"),
        ("ADD http://127.0.0.1:port/file.txt /f", "malformed URL"),
        ("ADD --checksum=sha256:abc http://127.0.0.1:1/f /f", "invalid --checksum"),
        ("ADD --checksum=md5:" + "0" * 32 + " http://127.0.0.1:1/f /f", "invalid --checksum"),
        ("ADD --checksum=sha256:" + "0" * 64 + " a.txt /f", "exactly one source, an http(s) URL"),
        ("ADD http://127.0.0.1:1/a.txt a.txt /d/", "both URLs and local files"),
        ("ADD http://127.0.0.1:1/x/a.txt http://127.0.0.1:1/y/a.txt /d/", "same file name"),
    ],
)
def test_refused_sources_name_the_line(tmp_path: Path, line: str, words: str):
    # no server: each is refused before any connection (port 1 would refuse anyway)
    ctx = context(tmp_path, f"FROM busybox\n{line}\n", {"a.txt": "a\n"})
    store = Store()
    with pytest.raises(BuildError) as err:
        builder.build(ctx, tags=("refused:1",), out=quiet, store=store)
    msg = str(err.value)
    assert msg.startswith("Dockerfile:2: ") and words in msg, msg
    assert "refused:1" not in " ".join(store.tags())
