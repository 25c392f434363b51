"""``ADD <URL> <dest>``: the builder downloads the file itself, on the host.

Docker's rules, kept here, and why:

- **The builder fetches, not a container.** The image may be ``scratch`` (no wget in it) and
  a step must not depend on the container's network; BuildKit's HTTP source runs in the
  daemon too. Here it is ``urllib.request`` (standard library only), which also honours the
  usual ``http_proxy``/``no_proxy`` variables, as Docker's daemon does.
- **The name** of the downloaded file is the last path component of the URL, so ``ADD
  https://host/a/tool.sh /bin/`` makes ``/bin/tool.sh``; a URL with none (``https://host/``)
  can only go to a file path. The copy into the image is then an ordinary COPY of that file.
- **Mode and mtime**: HTTP carries no file mode, so the file gets 0600 (``--chmod`` chooses
  another); its mtime is the server's ``Last-Modified`` when it sends one, else now.
- **No unpacking**: a downloaded archive stays a file (only local tars are extracted, unless
  ``ADD --unpack=true`` asks for it, as in Docker).
- **The cache key is the content**, never the URL alone: the same URL may serve new bytes, so
  Docker downloads on every build and compares digests. With ``--checksum`` the digest is
  known before downloading: a cached step needs no download at all, and an uncached one
  fails if the bytes differ.
- **Failing clearly**: one error naming the URL and the HTTP status or the reason; redirects
  are followed to http(s) only (urllib would also follow one to ftp://), and a silent server
  fails after ``TIMEOUT`` seconds instead of hanging the build.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from containerlab.errors import BuildError

TIMEOUT = 30.0  # seconds without a byte (connect, headers or body) before giving up
UNNAMED = "__unnamed__"  # BuildKit's file name for a URL with no last path component
MODE = 0o600  # what Docker gives a downloaded file when ADD has no --chmod
_CHUNK = 1 << 20
_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}  # what --checksum takes: hex length
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class Download:
    """A file fetched for ADD, in the builder's temporary directory."""

    url: str  # as written in the Dockerfile (redirects not shown)
    path: Path  # where the bytes are, mode 0600, mtime from Last-Modified
    digest: str  # "<algorithm>:<hex>" of the bytes: sha256, or --checksum's algorithm
    size: int  # bytes written


def is_url(source: str) -> bool:
    """An http(s) source: Docker's test is the prefix, nothing cleverer."""
    return source.startswith(("http://", "https://"))


def is_git(source: str) -> bool:
    """A source Docker would clone rather than download: ``git@host:repo``, ``git://``,
    ``ssh://`` or an http(s) URL of a ``.git`` repository (optionally ``#ref``)."""
    if source.startswith(("git@", "git://", "ssh://")):
        return True
    return is_url(source) and urllib.parse.urlsplit(source).path.endswith(".git")


def other_scheme(source: str) -> str | None:
    """The scheme of a ``scheme://...`` source that is not http(s) (``ftp``), else None."""
    m = _SCHEME.match(source)
    return m.group(0)[:-3].lower() if m and not is_url(source) else None


def check_url(url: str) -> None:
    """Refuse a URL urllib could not even try (no host, a bad port, a broken IPv6 literal)
    before any cache lookup, so the error is the same whether the step is cached or not."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as e:
        raise BuildError(f"malformed URL {url}: {e}; check the URL") from None
    if not parts.hostname:
        raise BuildError(f"malformed URL {url}: no host; write it as http(s)://host/path")


def file_name(url: str) -> str | None:
    """The URL's last path component, %-decoded (query and fragment ignored), or None."""
    name = posixpath.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    return name if name not in ("", ".", "..") and "\0" not in name else None


def parse_checksum(value: str) -> tuple[str, str]:
    """``--checksum=sha256:<hex>`` as (algorithm, lower-case hex)."""
    algorithm, _, hexdigest = value.partition(":")
    algorithm, hexdigest = algorithm.lower(), hexdigest.lower()
    length = _ALGORITHMS.get(algorithm)
    if length is None or not re.fullmatch(f"[0-9a-f]{{{length}}}", hexdigest):
        raise BuildError(
            f"invalid --checksum={value}: use sha256:<64 hex digits> "
            "(sha384 and sha512 are accepted too)"
        )
    return algorithm, hexdigest


def download(url: str, path: Path, *, checksum: str | None = None) -> Download:
    """Fetch ``url`` into ``path`` (streamed and hashed in one pass), mode 0600.

    ``checksum`` (``sha256:<hex>``): the bytes must have that digest, or the file is removed
    and the error names the URL, the expected and the actual digest.
    """
    # Imported here: urllib.request loads ssl (tens of ms), which a build without a URL
    # never needs.
    import http.client
    import urllib.error
    import urllib.request

    class HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
        """urllib's redirects, minus ftp://: an ADD URL stays http(s) wherever it leads."""

        def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
            if not is_url(urllib.parse.urljoin(req.full_url, newurl)):
                raise urllib.error.HTTPError(
                    newurl, code, f"{msg}, a redirect to {newurl} (not http or https)", headers, fp
                )
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    check_url(url)
    algorithm, expected = parse_checksum(checksum) if checksum else ("sha256", None)
    h = hashlib.new(algorithm)
    opener = urllib.request.build_opener(HttpOnlyRedirects())
    request = urllib.request.Request(url, headers={"User-Agent": "containerlab/0.1 (ADD)"})
    size = 0
    try:
        with opener.open(request, timeout=TIMEOUT) as resp:
            last_modified = resp.headers.get("Last-Modified")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE)
            with os.fdopen(fd, "wb") as f:
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    h.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
    except (OSError, ValueError, http.client.HTTPException) as e:
        path.unlink(missing_ok=True)  # no half file left for the COPY to pick up
        raise BuildError(f"cannot download the URL {url}: {_why(e)}") from None
    actual = f"{algorithm}:{h.hexdigest()}"
    if expected is not None and actual != f"{algorithm}:{expected}":
        path.unlink()
        raise BuildError(
            f"checksum mismatch for the URL {url}: expected {algorithm}:{expected}, "
            f"got {actual}; the server sent other bytes (fix --checksum if they are right)"
        )
    mtime = _http_date(last_modified)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    os.chmod(path, MODE)  # O_CREAT's mode went through the umask
    return Download(url, path, actual, size)


def _why(e: Exception) -> str:
    """Why a download failed, in words: urllib wraps most causes in a URLError's reason."""
    import urllib.error

    if isinstance(e, urllib.error.HTTPError):
        e.close()
        return f"the server answered HTTP {e.code} {e.reason}; check the URL"
    reason: object = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused; is the server running?"
    if isinstance(reason, TimeoutError):
        return f"no answer within {TIMEOUT:.0f} s; is the server up?"
    if isinstance(reason, OSError):  # a name that does not resolve, a reset, tls
        return f"{reason.strerror or reason}; check the URL and the network"
    if isinstance(reason, ValueError):  # a port that is not a number, an unknown url type
        return f"malformed URL ({reason}); check the URL"
    if isinstance(reason, str):  # URLError("no host given")
        return f"{reason}; check the URL"
    # http.client's own: IncompleteRead (the body ended early), a garbled status line
    return f"the transfer broke off ({type(reason).__name__}: {reason})"


def _http_date(value: str | None) -> float | None:
    """``Last-Modified`` as epoch seconds, None when absent or unreadable."""
    if not value:
        return None
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
