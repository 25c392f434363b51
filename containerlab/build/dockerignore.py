"""The build context: which files of a directory a build may read, after ``.dockerignore``.

Docker's rules (moby/patternmatcher, the same code the Docker CLI and BuildKit use): one
pattern a line; a line starting with ``#`` in column 1 is a comment; each pattern is trimmed,
cleaned like Go's ``filepath.Clean`` (so ``./a`` is ``a``) and loses one leading ``/`` (the
context root is both the working and the root directory). Patterns follow Go's
``filepath.Match`` (``*`` and ``?`` never cross a ``/``, ``[a-z]`` classes, ``\\`` escapes),
plus ``**`` for any number of directories, even none. A pattern that matches a directory
excludes everything under it. ``!pattern`` re-includes, and the last pattern that matches a
path decides. ``.dockerignore`` and the Dockerfile may exclude themselves: the builder still
reads them, they are just not part of the context the steps can ``COPY``.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from containerlab.errors import BuildError

IGNORE_FILE = ".dockerignore"


@dataclass(frozen=True)
class Pattern:
    """One cleaned line of a ``.dockerignore``."""

    text: str  # the cleaned pattern, without the "!" ("*.md", "docs/**")
    exclusion: bool  # True for "!pattern": re-include what earlier lines excluded
    line: int  # 1-based line in the file (0 for patterns given in code)
    regex: re.Pattern[str]  # the whole-path regular expression it compiles to


@dataclass(frozen=True)
class Matcher:
    """All the patterns of a context, in file order (order matters: the last match wins)."""

    patterns: tuple[Pattern, ...]  # () when there is no .dockerignore: nothing is ignored

    @property
    def has_exclusions(self) -> bool:
        """Whether some ``!`` line may re-include a path under an ignored directory."""
        return any(p.exclusion for p in self.patterns)

    def ignored(self, relpath: str, is_dir: bool = False) -> bool:
        """Whether ``relpath`` (relative to the context, ``/``-separated) is left out.

        ``is_dir`` does not change the answer (Docker's patterns do not tell files from
        directories); it is accepted so callers can say what they have.
        """
        path = _clean(relpath)
        if path in (".", ""):
            return False  # Docker never ignores the context root itself
        parents = _parents(path)
        matched = False
        for pattern in self.patterns:
            # An inclusion cannot change an already ignored path, nor an exclusion a kept one.
            if pattern.exclusion != matched:
                continue
            hit = bool(pattern.regex.match(path)) or any(pattern.regex.match(p) for p in parents)
            if hit:
                matched = not pattern.exclusion
        return matched


def _parents(path: str) -> list[str]:
    """``a/b/c`` -> ``["a", "a/b"]``: a pattern matching a parent ignores its contents."""
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts) - 1)]


def _clean(path: str) -> str:
    """Go's ``filepath.Clean`` for ``/`` paths (Python keeps a leading ``//``, Go does not)."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def compile_pattern(text: str, line: int = 0) -> Pattern:
    """Clean one pattern line and compile it (``BuildError`` names the line if it is bad)."""
    pattern = text.strip()
    exclusion = pattern.startswith("!")
    if exclusion:
        pattern = pattern[1:].strip()
        if not pattern:
            raise BuildError(
                f"{IGNORE_FILE}:{line}: illegal exclusion pattern '!'; "
                "write the path to re-include after the '!'"
            )
    pattern = _clean(pattern)
    if len(pattern) > 1 and pattern.startswith("/"):
        pattern = pattern[1:]
    try:
        regex = re.compile(_to_regex(pattern))
    except (ValueError, re.error) as err:
        raise BuildError(
            f"{IGNORE_FILE}:{line}: bad pattern {text.strip()!r} ({err}); "
            "check the [ ] classes and escape a literal [ as \\["
        ) from None
    return Pattern(pattern, exclusion, line, regex)


def _to_regex(pattern: str) -> str:
    """Translate a cleaned pattern as moby/patternmatcher does (``**`` included)."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1  # "**/" is "**": the "/" belongs to the any-directories part
                # "**" at the end takes everything; elsewhere any run of whole directories.
                out.append(".*" if i >= n else "(?:.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i + 1 < n:
                i += 1
                out.append(re.escape(pattern[i]))
            else:
                out.append(re.escape("\\"))
        elif ch == "[":
            end, cls = _char_class(pattern, i)
            out.append(cls)
            i = end
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return "".join(out)


def _char_class(pattern: str, start: int) -> tuple[int, str]:
    """A Go ``[...]`` class at ``start``: returns (index after ``]``, Python class text)."""
    i = start + 1
    out = ["["]
    if i < len(pattern) and pattern[i] == "^":
        out.append("^")
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        raise ValueError("empty character class")  # Go's filepath.Match rejects "[]"
    while i < len(pattern) and pattern[i] != "]":
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "-" and len(out) > 1 and i + 1 < len(pattern) and pattern[i + 1] != "]":
            out.append("-")  # a range, a-z
        else:
            out.append(re.escape(ch))
        i += 1
    if i >= len(pattern):
        raise ValueError("unterminated character class")
    out.append("]")
    return i + 1, "".join(out)


def parse(text: str) -> Matcher:
    """The patterns of a ``.dockerignore`` text (comments and blank lines dropped)."""
    text = text.removeprefix("\ufeff")  # a UTF-8 BOM, as Docker strips it
    patterns = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.startswith("#") or not raw.strip():
            continue
        patterns.append(compile_pattern(raw, number))
    return Matcher(tuple(patterns))


def load(context_dir: str | os.PathLike[str]) -> Matcher:
    """Read ``<context>/.dockerignore``; without one, nothing is ignored."""
    path = Path(context_dir) / IGNORE_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return Matcher(())
    return parse(text)


def walk(
    context_dir: str | os.PathLike[str], matcher: Matcher, *, include_dirs: bool = False
) -> Iterator[str]:
    """The relative paths the build context holds, sorted, parents before children.

    Yields every non-directory entry (files, symlinks, not followed) that is not ignored.
    With ``include_dirs`` it also yields the directories the context keeps: those not
    ignored, and ignored ones that hold a re-included path (Docker sends such a parent so
    the file has somewhere to live). An ignored directory is still descended into when some
    ``!`` pattern could re-include something inside, as Docker does.
    """
    yield from _walk(Path(context_dir), "", matcher, include_dirs)


def _walk(root: Path, rel: str, matcher: Matcher, include_dirs: bool) -> Iterator[str]:
    directory = root / rel if rel else root
    with os.scandir(directory) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        path = f"{rel}/{entry.name}" if rel else entry.name
        if entry.is_dir(follow_symlinks=False):
            ignored = matcher.ignored(path, is_dir=True)
            if ignored and not matcher.has_exclusions:
                continue  # nothing under it can come back: do not even look
            inside = _walk(root, path, matcher, include_dirs)
            if not ignored:
                if include_dirs:
                    yield path
                yield from inside
                continue
            first = next(inside, None)
            if first is None:
                continue
            if include_dirs:
                yield path
            yield first
            yield from inside
        elif not matcher.ignored(path):
            yield path
