"""The registry client against the real distribution registry, skopeo and umoci.

Small fake servers stand in only where the real registry cannot misbehave on purpose
(wrong bytes, truncated blobs, wrong media types) or does not do Docker Hub's token flow.
Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import io
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tarfile
import threading
import urllib.parse
import uuid
import warnings
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from containerlab.errors import (
    DigestMismatchError,
    ImageNotFoundError,
    RegistryError,
)
from containerlab.image import oci
from containerlab.image.progress import NullProgress, TerminalProgress, WidgetProgress, human
from containerlab.image.registry import Client, base_url, pull, push
from containerlab.image.store import Store


# --- building test images ---------------------------------------------------------------------
def make_layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzipped layer tar and its diff_id (sha256 of the uncompressed tar)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(n).parent) for n in files} - {"."})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0, compresslevel=1), oci.digest_of(raw)


def make_image(
    store: Store,
    ref: str | None,
    layers: list[dict[str, bytes]],
    *,
    arch: str = "amd64",
    variant: str | None = None,
    docker: bool = False,
) -> str:
    """Write layers, config and manifest into the store; returns the manifest digest."""
    layer_type = oci.DOCKER_LAYER_GZIP if docker else oci.OCI_LAYER_GZIP
    descriptors, diff_ids = [], []
    for files in layers:
        gz, diff_id = make_layer(files)
        descriptors.append(
            {"mediaType": layer_type, "digest": store.write_blob(gz), "size": len(gz)}
        )
        diff_ids.append(diff_id)
    config = {
        "architecture": arch,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {"Cmd": ["/hello"]},
    }
    if variant:
        config["variant"] = variant
    config_bytes = oci.dumps(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": oci.DOCKER_MANIFEST if docker else oci.OCI_MANIFEST,
        "config": {
            "mediaType": oci.DOCKER_CONFIG if docker else oci.OCI_CONFIG,
            "digest": store.write_blob(config_bytes),
            "size": len(config_bytes),
        },
        "layers": descriptors,
    }
    return store.add_image(oci.dumps(manifest), ref)


def snapshot(store: Store) -> tuple[set[str], dict[str, str]]:
    return store.all_blobs(), store.tags()


class Recorder:
    """A Progress that remembers what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, int | str]] = []

    def start(self, digest: str, total: int) -> None:
        self.events.append(("start", digest, total))

    def advance(self, digest: str, n: int) -> None:
        self.events.append(("advance", digest, n))

    def done(self, digest: str, status: str) -> None:
        self.events.append(("done", digest, status))

    def statuses(self) -> dict[str, str]:
        return {d: s for kind, d, s in self.events if kind == "done"}


def requests_of(lines: list[str]) -> list[tuple[str, str, int]]:
    """(method, path, status) from trace lines."""
    out = []
    for line in lines:
        m = re.match(r"(\S+) (\S+).* -> (\d+)", line)
        assert m, line
        out.append((m[1], m[2], int(m[3])))
    return out


@pytest.fixture
def repo(registry: str) -> str:
    """A repository of its own in the session registry."""
    return f"{registry}/t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def stores(tmp_path: Path) -> tuple[Store, Store]:
    """Two stores: one pushes, the other pulls."""
    return Store(tmp_path / "a"), Store(tmp_path / "b")


FILES = [{"hello": b"hello from layer one\n"}, {"etc/motd": b"two\n", "data/x": os.urandom(3000)}]


# --- push and pull against the real registry ------------------------------------------------
def test_push_then_pull_round_trip(repo: str, stores: tuple[Store, Store]) -> None:
    a, b = stores
    ref = f"{repo}/app:1"
    digest = make_image(a, ref, FILES)
    trace: list[str] = []
    assert push(ref, a, trace=trace.append) == digest
    assert any(line.startswith("PUT /v2/") and "manifests/1" in line for line in trace)

    progress = Recorder()
    trace.clear()
    assert pull(ref, b, progress=progress, trace=trace.append) == digest
    assert b.resolve(ref) == digest
    pulled, pushed = b.image(ref), a.image(ref)
    assert pulled.manifest_bytes == pushed.manifest_bytes
    for layer in pulled.layers:
        assert b.read_blob(layer["digest"]) == a.read_blob(layer["digest"])
    assert set(progress.statuses().values()) == {"pulled"}
    assert trace[0] == (
        f"GET /v2/{ref.split('/', 1)[1].replace(':', '/manifests/')} -> 200 "
        f"({oci.OCI_MANIFEST}, {human(len(pushed.manifest_bytes))})"
    )

    # Pulling again downloads nothing: every blob is already in the store.
    trace.clear()
    progress = Recorder()
    pull(ref, b, progress=progress, trace=trace.append)
    assert [m for m, path, _ in requests_of(trace) if "/blobs/" in path] == []
    assert set(progress.statuses().values()) == {"exists"}


def test_pull_by_digest(repo: str, stores: tuple[Store, Store]) -> None:
    a, b = stores
    digest = make_image(a, f"{repo}/app:1", FILES)
    push(f"{repo}/app:1", a)
    assert pull(f"{repo}/app@{digest}", b) == digest
    assert b.resolve(f"{repo}/app@{digest}") == digest
    assert b.tags() == {}  # a digest names content, not a tag


def test_second_push_skips_what_the_registry_has(repo: str, stores: tuple[Store, Store]) -> None:
    a, _ = stores
    ref = f"{repo}/app:1"
    make_image(a, ref, FILES)
    push(ref, a)
    trace: list[str] = []
    progress = Recorder()
    push(ref, a, trace=trace.append, progress=progress)
    reqs = requests_of(trace)
    assert [(m, s) for m, _, s in reqs] == [("HEAD", 200)] * 3 + [("PUT", 201)]
    assert set(progress.statuses().values()) == {"exists"}


def test_cross_repository_mount(repo: str, stores: tuple[Store, Store]) -> None:
    a, b = stores
    src = f"{repo}/base:1"
    digest = make_image(a, src, FILES)
    push(src, a)
    trace: list[str] = []
    progress = Recorder()
    dst = f"{repo}/derived:1"
    assert push(dst, a, source=src, trace=trace.append, progress=progress) == digest
    reqs = requests_of(trace)
    mounts = [p for m, p, s in reqs if m == "POST" and "mount=" in p and s == 201]
    assert len(mounts) == 3
    assert all(
        f"from={urllib.parse.quote(src.split('/', 1)[1].split(':')[0], safe='')}" in p
        for p in mounts
    )
    assert not [m for m, *_ in reqs if m == "PATCH"]
    assert [p for m, p, _ in reqs if m == "PUT"] == [
        f"/v2/{dst.split('/', 1)[1].replace(':', '/manifests/')}"
    ]
    assert set(progress.statuses().values()) == {"mounted"}
    assert pull(dst, b) == digest


def test_mount_refused_falls_back_to_upload(repo: str, stores: tuple[Store, Store]) -> None:
    """A source repository that lacks the blob: the registry answers 202 and an upload."""
    a, b = stores
    never_pushed = f"{repo}/ghost:1"
    digest = make_image(a, never_pushed, FILES)
    trace: list[str] = []
    progress = Recorder()
    dst = f"{repo}/real:1"
    push(dst, a, source=never_pushed, trace=trace.append, progress=progress)
    reqs = requests_of(trace)
    assert [s for m, p, s in reqs if m == "POST"] == [202] * 3
    assert set(progress.statuses().values()) == {"pushed"}
    assert pull(dst, b) == digest


def test_chunked_upload(repo: str, stores: tuple[Store, Store]) -> None:
    a, b = stores
    ref = f"{repo}/chunky:1"
    digest = make_image(a, ref, [{"noise": os.urandom(5000)}])
    layer = a.image(ref).layers[0]
    trace: list[str] = []
    progress = Recorder()
    push(ref, a, chunk_size=1000, trace=trace.append, progress=progress)
    patches = [line for line in trace if line.startswith("PATCH")]
    assert len(patches) == -(-layer["size"] // 1000)
    assert all(line.endswith("-> 202") for line in patches)
    moved = sum(n for kind, d, n in progress.events if kind == "advance" and d == layer["digest"])
    assert moved == layer["size"]
    assert pull(ref, b) == digest
    assert b.read_blob(layer["digest"]) == a.read_blob(layer["digest"])


# --- multi-platform images ------------------------------------------------------------------
@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-manifest-list"])
def test_index_picks_the_platform(repo: str, stores: tuple[Store, Store], docker: bool) -> None:
    a, _ = stores
    name = f"{repo}/multi"
    children = {}
    for arch, variant in (("amd64", None), ("arm64", "v8")):
        digest = make_image(
            a,
            f"{name}:{arch}",
            [{"arch": arch.encode()}],
            arch=arch,
            variant=variant,
            docker=docker,
        )
        push(f"{name}@{digest}", a, source=f"{name}:{arch}")
        platform = {
            "architecture": arch,
            "os": "linux",
            **({"variant": variant} if variant else {}),
        }
        children[arch] = {
            "mediaType": oci.DOCKER_MANIFEST if docker else oci.OCI_MANIFEST,
            "digest": digest,
            "size": a.blob_size(digest),
            "platform": platform,
        }
    index_type = oci.DOCKER_LIST if docker else oci.OCI_INDEX
    index = oci.dumps(
        {"schemaVersion": 2, "mediaType": index_type, "manifests": list(children.values())}
    )
    with Client(name.split("/", 1)[0]) as c:
        index_digest = c.put_manifest(name.split("/", 1)[1], "1", index, index_type)

    for wanted, arch in (
        ("linux/arm64", "arm64"),
        ("linux/arm64/v8", "arm64"),
        ("linux/amd64", "amd64"),
    ):
        fresh = Store(a.root.parent / f"pull-{arch}-{wanted.count('/')}")
        assert pull(f"{name}:1", fresh, platform=wanted) == children[arch]["digest"]
        assert fresh.image(f"{name}:1").config["architecture"] == arch

    host_arch = oci.host_platform().split("/")[1]
    if host_arch in children:
        fresh = Store(a.root.parent / "pull-host")
        assert pull(f"{name}@{index_digest}", fresh) == children[host_arch]["digest"]

    fresh = Store(a.root.parent / "pull-riscv")
    with pytest.raises(ImageNotFoundError) as e:
        pull(f"{name}:1", fresh, platform="linux/riscv64")
    assert "linux/amd64, linux/arm64/v8" in str(e.value)
    assert "riscv64" in str(e.value)
    assert snapshot(fresh) == (set(), {})


# --- interoperability with skopeo and umoci -------------------------------------------------
def run(*cmd: str) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stderr}"
    return res.stdout


needs_tools = pytest.mark.skipif(
    not (shutil.which("skopeo") and shutil.which("umoci")), reason="skopeo and umoci are needed"
)


@needs_tools
def test_skopeo_and_umoci_read_what_we_push(
    repo: str, stores: tuple[Store, Store], tmp_path: Path
) -> None:
    a, _ = stores
    ref = f"{repo}/ours:1"
    digest = make_image(a, ref, FILES)
    push(ref, a)
    info = json.loads(run("skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"))
    assert info["Digest"] == digest
    assert info["Architecture"] == "amd64"
    assert info["Layers"] == [layer["digest"] for layer in a.image(ref).layers]

    layout = tmp_path / "layout"
    run("skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:ours")
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--image", f"{layout}:ours", str(bundle))
    rootfs = bundle / "rootfs"
    assert (rootfs / "hello").read_bytes() == FILES[0]["hello"]
    assert (rootfs / "data" / "x").read_bytes() == FILES[1]["data/x"]


@needs_tools
@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_we_pull_what_skopeo_pushes(
    repo: str, stores: tuple[Store, Store], tmp_path: Path, fmt: str
) -> None:
    _, b = stores
    layout, bundle = tmp_path / "layout", tmp_path / "bundle"
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:t")
    run("umoci", "unpack", "--image", f"{layout}:t", str(bundle))
    (bundle / "rootfs" / "greeting").write_text("made by umoci\n")
    run("umoci", "repack", "--image", f"{layout}:t", str(bundle))
    run("umoci", "config", "--image", f"{layout}:t", "--config.cmd", "/greeting")
    ref = f"{repo}/skopeo:{fmt}"
    run(
        "skopeo",
        "copy",
        "--dest-tls-verify=false",
        "--format",
        fmt,
        f"oci:{layout}:t",
        f"docker://{ref}",
    )
    remote = json.loads(run("skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"))

    digest = pull(ref, b)
    assert digest == remote["Digest"]
    image = b.image(ref)
    assert image.media_type == (oci.DOCKER_MANIFEST if fmt == "v2s2" else oci.OCI_MANIFEST)
    assert image.run_config["Cmd"] == ["/greeting"]
    with tarfile.open(fileobj=io.BytesIO(b.read_blob(image.layers[-1]["digest"]))) as tar:
        member = next(m for m in tar.getmembers() if m.name.lstrip("./") == "greeting")
        assert tar.extractfile(member).read() == b"made by umoci\n"


# --- errors from the real registry ----------------------------------------------------------
def test_unknown_image_is_a_clear_error(repo: str, registry: str, tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    with pytest.raises(
        ImageNotFoundError,
        match=rf"^image '{registry}/nope:latest' not found in the registry "
        r"\((NAME|MANIFEST)_UNKNOWN\)$",
    ):
        pull(f"{registry}/nope", store)
    assert snapshot(store) == (set(), {})


def test_unknown_tag_of_known_repository(repo: str, stores: tuple[Store, Store]) -> None:
    a, b = stores
    make_image(a, f"{repo}/app:1", FILES)
    push(f"{repo}/app:1", a)
    with pytest.raises(ImageNotFoundError, match=r"not found in the registry \(MANIFEST_UNKNOWN\)"):
        pull(f"{repo}/app:2", b)


def test_missing_blob(repo: str, stores: tuple[Store, Store]) -> None:
    """A layer deleted from the repository: the pull stops, keeping only verified blobs."""
    a, b = stores
    ref = f"{repo}/holey:1"
    make_image(a, ref, FILES)
    push(ref, a)
    image = a.image(ref)
    gone = image.layers[1]["digest"]
    host, name = ref.split("/", 1)
    with Client(host) as c:
        c.call("DELETE", f"/v2/{name.split(':')[0]}/blobs/{gone}", ok=(202,))
    with pytest.raises(
        RegistryError, match=r"blob .* is missing from the registry \(BLOB_UNKNOWN\)"
    ):
        pull(ref, b)
    blobs, tags = snapshot(b)
    assert tags == {}
    assert gone not in blobs
    assert blobs <= {image.config_digest, image.layers[0]["digest"]}
    for d in blobs:
        b.read_blob(d)  # whatever was kept is whole


def test_manifest_content_type_must_match(repo: str, stores: tuple[Store, Store]) -> None:
    a, _ = stores
    make_image(a, f"{repo}/app:1", FILES)
    push(f"{repo}/app:1", a)
    host, name = repo.split("/", 1)
    with Client(host) as c, pytest.raises(RegistryError, match="MANIFEST_INVALID"):
        c.put_manifest(
            f"{name}/app", "2", a.image(f"{repo}/app:1").manifest_bytes, oci.DOCKER_MANIFEST
        )


def test_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RegistryError) as e:
        pull(f"127.0.0.1:{port}/app:1", Store(tmp_path / "s"))
    assert (
        str(e.value)
        == f"cannot reach registry 127.0.0.1:{port}: connection refused; is it running?"
    )


# --- where plain http is allowed ------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "insecure", "url"),
    [
        ("127.0.0.1:5000", False, "http://127.0.0.1:5000"),
        ("127.8.9.10:5000", False, "http://127.8.9.10:5000"),
        ("localhost:5000", False, "http://localhost:5000"),
        ("[::1]:5000", False, "http://[::1]:5000"),
        ("registry.invalid", False, "https://registry.invalid"),
        ("registry.invalid:5000", True, "http://registry.invalid:5000"),
    ],
)
def test_scheme_follows_the_host(host: str, insecure: bool, url: str) -> None:
    assert base_url(host, insecure=insecure) == url


def test_plain_http_elsewhere_is_refused_before_any_traffic(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        pytest.fail(f"network used: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    store = Store(tmp_path / "s")
    for call in (
        lambda: pull("http://registry.invalid/app:1", store),
        lambda: push("http://registry.invalid:5000/app:1", store),
    ):
        with pytest.raises(
            RegistryError,
            match=r"refusing plain http to registry registry\.invalid.*"
            r"insecure=True \(--insecure\)",
        ):
            call()
    assert snapshot(store) == (set(), {})


# --- a registry that misbehaves on purpose --------------------------------------------------
class FakeRegistry(ThreadingHTTPServer):
    """Answers from a table: path -> (status, headers, body, bytes actually sent)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FakeHandler)
        self.routes: dict[str, tuple[int, dict[str, str], bytes, int | None]] = {}
        self.host = f"127.0.0.1:{self.server_address[1]}"
        self.on_request: Callable[[BaseHTTPRequestHandler], None] = lambda handler: None
        self.require_basic = False  # answer 401 (Basic) to requests without Authorization

    def serve_image(self, store: Store, ref: str, name: str, tag: str) -> None:
        image = store.image(ref)
        self.routes[f"/v2/{name}/manifests/{tag}"] = (
            200,
            {"Content-Type": image.media_type, "Docker-Content-Digest": image.digest},
            image.manifest_bytes,
            None,
        )
        for d in (image.config_digest, *(layer["digest"] for layer in image.layers)):
            self.routes[f"/v2/{name}/blobs/{d}"] = (200, {}, store.read_blob(d), None)


class _FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeRegistry

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.on_request(self)
        if self.server.require_basic and "Authorization" not in self.headers:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="fake"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = self.path.split("?")[0]
        default = (404, {}, b'{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}', None)
        status, headers, body, sent = self.server.routes.get(path, default)
        self.send_response(status)
        for k, v in {"Content-Type": "application/octet-stream", **headers}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if sent is None else body[:sent])
        if sent is not None:
            self.close_connection = True  # the rest never comes

    do_HEAD = do_GET


@contextlib.contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeRegistry, Store]]:
    """A fake registry serving a good image as fake/app:1, and the store it came from."""
    src = Store(tmp_path / "src")
    server = FakeRegistry()
    make_image(src, f"{server.host}/fake/app:1", FILES)
    server.serve_image(src, f"{server.host}/fake/app:1", "fake/app", "1")
    with serving(server):
        yield server, src


def _route(server: FakeRegistry, path: str, **changes: object) -> None:
    status, headers, body, sent = server.routes[path]
    server.routes[path] = (
        changes.get("status", status),
        changes.get("headers", headers),
        changes.get("body", body),
        changes.get("sent", sent),
    )


Hostile = Callable[[FakeRegistry, Store], None]


def _wrong_layer_bytes(server: FakeRegistry, src: Store) -> None:
    layer = src.image(f"{server.host}/fake/app:1").layers[1]
    path = f"/v2/fake/app/blobs/{layer['digest']}"
    body = server.routes[path][2]
    _route(server, path, body=bytes([body[0] ^ 1]) + body[1:])


def _truncated_layer(server: FakeRegistry, src: Store) -> None:
    layer = src.image(f"{server.host}/fake/app:1").layers[1]
    _route(server, f"/v2/fake/app/blobs/{layer['digest']}", sent=layer["size"] // 2)


def _short_layer(server: FakeRegistry, src: Store) -> None:
    """Content-Length itself says fewer bytes than the manifest does."""
    layer = src.image(f"{server.host}/fake/app:1").layers[1]
    path = f"/v2/fake/app/blobs/{layer['digest']}"
    _route(server, path, body=server.routes[path][2][:100])


def _long_layer(server: FakeRegistry, src: Store) -> None:
    layer = src.image(f"{server.host}/fake/app:1").layers[1]
    path = f"/v2/fake/app/blobs/{layer['digest']}"
    _route(server, path, body=server.routes[path][2] + b"extra")


def _manifest_digest_lies(server: FakeRegistry, src: Store) -> None:
    _route(
        server,
        "/v2/fake/app/manifests/1",
        headers={
            "Content-Type": oci.OCI_MANIFEST,
            "Docker-Content-Digest": oci.digest_of(b"other"),
        },
    )


def _html_instead_of_manifest(server: FakeRegistry, src: Store) -> None:
    _route(
        server,
        "/v2/fake/app/manifests/1",
        headers={"Content-Type": "text/html"},
        body=b"<html>login first</html>",
    )


def _manifest_declares_other_type(server: FakeRegistry, src: Store) -> None:
    _route(server, "/v2/fake/app/manifests/1", headers={"Content-Type": oci.DOCKER_MANIFEST})


def _odd_layer_type(server: FakeRegistry, src: Store) -> None:
    doc = json.loads(server.routes["/v2/fake/app/manifests/1"][2])
    doc["layers"][0]["mediaType"] = "application/x-something-else"
    _route(
        server,
        "/v2/fake/app/manifests/1",
        body=oci.dumps(doc),
        headers={"Content-Type": oci.OCI_MANIFEST},
    )


def _schema1(server: FakeRegistry, src: Store) -> None:
    _route(
        server,
        "/v2/fake/app/manifests/1",
        body=b'{"schemaVersion":1}',
        headers={"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"},
    )


@pytest.mark.parametrize(
    ("spoil", "error", "message"),
    [
        (_wrong_layer_bytes, DigestMismatchError, r"does not match its content"),
        (_truncated_layer, RegistryError, r"truncated: the registry sent \d+ of \d+ bytes"),
        (_short_layer, RegistryError, r"truncated: the registry sent 100 of \d+ bytes"),
        (_long_layer, RegistryError, r"sent more than the \d+ bytes the manifest says"),
        (_manifest_digest_lies, DigestMismatchError, r"not the registry's digest"),
        (_html_instead_of_manifest, RegistryError, r"answered 'text/html', not an image manifest"),
        (_manifest_declares_other_type, RegistryError, r"served as .*docker.* but declares .*oci"),
        (_odd_layer_type, RegistryError, r"manifest is unusable: .*application/x-something-else"),
        (_schema1, RegistryError, r"schema 1 manifest"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_hostile_registry(
    fake: tuple[FakeRegistry, Store], tmp_path: Path, spoil: Hostile, error: type, message: str
) -> None:
    server, src = fake
    spoil(server, src)
    image = src.image(f"{server.host}/fake/app:1")
    store = Store(tmp_path / "victim")
    with pytest.raises(error, match=message):
        pull(f"{server.host}/fake/app:1", store)
    blobs, tags = snapshot(store)
    assert tags == {}
    # Only blobs that arrived whole and verified may stay (the config, the first layer).
    assert blobs <= {image.config_digest, image.layers[0]["digest"]}
    for d in blobs:
        store.read_blob(d)
    assert not store.tmp.exists() or not any(store.tmp.iterdir())  # no half-written blob


def test_pull_by_digest_checks_the_bytes(fake: tuple[FakeRegistry, Store], tmp_path: Path) -> None:
    server, src = fake
    image = src.image(f"{server.host}/fake/app:1")
    # The registry serves other bytes under the digest we ask for.
    other = image.manifest_bytes.replace(b'"schemaVersion":2', b'"schemaVersion": 2')
    server.routes[f"/v2/fake/app/manifests/{image.digest}"] = (
        200,
        {"Content-Type": oci.OCI_MANIFEST},
        other,
        None,
    )
    store = Store(tmp_path / "victim")
    with pytest.raises(DigestMismatchError, match="not the digest asked for"):
        pull(f"{server.host}/fake/app@{image.digest}", store)
    assert snapshot(store) == (set(), {})


def test_server_error_is_reported(fake: tuple[FakeRegistry, Store], tmp_path: Path) -> None:
    server, _ = fake
    body = b'{"errors":[{"code":"UNKNOWN","message":"disk full"}]}'
    server.routes["/v2/fake/app/manifests/1"] = (500, {}, body, None)
    with pytest.raises(RegistryError) as e:
        pull(f"{server.host}/fake/app:1", Store(tmp_path / "s"))
    assert str(e.value) == (
        f"registry {server.host} answered 500 Internal Server Error to "
        f"image '{server.host}/fake/app:1': UNKNOWN: disk full"
    )


def test_blob_redirect_is_followed_without_credentials(
    fake: tuple[FakeRegistry, Store], tmp_path: Path
) -> None:
    """Registries send blobs from elsewhere (a CDN, a bucket): follow, but keep the password."""
    server, src = fake
    image = src.image(f"{server.host}/fake/app:1")
    layer = image.layers[0]["digest"]
    elsewhere = FakeRegistry()
    elsewhere.routes["/cdn/blob"] = server.routes[f"/v2/fake/app/blobs/{layer}"]
    server.routes[f"/v2/fake/app/blobs/{layer}"] = (
        307, {"Location": f"http://{elsewhere.host}/cdn/blob?sig=1"}, b"", None
    )  # fmt: skip
    seen: list[str | None] = []
    elsewhere.on_request = lambda handler: seen.append(handler.headers.get("Authorization"))
    store = Store(tmp_path / "s")
    trace: list[str] = []
    server.require_basic = True
    with serving(elsewhere), Client(server.host, auth=("u", "p"), trace=trace.append) as c:
        c.fetch_blob("fake/app", image.layers[0], store, NullProgress())
    assert store.has_blob(layer)
    assert seen == [None]
    assert [r[2] for r in requests_of(trace)] == [401, 307, 200]


def test_good_fake_registry_pulls(fake: tuple[FakeRegistry, Store], tmp_path: Path) -> None:
    """The fake serves a correct image correctly: the failures above are the spoiling."""
    server, src = fake
    store = Store(tmp_path / "ok")
    assert pull(f"{server.host}/fake/app:1", store) == src.resolve(f"{server.host}/fake/app:1")


# --- authentication -------------------------------------------------------------------------
class BearerProxy(ThreadingHTTPServer):
    """Docker Hub's token flow in front of the real registry.

    ``/token`` hands out tokens (to anyone, or only to ``users``); ``/v2/...`` needs one whose
    scope covers the repository and the action, else 401 with a Bearer challenge; with it,
    the request is passed on to the real registry.
    """

    daemon_threads = True

    def __init__(self, upstream: str, users: dict[str, str] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.users = users
        self.host = f"127.0.0.1:{self.server_address[1]}"
        self.tokens: dict[str, set[str]] = {}  # token -> scopes granted
        self.token_requests: list[tuple[str | None, list[str]]] = []  # (user, scopes)


def _covers(granted: set[str], needed: str) -> bool:
    """Does one granted scope (``repository:NAME:ACTIONS``) allow every action needed?"""
    name, _, actions = needed.rpartition(":")
    for scope in granted:
        g_name, _, g_actions = scope.rpartition(":")
        if g_name == name and set(actions.split(",")) <= set(g_actions.split(",")):
            return True
    return False


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: BearerProxy

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _token(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        scopes = query.get("scope", [])
        user = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if self.server.users is None or self.server.users.get(user) != password:
                return self._reply(401, {}, b'{"details":"bad credentials"}')
        elif self.server.users is not None:
            return self._reply(401, {}, b'{"details":"credentials needed"}')
        self.server.token_requests.append((user, scopes))
        token = secrets.token_hex(16)
        self.server.tokens[token] = set(scopes)
        self._reply(
            200, {"Content-Type": "application/json"}, json.dumps({"token": token}).encode()
        )

    def _handle(self) -> None:
        if self.path.startswith("/token"):
            return self._token()
        # Read the body first: left unread on a keep-alive connection, it would be taken
        # for the next request.
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        m = re.match(r"^/v2/(.+?)/(manifests|blobs|tags)/", self.path)
        needed = (
            f"repository:{m[1]}:{'pull' if self.command in ('GET', 'HEAD') else 'pull,push'}"
            if m
            else ""
        )
        auth = self.headers.get("Authorization", "")
        granted = self.server.tokens.get(auth.removeprefix("Bearer "), None)
        if granted is None or (needed and not _covers(granted, needed)):
            challenge = f'Bearer realm="http://{self.server.host}/token",service="clab-test"'
            if needed:
                challenge += f',scope="{needed}"'
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
            return self._reply(
                401, {"WWW-Authenticate": challenge, "Content-Type": "application/json"}, body
            )
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in ("authorization", "connection")
        }
        conn = http.client.HTTPConnection(self.server.upstream, timeout=30)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = {
                k: v
                for k, v in resp.getheaders()
                if k.lower() not in ("content-length", "connection", "transfer-encoding")
            }
            self._reply(resp.status, out, data)
        finally:
            conn.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


def test_bearer_token_flow_anonymous(registry: str, stores: tuple[Store, Store]) -> None:
    a, b = stores
    with serving(BearerProxy(registry)) as proxy:
        ref = f"{proxy.host}/bearer/app:1"
        digest = make_image(a, ref, FILES)
        trace: list[str] = []
        assert push(ref, a, trace=trace.append) == digest
        assert requests_of(trace)[0][2] == 401
        assert any(line.startswith("GET /token?service=clab-test&scope=") for line in trace)
        # Push asked for pull and push at once: one challenge, one token.
        assert [s for _, _, s in requests_of(trace)].count(401) == 1
        scopes = {s for _, ss in proxy.token_requests for s in ss}
        assert "repository:bearer/app:pull,push" in scopes
        assert all(user is None for user, _ in proxy.token_requests)

        trace.clear()
        assert pull(ref, b, trace=trace.append) == digest
        statuses = [s for _, _, s in requests_of(trace)]
        assert statuses.count(401) == 1  # one challenge, then the token serves every request
        # The token never shows in the trace.
        assert not any(t in line for t in proxy.tokens for line in trace)


def test_bearer_token_flow_with_credentials(registry: str, stores: tuple[Store, Store]) -> None:
    a, b = stores
    with serving(BearerProxy(registry, users={"alice": "s3cret"})) as proxy:
        ref = f"{proxy.host}/private/app:1"
        digest = make_image(a, ref, FILES)
        assert push(ref, a, auth=("alice", "s3cret")) == digest
        assert {user for user, _ in proxy.token_requests} == {"alice"}
        with pytest.raises(RegistryError, match=r"token server .* refused anonymous access"):
            pull(ref, b)
        with pytest.raises(RegistryError, match=r"token server .* refused the credentials"):
            pull(ref, b, auth=("alice", "wrong"))
        assert snapshot(b) == (set(), {})
        assert pull(ref, b, auth=("alice", "s3cret")) == digest


def _htpasswd(path: Path, user: str, password: str) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # libxcrypt makes bcrypt ($2b$), which the registry's htpasswd needs

    path.write_text(
        f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}\n"
    )
    return path


def test_basic_auth_with_the_real_registry(
    registry_factory: Callable[..., str], stores: tuple[Store, Store], tmp_path: Path
) -> None:
    a, b = stores
    host = registry_factory(htpasswd=_htpasswd(tmp_path / "htpasswd", "bob", "hunter2"))
    ref = f"{host}/locked/app:1"
    digest = make_image(a, ref, FILES)
    with pytest.raises(
        RegistryError, match=r"needs a user name and password; pass auth=\(user, password\)"
    ):
        push(ref, a)
    with pytest.raises(
        RegistryError,
        match=r"refused the credentials of user 'bob' \(401 Unauthorized\); check the user",
    ):
        push(ref, a, auth=("bob", "wrong"))
    trace: list[str] = []
    assert push(ref, a, auth=("bob", "hunter2"), trace=trace.append) == digest
    assert sum(1 for _, _, s in requests_of(trace) if s == 401) == 1
    assert pull(ref, b, auth=("bob", "hunter2")) == digest


# --- progress displays ----------------------------------------------------------------------
class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_progress_plain_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    p = TerminalProgress(out, verb="pulling")
    p.start("sha256:" + "a" * 64, 2000)
    p.start("sha256:" + "b" * 64, 10)
    p.advance("sha256:" + "a" * 64, 2000)
    p.done("sha256:" + "a" * 64, "pulled")
    p.done("sha256:" + "b" * 64, "exists")
    assert out.getvalue() == "aaaaaaaaaaaa: pulled (2.0 kB)\nbbbbbbbbbbbb: exists (10 B)\n"


def test_terminal_progress_bars_on_a_tty() -> None:
    out = _Tty()
    p = TerminalProgress(out, verb="pulling")
    p.start("sha256:" + "a" * 64, 2000)
    p.advance("sha256:" + "a" * 64, 1000)
    p.done("sha256:" + "a" * 64, "pulled")
    text = out.getvalue()
    assert "aaaaaaaaaaaa: [" in text and "/2.0 kB" in text
    assert "\x1b[2F" in text  # redrawn in place
    assert text.rstrip().endswith("pulling: [==============================] 2.0 kB/2.0 kB\x1b[K")


def test_widget_progress_counts() -> None:
    p = WidgetProgress(verb="pushing")
    p.start("sha256:" + "a" * 64, 100)
    p.start("sha256:" + "b" * 64, 50)
    p.advance("sha256:" + "a" * 64, 40)
    p.done("sha256:" + "b" * 64, "mounted")
    p.done("sha256:" + "a" * 64, "pushed")
    bars = [row.children[1] for row in p._box.children]
    assert [bar.value for bar in bars] == [100, 50, 150]
    assert "mounted" in p._rows["sha256:" + "b" * 64][0].value
