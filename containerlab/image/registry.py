"""Talking to a registry: the Docker Registry HTTP API v2 (the OCI distribution spec).

A registry is a plain HTTP server holding the same things the store holds, per repository:

    GET  /v2/<name>/manifests/<tag or digest>   the manifest (or index) a tag points at
    GET  /v2/<name>/blobs/<digest>              a config or layer, by content
    HEAD /v2/<name>/blobs/<digest>              does it have this blob? (push skips it)
    POST /v2/<name>/blobs/uploads/              start an upload -> 202 + Location
    PATCH <Location>  (Content-Range a-b)       send a chunk    -> 202 + a new Location
    PUT  <Location>&digest=<digest>             finish: the registry checks the digest
    PUT  /v2/<name>/manifests/<tag>             publish the image under a tag

A pull is: manifest (pick a platform if it is an index), then every blob it names, each
hashed on the way in and stored only if it is what its digest says. A push is the same
backwards: blobs first (skipping what the registry has, or mounting it from a sibling
repository), the manifest last, so the tag never points at something incomplete.

Only the standard library: ``http.client`` with one keep-alive connection per host.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import json
import re
import socket
import ssl
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from containerlab.errors import (
    ContainerlabError,
    DigestMismatchError,
    ImageError,
    ImageNotFoundError,
    RegistryError,
)
from containerlab.image import oci
from containerlab.image.progress import NullProgress, Progress, human, short
from containerlab.image.reference import Reference, parse
from containerlab.image.store import Store

Trace = Callable[[str], None]

#: Bigger manifests are refused unread (containerd's limit too): a hostile registry could
#: otherwise make us buffer gigabytes of "JSON".
MAX_MANIFEST = 4 << 20
#: Bytes per PATCH when pushing a blob bigger than this; smaller blobs go in one PUT.
DEFAULT_CHUNK = 16 << 20
_READ = 1 << 20
_USER_AGENT = "containerlab/0.1 (python http.client)"
_REDIRECTS = 5


# --- where to connect -----------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost (``host`` may carry a port)."""
    name = _hostname(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _hostname(host: str) -> str:
    if host.startswith("["):  # [::1]:5000
        return host[1 : host.index("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def base_url(registry: str, *, insecure: bool = False, scheme: str | None = None) -> str:
    """``http://`` for this machine or with ``insecure``; ``https://`` (verified) otherwise.

    Plain http to another machine would let anyone on the path swap the image, so it is
    refused unless asked for by name; the refusal happens here, before any traffic.
    """
    if scheme is None:
        scheme = "http" if is_loopback(registry) or insecure else "https"
    if scheme == "http" and not (is_loopback(registry) or insecure):
        raise RegistryError(
            f"refusing plain http to registry {registry}: only this machine's registries "
            "are reached without tls; pass insecure=True (--insecure) if you trust the network"
        )
    if scheme not in ("http", "https"):
        raise RegistryError(f"unknown scheme {scheme!r} for registry {registry}: use http or https")
    return f"{scheme}://{registry}"


def _reference(ref: str | Reference) -> tuple[str | None, Reference]:
    """A reference, and the scheme if one was written (``http://host:5000/app:1``)."""
    if isinstance(ref, Reference):
        return None, ref
    for scheme in ("http", "https"):
        if ref.startswith(f"{scheme}://"):
            return scheme, parse(ref[len(scheme) + 3 :])
    return None, parse(ref)


# --- authentication ---------------------------------------------------------------------------
def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="...",scope="..."`` -> ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


def _basic(auth: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()


# --- errors -----------------------------------------------------------------------------------
def _error_codes(body: bytes) -> list[tuple[str, str]]:
    """The registry's ``{"errors": [{"code": ..., "message": ...}]}``, if that is the body."""
    try:
        errors = json.loads(body).get("errors") or []
        return [(str(e.get("code", "")), str(e.get("message", ""))) for e in errors]
    except (ValueError, AttributeError, TypeError):
        return []


@dataclass(frozen=True)
class Reply:
    """A finished response: status, headers and the whole (small) body."""

    status: int  # the HTTP status
    headers: http.client.HTTPMessage  # response headers, case-insensitive
    body: bytes  # read whole: only small answers (manifests, errors) come as a Reply
    url: str  # the URL that answered, after redirects: a relative Location is relative to it

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def location(self) -> str:
        loc = self.header("Location")
        if not loc:
            raise RegistryError(f"registry answered {self.status} without a Location header")
        # Registries may send a relative Location; it is relative to the request URL.
        return urllib.parse.urljoin(self.url, loc)


# --- the client -------------------------------------------------------------------------------
class Client:
    """A session with one registry: keep-alive connections, credentials and the trace.

    ``trace`` receives one line per HTTP exchange, e.g.
    ``GET /v2/app/manifests/latest -> 200 (application/vnd.oci.image.manifest.v1+json, 1.2 kB)``,
    so a notebook can show the protocol as it happens.
    """

    def __init__(
        self,
        registry: str,
        *,
        insecure: bool = False,
        auth: tuple[str, str] | None = None,
        trace: Trace | None = None,
        scheme: str | None = None,
        timeout: float = 60.0,
    ):
        self.registry = registry
        self.base = base_url(registry, insecure=insecure, scheme=scheme)
        self.insecure = insecure
        self.auth = auth
        self.trace = trace
        self.timeout = timeout
        self._conns: dict[str, http.client.HTTPConnection] = {}
        self._authorization: str | None = None  # sent to the registry's own host only
        self._scopes: set[str] = set()  # every scope a challenge named, asked for together

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    # --- one exchange -----------------------------------------------------------------------
    def _connection(self, origin: str, fresh: bool) -> http.client.HTTPConnection:
        conn = self._conns.get(origin)
        if conn is not None and not fresh:
            return conn
        if conn is not None:
            conn.close()
        scheme, netloc = origin.split("://", 1)
        if scheme == "https":
            ctx = ssl.create_default_context()
            if self.insecure:  # asked for: a self-signed or private-CA registry
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(netloc, timeout=self.timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(netloc, timeout=self.timeout)
        self._conns[origin] = conn
        return conn

    def _roundtrip(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> http.client.HTTPResponse:
        """Send one request and read the status line and headers; the body is left unread."""
        parts = urllib.parse.urlsplit(url)
        # Redirects and token realms name other hosts: the http rule applies to them too.
        base_url(parts.netloc, insecure=self.insecure, scheme=parts.scheme)
        origin = f"{parts.scheme}://{parts.netloc}"
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        reused = origin in self._conns
        for attempt in range(2):
            conn = self._connection(origin, fresh=attempt > 0)
            try:
                conn.request(
                    method, target, body=body, headers={"User-Agent": _USER_AGENT, **headers}
                )
                resp = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A keep-alive connection the server closed while idle: retry once, fresh.
                conn.close()
                if attempt or not reused:
                    raise RegistryError(
                        f"registry {parts.netloc} closed the connection during {method} {target}"
                    ) from None
            except OSError as e:
                conn.close()
                raise _connect_error(parts.netloc, e, self.timeout) from None
        if self.trace:
            self.trace(_trace_line(method, target, len(body), resp))
        return resp

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> tuple[http.client.HTTPResponse, str]:
        """One request with authentication and redirects handled; returns it and its URL."""
        url = urllib.parse.urljoin(self.base, url)
        answered_challenge = False
        for _ in range(_REDIRECTS + 2):
            hdrs = dict(headers)
            # Credentials go to the registry itself, never to where it redirects (a CDN or
            # a bucket with a signed URL would reject them, or worse, keep them).
            if self._authorization and url.startswith(self.base + "/"):
                hdrs["Authorization"] = self._authorization
            resp = self._roundtrip(method, url, hdrs, body)
            if resp.status == 401 and not answered_challenge:
                challenge = resp.headers.get("WWW-Authenticate", "")
                resp.read()
                if not challenge:
                    raise RegistryError(
                        f"registry {self.registry} answered 401 without saying how to log in"
                    )
                self._authenticate(challenge)
                answered_challenge = True
                continue
            if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                resp.read()
                url = urllib.parse.urljoin(url, resp.headers["Location"])
                if resp.status == 303:
                    method, body = "GET", b""
                continue
            return resp, url
        raise RegistryError(f"registry {self.registry} redirected {method} too many times")

    def _authenticate(self, challenge: str) -> None:
        """Answer a 401: basic credentials, or a bearer token from the realm it names."""
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self.auth is None:
                raise RegistryError(
                    f"registry {self.registry} needs a user name and password; "
                    "pass auth=(user, password)"
                )
            self._authorization = _basic(self.auth)
        elif scheme == "bearer":
            if "realm" not in params:
                raise RegistryError(
                    f"registry {self.registry} sent a bearer challenge without realm"
                )
            self._scopes |= set(params.get("scope", "").split())
            self._authorization = f"Bearer {self._token(params)}"
        else:
            raise RegistryError(
                f"registry {self.registry} asks for {scheme!r} authentication, "
                "which containerlab does not speak (only basic and bearer)"
            )

    def want_scope(self, scope: str) -> None:
        """Ask for this scope too whenever a token is fetched (``repository:NAME:pull,push``).

        Docker asks for push rights (and pull on a mount's source) up front, so a push costs
        one challenge instead of one per new kind of request, and mounts are allowed.
        """
        self._scopes.add(scope)

    def _token(self, params: dict[str, str]) -> str:
        """Docker's token flow: GET realm?service=..&scope=.. (anonymous, or basic auth)."""
        query = [("service", params["service"])] if "service" in params else []
        query += [("scope", s) for s in sorted(self._scopes)]
        url = params["realm"] + ("&" if "?" in params["realm"] else "?")
        url += urllib.parse.urlencode(query)
        headers = {"Authorization": _basic(self.auth)} if self.auth else {}
        resp = self._roundtrip("GET", url, headers, b"")
        body = resp.read(MAX_MANIFEST)
        if resp.status != 200:
            who = "the credentials" if self.auth else "anonymous access"
            raise RegistryError(
                f"token server {urllib.parse.urlsplit(url).netloc} refused {who} "
                f"({resp.status}); check the user name and password"
            )
        try:
            doc = json.loads(body)
            return str(doc.get("token") or doc["access_token"])
        except (ValueError, KeyError, AttributeError):
            raise RegistryError("the token server's answer has no token") from None

    # --- requests the protocol uses ---------------------------------------------------------
    def call(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        ok: tuple[int, ...] = (200,),
        what: str = "",
    ) -> Reply:
        """A request whose answer is small: read whole, and any status not in ``ok`` raised."""
        resp, final = self._send(method, url, headers or {}, body)
        try:
            data = resp.read(MAX_MANIFEST + 1)
        except (http.client.IncompleteRead, OSError) as e:
            raise RegistryError(f"registry {self.registry} broke off its answer: {e}") from None
        if len(data) > MAX_MANIFEST:
            resp.close()
            self._drop(final)
            raise RegistryError(f"registry {self.registry} sent more than {human(MAX_MANIFEST)}")
        reply = Reply(resp.status, resp.headers, data, final)
        if reply.status not in ok:
            raise self._error(method, url, reply, what)
        return reply

    @contextlib.contextmanager
    def stream(
        self, method: str, url: str, *, what: str = ""
    ) -> Iterator[http.client.HTTPResponse]:
        """A request whose body the caller reads in chunks (a blob)."""
        resp, final = self._send(method, url, {}, b"")
        try:
            if resp.status != 200:
                raise self._error(
                    method,
                    url,
                    Reply(resp.status, resp.headers, resp.read(MAX_MANIFEST), final),
                    what,
                )
            yield resp
        finally:
            if not resp.isclosed():
                # Left before the end: the rest of the body is still on the socket, so this
                # connection cannot carry another request.
                resp.close()
                self._drop(final)

    def _drop(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        conn = self._conns.pop(f"{parts.scheme}://{parts.netloc}", None)
        if conn is not None:
            conn.close()

    def _error(self, method: str, url: str, reply: Reply, what: str) -> ContainerlabError:
        codes = _error_codes(reply.body)
        code = codes[0][0] if codes else ""
        detail = "; ".join(f"{c}: {m}" if m else c for c, m in codes)
        thing = what or f"{method} {urllib.parse.urlsplit(url).path}"
        if reply.status == 404 and code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"):
            return ImageNotFoundError(f"{thing} not found in the registry ({code})")
        if reply.status == 404 and code == "BLOB_UNKNOWN":
            return RegistryError(
                f"{thing} is missing from the registry ({code}): the image there is incomplete; "
                "push it again"
            )
        if reply.status == 404:
            return ImageNotFoundError(f"{thing} not found in the registry ({reply.status})")
        status = f"{reply.status} {http.client.responses.get(reply.status, '')}".strip()
        if reply.status == 401 and self.auth and (self._authorization or "").startswith("Basic"):
            return RegistryError(
                f"registry {self.registry} refused the credentials of user '{self.auth[0]}' "
                f"({detail or status}); check the user name and password"
            )
        if reply.status in (401, 403):
            hint = (
                f"check that '{self.auth[0]}' may use it"
                if self.auth
                else "pass auth=(user, password)"
            )
            return RegistryError(
                f"registry {self.registry} refused access to {thing} ({detail or status}): "
                f"it does not exist or needs credentials; {hint}"
            )
        text = detail or reply.body[:200].decode(errors="replace").strip() or "no details"
        return RegistryError(f"registry {self.registry} answered {status} to {thing}: {text}")

    # --- the protocol ---------------------------------------------------------------------
    def get_manifest(
        self, repository: str, reference: str, *, expected: str | None = None, what: str = ""
    ) -> tuple[bytes, str, str]:
        """(raw bytes, media type, digest) of a manifest or index, verified.

        The digest is computed over the exact bytes received: re-serialising the JSON would
        change them. It must match the digest asked for, and the ``Docker-Content-Digest``
        the registry claims.
        """
        what = what or f"manifest {repository}:{reference}"
        reply = self.call(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            headers={"Accept": oci.ACCEPT},
            what=what,
        )
        data = reply.body
        digest = oci.digest_of(data)
        claimed = reply.header("Docker-Content-Digest")
        for name, want in (("the digest asked for", expected), ("the registry's digest", claimed)):
            if want and want.startswith("sha256:") and want != digest:
                raise DigestMismatchError(
                    f"{what}: the bytes received hash to {digest[:19]}..., not {name} "
                    f"{want[:19]}...; corrupt or tampered with: nothing was stored"
                )
        return data, _media_type(reply, data, what), digest

    def blob_exists(self, repository: str, digest: str) -> bool:
        reply = self.call("HEAD", f"/v2/{repository}/blobs/{digest}", ok=(200, 404))
        return reply.status == 200

    def fetch_blob(
        self,
        repository: str,
        descriptor: dict[str, Any],
        store: Store,
        progress: Progress,
        *,
        what: str = "",
    ) -> None:
        """Stream a blob into the store, hashed on the way; kept only if digest and size match."""
        digest, size = descriptor["digest"], int(descriptor["size"])
        what = what or f"blob {short(digest)}"
        with self.stream("GET", f"/v2/{repository}/blobs/{digest}", what=what) as resp:
            try:
                with store.ingest(expected=digest, size=size) as w:
                    _copy(resp, w, size, lambda n: progress.advance(digest, n), what)
            except DigestMismatchError as e:
                raise DigestMismatchError(f"{what} from registry {self.registry}: {e}") from None

    def mount_blob(self, repository: str, digest: str, source: str) -> str | None:
        """Ask the registry to link a blob from another repository: no bytes move.

        Returns None when it did (201); otherwise the upload it started instead (202).
        """
        q = urllib.parse.urlencode({"mount": digest, "from": source})
        reply = self.call("POST", f"/v2/{repository}/blobs/uploads/?{q}", ok=(201, 202))
        return None if reply.status == 201 else reply.location

    def upload_blob(
        self,
        repository: str,
        digest: str,
        store: Store,
        progress: Progress,
        *,
        chunk_size: int = DEFAULT_CHUNK,
        location: str | None = None,
    ) -> None:
        """POST (start) -> PATCH per chunk -> PUT ?digest= (the registry checks the digest)."""
        if location is None:
            location = self.call("POST", f"/v2/{repository}/blobs/uploads/", ok=(202,)).location
        size = store.blob_size(digest)
        octets = {"Content-Type": "application/octet-stream"}
        with store.open_blob(digest) as f:
            last = b""
            if size > chunk_size:
                offset = 0
                while chunk := f.read(chunk_size):
                    reply = self.call(
                        "PATCH",
                        location,
                        body=chunk,
                        ok=(202,),
                        headers={**octets, "Content-Range": f"{offset}-{offset + len(chunk) - 1}"},
                    )
                    location = reply.location  # every PATCH answers with the next Location
                    offset += len(chunk)
                    progress.advance(digest, len(chunk))
            else:
                last = f.read()
        sep = "&" if "?" in location else "?"
        reply = self.call(
            "PUT",
            f"{location}{sep}{urllib.parse.urlencode({'digest': digest})}",
            body=last,
            headers=octets,
            ok=(201,),
            what=f"upload of blob {short(digest)}",
        )
        progress.advance(digest, len(last))
        claimed = reply.header("Docker-Content-Digest")
        if claimed and claimed != digest:
            raise DigestMismatchError(
                f"the registry stored blob {short(digest)} as {claimed[:19]}...; upload corrupted"
            )

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """Publish a manifest (or index) under a tag or its digest; returns its digest.

        Content-Type must be the manifest's own mediaType, or the registry answers
        MANIFEST_INVALID.
        """
        digest = oci.digest_of(data)
        reply = self.call(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            body=data,
            headers={"Content-Type": media_type},
            ok=(201,),
            what=f"manifest {repository}:{reference}",
        )
        claimed = reply.header("Docker-Content-Digest")
        if claimed and claimed != digest:
            raise DigestMismatchError(
                f"the registry stored the manifest as {claimed[:19]}..., not {digest[:19]}..."
            )
        return digest

    def tags(self, repository: str) -> list[str]:
        reply = self.call("GET", f"/v2/{repository}/tags/list", what=f"repository {repository}")
        return list(json.loads(reply.body).get("tags") or [])


def _copy(
    resp: http.client.HTTPResponse, w: Any, size: int, advance: Callable[[int], None], what: str
) -> None:
    """Copy exactly ``size`` bytes of a response into a blob writer, or say what went wrong."""
    view = memoryview(bytearray(_READ))
    got = 0
    # Never read more than size + 1: one byte too many is enough to refuse it, and a hostile
    # server cannot make us store an endless stream.
    while got <= size:
        try:
            n = resp.readinto(view[: min(_READ, size + 1 - got)])
        except (http.client.IncompleteRead, OSError) as e:
            raise RegistryError(
                f"{what}: the transfer broke off after {got} of {size} bytes ({e}); "
                "nothing was stored, try again"
            ) from None
        if not n:  # http.client returns 0 at EOF even when Content-Length promised more
            break
        w.write(view[:n])
        got += n
        advance(n)
    if got < size:
        raise RegistryError(
            f"{what} is truncated: the registry sent {got} of {size} bytes; "
            "nothing was stored, try again"
        )
    if got > size:
        raise RegistryError(
            f"{what}: the registry sent more than the {size} bytes the manifest says; "
            "nothing was stored"
        )


def _media_type(reply: Reply, data: bytes, what: str) -> str:
    """The manifest's media type: Content-Type, which must agree with what the body says."""
    served = (reply.header("Content-Type") or "").split(";")[0].strip()
    known = (*oci.MANIFEST_TYPES, *oci.INDEX_TYPES)
    if served.startswith("application/vnd.docker.distribution.manifest.v1"):
        raise RegistryError(
            f"{what} is a schema 1 manifest ({served}), obsolete and not supported; "
            "push the image again with a current tool"
        )
    if served and served not in known and served not in ("application/json", "text/plain"):
        raise RegistryError(
            f"{what}: the registry answered {served!r}, not an image manifest "
            f"(expected one of {', '.join(known)})"
        )
    try:
        declared = oci.media_type_of(data)
    except ImageError as e:
        raise RegistryError(
            f"{what}: the registry sent something that is not a manifest: {e}"
        ) from None
    if served in known and declared != served:
        raise RegistryError(f"{what} was served as {served!r} but declares {declared!r}")
    return declared


def _connect_error(netloc: str, e: OSError, timeout: float) -> RegistryError:
    if isinstance(e, ConnectionRefusedError):
        return RegistryError(f"cannot reach registry {netloc}: connection refused; is it running?")
    if isinstance(e, socket.gaierror):
        return RegistryError(f"cannot resolve registry host {netloc}: {e.strerror}; check the name")
    if isinstance(e, ssl.SSLCertVerificationError):
        return RegistryError(
            f"registry {netloc} has a certificate that is not trusted ({e.verify_message}); "
            "pass insecure=True (--insecure) only if you trust it"
        )
    if isinstance(e, ssl.SSLError):
        return RegistryError(
            f"tls with registry {netloc} failed ({e.reason}); if it serves plain http, "
            "pass insecure=True (--insecure)"
        )
    if isinstance(e, TimeoutError):
        return RegistryError(f"registry {netloc} did not answer within {timeout:.0f} s")
    return RegistryError(f"cannot reach registry {netloc}: {e.strerror or e}")


def _trace_line(method: str, target: str, sent: int, resp: http.client.HTTPResponse) -> str:
    # The upload state token is a long opaque blob: shortened so the line stays readable.
    target = re.sub(r"_state=[^&]*", "_state=…", target)
    line = f"{method} {target}" + (f" [{human(sent)}]" if sent else "")
    line += f" -> {resp.status}"
    info = []
    ctype = resp.headers.get("Content-Type")
    if ctype and resp.status < 300:
        info.append(ctype.split(";")[0])
    length = resp.headers.get("Content-Length")
    if length and length != "0":
        info.append(human(int(length)))
    return line + (f" ({', '.join(info)})" if info else "")


# --- pull and push ----------------------------------------------------------------------------
def pull(
    ref: str | Reference,
    store: Store,
    *,
    platform: str | None = None,
    insecure: bool = False,
    auth: tuple[str, str] | None = None,
    progress: Progress | None = None,
    trace: Trace | None = None,
) -> str:
    """Download an image into the store and tag it; returns its manifest digest.

    For a multi-platform image (an index) the manifest for ``platform`` (default: this
    machine, e.g. ``linux/amd64``) is chosen. Every byte is verified before it is kept;
    blobs the store already has are not downloaded.
    """
    scheme, r = _reference(ref)
    progress = progress or NullProgress()
    name = f"image '{r.familiar}'"
    # pending: a concurrent `image prune` must not remove blobs before the tag points at them.
    with (
        store.pending(),
        Client(r.api_host, insecure=insecure, auth=auth, trace=trace, scheme=scheme) as c,
    ):
        data, media_type, _ = c.get_manifest(
            r.repository, r.digest or r.tag or "latest", expected=r.digest, what=name
        )
        if media_type in oci.INDEX_TYPES:
            try:
                entry = oci.select_platform(oci.parse_index(data), platform)
            except ImageError as e:
                raise ImageNotFoundError(f"{name}: {e}") from None
            data, media_type, _ = c.get_manifest(
                r.repository,
                entry["digest"],
                expected=entry["digest"],
                what=f"{name} for {oci.platform_of(entry)}",
            )
            if media_type not in oci.MANIFEST_TYPES:
                raise RegistryError(f"{name}: the index entry for {platform} is not a manifest")
        try:
            manifest = oci.parse_manifest(data, media_type)
        except ImageError as e:
            raise RegistryError(f"{name}: the registry's manifest is unusable: {e}") from None
        blobs = [manifest["config"], *manifest["layers"]]
        for d in blobs:
            progress.start(d["digest"], int(d["size"]))
        for d in blobs:
            if store.has_blob(d["digest"]):
                progress.done(d["digest"], "exists")
                continue
            try:
                c.fetch_blob(
                    r.repository, d, store, progress, what=f"blob {short(d['digest'])} of {name}"
                )
            except BaseException:
                progress.done(d["digest"], "failed")
                raise
            progress.done(d["digest"], "pulled")
        return store.add_image(data, r)


def push(
    ref: str | Reference,
    store: Store,
    *,
    source: str | Reference | None = None,
    insecure: bool = False,
    auth: tuple[str, str] | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Progress | None = None,
    trace: Trace | None = None,
) -> str:
    """Upload an image from the store to ``ref``; returns the manifest digest.

    ``source`` names the image in the store (default: ``ref`` itself). Blobs go first,
    the manifest last. A blob the repository has is skipped; one that another repository
    of the same registry has (``source``, or another tag of the image) is mounted.
    """
    scheme, r = _reference(ref)
    # Made first: a refused endpoint (plain http elsewhere) is reported before anything else.
    client = Client(r.api_host, insecure=insecure, auth=auth, trace=trace, scheme=scheme)
    src = parse(source) if isinstance(source, str) else (source or r)
    image = store.image(src)
    if r.digest and r.digest != image.digest:
        raise ImageError(
            f"cannot push {image.digest[:19]}... as '{r.familiar}': the digests differ"
        )
    progress = progress or NullProgress()
    # Repositories of the same registry that should have these blobs: where the image came
    # from. The registry checks that we may read them, so guessing wrong only costs a 202.
    siblings = [parse(t) for t in (str(src), *image.tags)]
    mount_from = next(
        (
            s.repository
            for s in siblings
            if s.registry == r.registry and s.repository != r.repository
        ),
        None,
    )
    blobs = [*image.layers, image.manifest["config"]]
    client.want_scope(f"repository:{r.repository}:pull,push")
    if mount_from:
        client.want_scope(f"repository:{mount_from}:pull")
    with client as c:
        for d in blobs:
            progress.start(d["digest"], int(d["size"]))
        for d in blobs:
            digest = d["digest"]
            try:
                if c.blob_exists(r.repository, digest):
                    progress.done(digest, "exists")
                    continue
                location = c.mount_blob(r.repository, digest, mount_from) if mount_from else None
                if mount_from and location is None:
                    progress.done(digest, "mounted")
                    continue
                c.upload_blob(
                    r.repository, digest, store, progress, chunk_size=chunk_size, location=location
                )
            except BaseException:
                progress.done(digest, "failed")
                raise
            progress.done(digest, "pushed")
        return c.put_manifest(
            r.repository, r.tag or image.digest, image.manifest_bytes, image.media_type
        )


def list_tags(
    ref: str | Reference,
    *,
    insecure: bool = False,
    auth: tuple[str, str] | None = None,
    trace: Trace | None = None,
) -> list[str]:
    """The tags of a repository (``GET /v2/<name>/tags/list``)."""
    scheme, r = _reference(ref)
    with Client(r.api_host, insecure=insecure, auth=auth, trace=trace, scheme=scheme) as c:
        return c.tags(r.repository)
