"""The Dockerfile parser: text in, a plan of stages and typed instructions out.

A Dockerfile is read in three passes, as BuildKit reads it. Lines first: parser directives
(``# escape=``, ``# syntax=``) at the very top, ``#`` comment lines dropped everywhere (even
inside a continued instruction), an instruction continued on the next line by the escape
character at the end of the line, here-documents (``RUN <<EOF``) swallowing the lines up to
their delimiter. Then each instruction's arguments: ``--flags``, the JSON (exec) or shell
form, ``KEY=value`` pairs. Last, variables: ``$VAR``, ``${VAR:-default}`` and friends are
replaced by the builder itself in ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME
WORKDIR (and ARG defaults), with the ENV and ARG values in scope at that line; RUN, CMD and
ENTRYPOINT keep their ``$`` for the shell that runs them. Every mistake is a ``BuildError``
that starts with ``file:line:column:``.

History strings follow Docker's classic builder (what ``docker history`` shows for images
built without BuildKit): ``/bin/sh -c echo hi`` for a RUN, and
``/bin/sh -c #(nop)  CMD ["sh"]`` for a step that only changes the config; see
:func:`created_by`.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from containerlab.errors import BuildError, ImageError

KEYWORDS = (
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
)
# The flags each instruction accepts (BuildKit's list); any other flag is an error.
FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "RUN": frozenset({"mount", "network", "security", "device"}),
    "COPY": frozenset({"from", "chown", "chmod", "link", "parents", "exclude"}),
    "ADD": frozenset({"chown", "chmod", "link", "exclude", "checksum", "keep-git-dir", "unpack"}),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "start-interval", "retries"}),
}
# Build args Docker accepts without an ARG line (and never reports as unused).
PREDEFINED_ARGS = frozenset(
    p
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
    for p in (name, name.lower())
)
DEFAULT_SHELL = ("/bin/sh", "-c")
_HEREDOC_CAPABLE = frozenset({"RUN", "COPY", "ADD"})
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9_.-]*$")
_DIRECTIVE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.*?)[ \t]*$")
_HEREDOC = re.compile(r"^(\d*)<<(-?)([\"']?)([A-Za-z_][A-Za-z0-9_.-]*)\3$")
_OCTAL_MODE = re.compile(r"^[0-7]{3,4}$")
_SIGNAL = re.compile(r"^(?:\d+|(?:SIG)?[A-Z][A-Z0-9]*(?:[+-]\d+)?)$", re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9}
_DURATION_NS["h"] = 3600 * 10**9


# --- the plan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heredoc:
    """A here-document: the lines after ``<<NAME`` up to a line holding only ``NAME``."""

    name: str  # the delimiter word, EOF; for COPY also the file name when dest is a directory
    content: str  # the body, every line ending in "\n"; variables already replaced for COPY/ADD
    expand: bool  # False when the delimiter was quoted (<<"EOF"): the body is taken literally
    strip_tabs: bool  # True for <<-EOF: leading tabs were removed from each body line
    fd: int | None  # the file descriptor written before << (2<<EOF), None for stdin


@dataclass(frozen=True)
class FromArgs:
    """``FROM [--platform=P] image [AS name]``."""

    image: str  # the image reference after ARG substitution, "scratch", or an earlier stage name
    name: str | None  # the stage name after AS, lower-cased (Docker compares names that way)
    platform: str | None  # --platform after substitution, None when not given


@dataclass(frozen=True)
class CommandArgs:
    """RUN, CMD, ENTRYPOINT: a command in shell form or exec (JSON) form."""

    shell_form: bool  # True: command is one string for the SHELL; False: an argv to exec as is
    command: tuple[str, ...]  # shell form: (the command line,); exec form: the JSON strings
    heredocs: tuple[Heredoc, ...] = ()  # RUN <<EOF bodies, in order (shell form only)


@dataclass(frozen=True)
class Chown:
    """``--chown=user[:group]``, names or numbers, resolved later in the image's /etc files."""

    user: str  # a user name or a uid
    group: str | None  # a group name or gid; None: the user's primary group (Docker: uid's value)


@dataclass(frozen=True)
class CopyArgs:
    """COPY and ADD: sources from the context (or a stage, or an image) to a destination."""

    sources: tuple[str, ...]  # paths or globs in the context (or --from root); URLs for ADD
    dest: str  # the destination; relative means relative to WORKDIR; a trailing "/" is a dir
    from_stage: str | None  # --from as written after substitution (stage name, index or image)
    from_index: int | None  # the earlier stage --from names, None when it names an image
    chown: Chown | None  # --chown, None to leave files owned by 0:0
    chmod: int | None  # --chmod as a number (0o755), None to keep the source modes
    link: bool  # --link: copy onto an empty layer (recorded; copies the same here)
    exclude: tuple[str, ...]  # --exclude patterns, filepath.Match rules like the sources
    heredocs: tuple[Heredoc, ...]  # COPY <<EOF dest: inline files, created before the sources
    parents: bool = False  # COPY --parents: keep the source's directories under dest
    checksum: str | None = None  # ADD --checksum=sha256:... for a URL source
    unpack: bool | None = None  # ADD --unpack: None means Docker's default (local tars unpack)
    keep_git_dir: bool = False  # ADD --keep-git-dir for a git source (recorded only)


@dataclass(frozen=True)
class KeyValueArgs:
    """ENV and LABEL: ``KEY=value ...`` or the legacy ``KEY value`` (one pair)."""

    pairs: tuple[tuple[str, str], ...]  # (key, value) in order, quotes removed, $VARs replaced


@dataclass(frozen=True)
class BuildArg:
    """One ``ARG name[=default]`` declaration and the value it has in this build."""

    name: str  # the variable name
    default: str | None  # the default after substitution; None when the ARG has none
    value: str | None  # --build-arg if given, else the default (or the global one); None: unset


@dataclass(frozen=True)
class ArgArgs:
    """``ARG name[=default] [name[=default]...]``."""

    args: tuple[BuildArg, ...]  # one entry per name, in order


@dataclass(frozen=True)
class Port:
    """One exposed port."""

    number: int  # 1..65535
    protocol: str  # "tcp" (the default), "udp" or "sctp"


@dataclass(frozen=True)
class ExposeArgs:
    """``EXPOSE 80 53/udp 8000-8002``: ranges are expanded to single ports, as Docker does."""

    ports: tuple[Port, ...]  # in order of appearance


@dataclass(frozen=True)
class PathArgs:
    """WORKDIR (a path; relative means relative to the previous WORKDIR)."""

    path: str  # after substitution


@dataclass(frozen=True)
class UserArgs:
    """``USER user[:group]``."""

    user: str  # a user name or uid
    group: str | None  # a group name or gid; None to use the user's primary group


@dataclass(frozen=True)
class VolumeArgs:
    """``VOLUME /a /b`` or ``VOLUME ["/a", "/b"]``."""

    paths: tuple[str, ...]  # mount points, after substitution


@dataclass(frozen=True)
class SignalArgs:
    """``STOPSIGNAL SIGTERM`` (a name, with or without SIG, or a number)."""

    signal: str  # as written, after substitution


@dataclass(frozen=True)
class ShellArgs:
    """``SHELL ["executable", "params"]``: the shell for the shell form of later steps."""

    shell: tuple[str, ...]  # at least one element


@dataclass(frozen=True)
class HealthcheckArgs:
    """``HEALTHCHECK [options] CMD command`` or ``HEALTHCHECK NONE``, as the config holds it."""

    test: tuple[str, ...]  # ("NONE",), ("CMD", argv...) or ("CMD-SHELL", "command line")
    interval: int | None  # nanoseconds (the config's unit); None: not given (Docker's 30s)
    timeout: int | None  # nanoseconds; None: not given (30s)
    start_period: int | None  # nanoseconds; None: not given (0s)
    start_interval: int | None  # nanoseconds; None: not given (5s)
    retries: int | None  # None: not given (3)


@dataclass(frozen=True)
class OnbuildArgs:
    """``ONBUILD INSTRUCTION``: a trigger stored in the config, run by builds FROM this image."""

    trigger: str  # the instruction text after ONBUILD, unexpanded ("RUN make")


@dataclass(frozen=True)
class MaintainerArgs:
    """``MAINTAINER name`` (deprecated by Docker; sets the config's author)."""

    name: str  # as written


Args = (
    FromArgs
    | CommandArgs
    | CopyArgs
    | KeyValueArgs
    | ArgArgs
    | ExposeArgs
    | PathArgs
    | UserArgs
    | VolumeArgs
    | SignalArgs
    | ShellArgs
    | HealthcheckArgs
    | OnbuildArgs
    | MaintainerArgs
)


@dataclass(frozen=True)
class Instruction:
    """One instruction of a Dockerfile, parsed for its keyword."""

    keyword: str  # upper-case: "RUN", "COPY", ...
    args: Args  # the typed arguments (FromArgs for FROM, CommandArgs for RUN/CMD/ENTRYPOINT...)
    line: int  # 1-based line of the keyword
    column: int  # 1-based column of the keyword (leading blanks are allowed)
    end_line: int  # the last line it spans (continuations and heredocs included)
    original: str  # the logical line: continuations joined, comment lines dropped, no heredocs
    flags: tuple[tuple[str, str | None], ...] = ()  # --name=value as written (None: bare --link)
    build_args: tuple[tuple[str, str], ...] = ()  # ARGs in scope with a value (RUN's extra env)


@dataclass(frozen=True)
class Stage:
    """A build stage: one FROM and the instructions up to the next."""

    index: int  # 0-based position in the Dockerfile
    name: str | None  # the AS name, lower-case; None for an unnamed stage
    base: str  # the image reference, "scratch", or the name of an earlier stage
    base_index: int | None  # the earlier stage ``base`` names; None when base is an image
    platform: str | None  # FROM --platform, checked against the host
    from_instruction: Instruction  # the FROM itself (line, column, original)
    instructions: tuple[Instruction, ...]  # what follows the FROM, in order


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile: the build plan."""

    filename: str  # as given to parse(), used in messages
    stages: tuple[Stage, ...]  # at least one
    global_args: tuple[BuildArg, ...]  # the ARGs before the first FROM (usable in FROM lines)
    directives: tuple[tuple[str, str], ...]  # parser directives found, ("escape", "`")...
    escape: str  # the escape character in force: "\\" or "`"
    notes: tuple[str, ...]  # warnings the user should see (ignored syntax, unused build-args)


# --- reading lines --------------------------------------------------------------------------


@dataclass
class _Logical:
    """One instruction's text with the (line, column) of every character, for messages."""

    text: str
    pos: list[tuple[int, int]]
    end_line: int

    def at(self, offset: int) -> tuple[int, int]:
        if not self.pos:
            return (self.end_line, 1)
        if offset < len(self.pos):
            return self.pos[offset]
        line, col = self.pos[-1]
        return (line, col + 1)


class _Failure(Exception):
    """A parse mistake at an offset of the current logical line (turned into BuildError)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def _fail(filename: str, where: tuple[int, int], message: str) -> BuildError:
    return BuildError(f"{filename}:{where[0]}:{where[1]}: {message}")


def _directives(
    lines: list[str], filename: str
) -> tuple[dict[str, str], tuple[int, int] | None, list[str]]:
    """The parser directives at the top; they stop at the first line that is not one."""
    found: dict[str, str] = {}
    escape_at = None
    notes: list[str] = []
    for number, raw in enumerate(lines, start=1):
        match = _DIRECTIVE.match(raw)
        if not match:
            break
        name, value = match.group(1).lower(), match.group(2)
        if name not in ("syntax", "escape", "check"):
            break  # an unknown directive is a comment, and ends the directives
        if name in found:
            raise _fail(
                filename,
                (number, 1),
                f"only one {name} parser directive can be used; remove the second one",
            )
        found[name] = value
        if name == "escape":
            escape_at = (number, raw.index("=") + 2)
        elif name == "syntax":
            notes.append(
                f"{filename}:{number}: syntax directive '{value}' ignored: containerlab "
                "parses Dockerfiles itself (the features of docker/dockerfile:1 it supports "
                "are always on)"
            )
        else:
            notes.append(f"{filename}:{number}: check directive ignored (no build checks here)")
    return found, escape_at, notes


def _trim_continuation(text: str, escape: str) -> tuple[str, bool]:
    """Remove an escape character (and blanks after it) ending the line."""
    stripped = text.rstrip(" \t")
    if stripped.endswith(escape):
        return stripped[:-1], True
    return text, False


def _logical_lines(
    lines: list[str], escape: str, filename: str, notes: list[str]
) -> list[tuple[_Logical, list[Heredoc], int]]:
    """Group physical lines into instructions: (text with positions, heredocs, first index)."""
    out = []
    i, n = 0, len(lines)
    while i < n:
        raw = lines[i]
        stripped = raw.lstrip(" \t")
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        chars: list[str] = []
        pos: list[tuple[int, int]] = []
        first = i
        start_col = len(raw) - len(stripped) + 1
        body, more = _trim_continuation(stripped, escape)
        chars.extend(body)
        pos.extend((i + 1, start_col + k) for k in range(len(body)))
        i += 1
        while more and i < n:
            raw = lines[i]
            inner = raw.lstrip(" \t")
            if inner.startswith("#"):
                i += 1
                continue
            if not inner:
                notes.append(
                    f"{filename}:{i + 1}: empty continuation line (Docker warns these will "
                    "become errors); remove the blank line or the escape before it"
                )
                i += 1
                continue
            body, more = _trim_continuation(raw, escape)
            chars.extend(body)
            pos.extend((i + 1, 1 + k) for k in range(len(body)))
            i += 1
        logical = _Logical("".join(chars), pos, i)
        heredocs, i = _read_heredocs(logical, lines, i, escape, filename)
        logical.end_line = i
        out.append((logical, heredocs, first))
    return out


def _heredoc_markers(logical: _Logical, escape: str) -> list[tuple[re.Match[str], int]]:
    """The ``<<NAME`` words of a RUN/COPY/ADD line (outside quotes), with their offsets."""
    head = re.match(r"\s*(\S+)", logical.text)
    if not head or head.group(1).upper() not in _HEREDOC_CAPABLE:
        return []
    rest = head.end()
    if logical.text[rest:].lstrip().startswith("["):
        return []  # exec form: no heredocs
    found = []
    for word, offset in _split_words(logical.text, rest, escape):
        match = _HEREDOC.match(word)
        if match:
            found.append((match, offset))
    return found


def _read_heredocs(
    logical: _Logical, lines: list[str], i: int, escape: str, filename: str
) -> tuple[list[Heredoc], int]:
    """Read the bodies of the heredocs the instruction opened, one after the other."""
    out = []
    for match, offset in _heredoc_markers(logical, escape):
        fd_text, dash, quote, name = match.groups()
        strip = dash == "-"
        body = []
        while True:
            if i >= len(lines):
                raise _fail(
                    filename,
                    logical.at(offset),
                    f"unterminated heredoc <<{dash}{quote}{name}{quote}: no line holding only "
                    f"{name!r} closes it; add a line '{name}' after its last line",
                )
            line = lines[i]
            i += 1
            if strip:
                line = line.lstrip("\t")
            if line == name:
                break
            body.append(line + "\n")
        out.append(
            Heredoc(name, "".join(body), not quote, strip, int(fd_text) if fd_text else None)
        )
    return out, i


# --- words and variables --------------------------------------------------------------------


def _split_words(text: str, start: int, escape: str) -> list[tuple[str, int]]:
    """Whitespace-separated words from ``start``, quotes and escapes kept but respected."""
    words = []
    i, n = start, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        begin = i
        quote = None
        while i < n:
            ch = text[i]
            if quote:
                if ch == escape and quote == '"' and i + 1 < n:
                    i += 2
                    continue
                if ch == quote:
                    quote = None
            elif ch.isspace():
                break
            elif ch == escape and i + 1 < n:
                i += 2
                continue
            elif ch in "'\"":
                quote = ch
            i += 1
        words.append((text[begin:i], begin))
    return words


def _plain_words(text: str, start: int) -> list[tuple[str, int]]:
    """Whitespace-separated words, quotes not special (BuildKit's split for COPY, FROM...)."""
    return [(m.group(), start + m.start()) for m in re.finditer(r"\S+", text[start:])]


class _Expander:
    """Docker's variable replacement (BuildKit's shell lexer): quotes, escapes and ``$``."""

    def __init__(self, env: Mapping[str, str], escape: str) -> None:
        self.env = env
        self.escape = escape

    def word(self, text: str, raw: bool = False) -> str:
        """Process one word; ``raw`` keeps quotes and most escapes (heredoc bodies)."""
        value, _ = self._until(text, 0, None, raw)
        return value

    def _until(self, s: str, i: int, stop: str | None, raw: bool) -> tuple[str, int]:
        out = []
        n = len(s)
        while i < n:
            ch = s[i]
            if stop is not None and ch == stop:
                return "".join(out), i
            if ch == self.escape:
                if raw:
                    if i + 1 < n and s[i + 1] in ("$", self.escape):
                        out.append(s[i + 1])
                        i += 2
                    else:
                        out.append(ch)
                        i += 1
                    continue
                if i + 1 < n:
                    out.append(s[i + 1])
                i += 2
                continue
            if ch == "'" and not raw:
                end = s.find("'", i + 1)
                if end < 0:
                    raise _Failure("unterminated single quote; close it with ' or escape it", i)
                out.append(s[i + 1 : end])
                i = end + 1
                continue
            if ch == '"' and not raw:
                value, i = self._double(s, i)
                out.append(value)
                continue
            if ch == "$":
                value, i = self._dollar(s, i, raw)
                out.append(value)
                continue
            out.append(ch)
            i += 1
        if stop is not None:
            raise _Failure(f"missing '{stop}' in variable substitution", n)
        return "".join(out), i

    def _double(self, s: str, start: int) -> tuple[str, int]:
        out = []
        i, n = start + 1, len(s)
        while i < n:
            ch = s[i]
            if ch == '"':
                return "".join(out), i + 1
            if ch == "$":
                value, i = self._dollar(s, i, False)
                out.append(value)
                continue
            if ch == self.escape and i + 1 < n and s[i + 1] in ('"', "$", self.escape):
                out.append(s[i + 1])
                i += 2
                continue
            out.append(ch)
            i += 1
        raise _Failure('unterminated double quote; close it with " or escape it', start)

    def _dollar(self, s: str, start: int, raw: bool) -> tuple[str, int]:
        i, n = start + 1, len(s)
        if i < n and s[i] == "{":
            j = i + 1
            while j < n and (s[j].isalnum() or s[j] == "_") and s[j].isascii():
                j += 1
            name = s[i + 1 : j]
            if not name or j >= n:
                raise _Failure("bad substitution: write ${NAME} with a variable name", start)
            if s[j] == "}":
                return self.env.get(name, ""), j + 1
            colon = s[j] == ":"
            op_at = j + 1 if colon else j
            op = s[op_at] if op_at < n else ""
            if op not in ("-", "+", "?"):
                raise _Failure(
                    f"unsupported modifier {s[j : op_at + 1]!r} in ${{{name}...}}; "
                    "Docker supports :- - :+ + :? ?",
                    j,
                )
            word, end = self._until(s, op_at + 1, "}", raw)
            value = self.env.get(name)
            is_set = value is not None and (value != "" or not colon)
            if op == "-":
                result = value if is_set else word
            elif op == "+":
                result = word if is_set else ""
            else:
                if not is_set:
                    raise _Failure(f"{name}: {word or 'is not set'}", start)
                result = value
            return result or "", end + 1
        j = i
        while j < n and (s[j].isalnum() or s[j] == "_") and s[j].isascii():
            j += 1
        if j == i:
            return "$", i  # a lone $ is itself
        return self.env.get(s[i:j], ""), j


def _maybe_json(text: str) -> list[str] | None:
    """The exec form: a JSON array of strings, or None (then it is the shell form)."""
    stripped = text.strip()
    if not stripped.startswith("[") or not stripped.endswith("]"):
        return None
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


# --- instructions ---------------------------------------------------------------------------


@dataclass
class _Flag:
    name: str
    value: str | None
    offset: int


@dataclass
class _StageState:
    """What a stage has in scope while it is being parsed."""

    index: int
    name: str | None
    base: str
    base_index: int | None
    platform: str | None
    from_instruction: Instruction
    args: dict[str, str | None] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    instructions: list[Instruction] = field(default_factory=list)

    def scope(self) -> dict[str, str]:
        """ENV wins over an ARG of the same name (Docker's rule)."""
        merged = {k: v for k, v in self.args.items() if v is not None}
        merged.update(self.env)
        return merged


class _Parser:
    def __init__(
        self,
        filename: str,
        escape: str,
        build_args: Mapping[str, str],
        host_platform: str,
        image_env: Callable[[str], Mapping[str, str]] | None,
    ) -> None:
        self.filename = filename
        self.escape = escape
        self.build_args = dict(build_args)
        self.host_platform = host_platform
        self.image_env = image_env
        self.global_args: dict[str, BuildArg] = {}
        self.automatic = _platform_args(host_platform)
        self.stages: list[_StageState] = []
        self.names: dict[str, int] = {}
        self.used: set[str] = set()
        self.notes: list[str] = []

    # -- helpers

    def where(self, logical: _Logical, offset: int) -> tuple[int, int]:
        return logical.at(offset)

    def expand(self, env: Mapping[str, str], word: str, offset: int) -> str:
        try:
            return _Expander(env, self.escape).word(word)
        except _Failure as err:
            raise _Failure(err.message, offset + err.offset) from None

    def flags(self, keyword: str, text: str, start: int) -> tuple[list[_Flag], int]:
        """Leading ``--name[=value]`` words; returns them and where the arguments start."""
        found: list[_Flag] = []
        after = start
        for word, offset in _split_words(text, start, self.escape):
            if not word.startswith("--"):
                return found, offset
            after = offset + len(word)
            if word == "--":
                return found, after
            name, eq, value = word[2:].partition("=")
            if name not in FLAGS.get(keyword, frozenset()):
                allowed = ", ".join(f"--{f}" for f in sorted(FLAGS.get(keyword, ()))) or "none"
                raise _Failure(f"unknown flag --{name} for {keyword} (it takes: {allowed})", offset)
            if any(f.name == name for f in found) and name != "exclude":
                raise _Failure(f"duplicate flag --{name}; give it once", offset)
            found.append(_Flag(name, value if eq else None, offset))
        return found, after

    def needs_value(self, flag: _Flag) -> str:
        if flag.value is None:
            raise _Failure(
                f"missing a value on flag --{flag.name}; write --{flag.name}=...", flag.offset
            )
        return flag.value

    def boolean(self, flag: _Flag) -> bool:
        if flag.value is None:
            return True
        if flag.value.lower() in ("true", "1"):
            return True
        if flag.value.lower() in ("false", "0"):
            return False
        raise _Failure(f"--{flag.name} takes true or false, not {flag.value!r}", flag.offset)

    # -- the main loop

    def run(self, logicals: list[tuple[_Logical, list[Heredoc], int]]) -> None:
        for logical, heredocs, _first in logicals:
            self.instruction(logical, heredocs)

    def instruction(self, logical: _Logical, heredocs: list[Heredoc]) -> None:
        text = logical.text
        head = re.match(r"\s*(\S+)\s*", text)
        if head is None:
            return
        word = head.group(1)
        keyword = word.upper()
        start = head.start(1)
        line, column = logical.at(start)
        if keyword not in KEYWORDS:
            close = difflib.get_close_matches(keyword, KEYWORDS, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else f"; known: {', '.join(KEYWORDS)}"
            raise _fail(self.filename, (line, column), f"unknown instruction: {word}{hint}")
        if not self.stages and keyword not in ("ARG", "FROM"):
            raise _fail(
                self.filename,
                (line, column),
                f"{keyword} before the first FROM: a Dockerfile must start with FROM "
                "(only ARG may come before it); add FROM <image> above it",
            )
        try:
            flags, args_at = self.flags(keyword, text, head.end())
            rest = text[args_at:].rstrip()
            original = text.strip()
            stage = self.stages[-1] if self.stages else None
            env = stage.scope() if stage else self.global_scope()
            build_args = (
                tuple((k, v) for k, v in stage.args.items() if v is not None) if stage else ()
            )
            base = dict(
                keyword=keyword,
                line=line,
                column=column,
                end_line=logical.end_line,
                original=original,
                flags=tuple((f.name, f.value) for f in flags),
                build_args=build_args,
            )
            if not rest:
                raise _Failure(f"{keyword} requires at least one argument", start)
            if keyword == "FROM":
                self.from_(logical, flags, args_at, base)
                return
            if keyword == "ARG" or stage is None:  # only ARG and FROM come before a stage
                args: Args = self.arg(logical, args_at, env, stage)
            else:
                args = self.parse_args(keyword, logical, flags, args_at, env, heredocs, start)
            made = Instruction(args=args, **base)  # type: ignore[arg-type]
            if stage is not None:
                stage.instructions.append(made)
                if isinstance(args, KeyValueArgs) and keyword == "ENV":
                    stage.env.update(args.pairs)
        except _Failure as err:
            raise _fail(self.filename, logical.at(err.offset), err.message) from None

    def global_scope(self) -> dict[str, str]:
        scope = dict(self.automatic)
        scope.update({a.name: a.value for a in self.global_args.values() if a.value is not None})
        return scope

    # -- FROM and ARG: the two that shape scopes

    def from_(self, logical: _Logical, flags: list[_Flag], args_at: int, base: dict) -> None:
        words = _plain_words(logical.text.rstrip(), args_at)
        if len(words) not in (1, 3) or (len(words) == 3 and words[1][0].upper() != "AS"):
            raise _Failure(
                "FROM takes an image and optionally AS name: FROM [--platform=P] image [AS name]",
                args_at,
            )
        scope = self.global_scope()
        image = self.expand(scope, words[0][0], words[0][1])
        if not image:
            raise _Failure(
                f"FROM {words[0][0]} names an empty image; give the ARG it uses a default",
                words[0][1],
            )
        name = None
        if len(words) == 3:
            name = words[2][0].lower()
            if not _STAGE_NAME.match(name):
                raise _Failure(
                    f"invalid stage name {words[2][0]!r}: start with a letter, then letters, "
                    "digits, '-', '_' or '.'",
                    words[2][1],
                )
            if name in self.names:
                first = self.stages[self.names[name]].from_instruction.line
                raise _Failure(
                    f"duplicate stage name {name!r} (first used on line {first}); "
                    "give each stage its own name",
                    words[2][1],
                )
        platform = None
        for flag in flags:
            value = self.expand(scope, self.needs_value(flag), flag.offset + len("--platform="))
            platform = value
            if not _same_platform(value, self.host_platform):
                raise _Failure(
                    f"FROM --platform={value} does not match this host ({self.host_platform}); "
                    f"containerlab builds for the host only: drop --platform or use "
                    f"{self.host_platform}",
                    flag.offset,
                )
        base_index = self.names.get(image.lower())
        if base_index is None and image != "scratch":
            _check_reference(image, words[0][1])
        index = len(self.stages)
        made = Instruction(args=FromArgs(image, name, platform), **base)
        state = _StageState(index, name, image, base_index, platform, made)
        if base_index is not None:
            parent = self.stages[base_index]
            state.args = dict(parent.args)
            state.env = dict(parent.env)
        elif image != "scratch" and self.image_env is not None:
            state.env = dict(self.image_env(image))
        self.stages.append(state)
        if name:
            self.names[name] = index

    def arg(
        self, logical: _Logical, args_at: int, env: Mapping[str, str], stage: _StageState | None
    ) -> ArgArgs:
        out = []
        for word, offset in _split_words(logical.text.rstrip(), args_at, self.escape):
            name, eq, default_text = word.partition("=")
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise _Failure(f"invalid ARG name {name!r}; use letters, digits and _", offset)
            default = self.expand(env, default_text, offset + len(name) + 1) if eq else None
            self.used.add(name)
            if name in self.build_args:
                value: str | None = self.build_args[name]
            elif default is not None:
                value = default
            elif stage is not None and name in self.global_args:
                value = self.global_args[name].value
            elif stage is not None and name in self.automatic:
                value = self.automatic[name]
            else:
                value = None
            made = BuildArg(name, default, value)
            out.append(made)
            if stage is None:
                self.global_args[name] = made
            else:
                stage.args[name] = value
            env = {**env, name: value} if value is not None else env
        return ArgArgs(tuple(out))

    # -- the rest

    def parse_args(
        self,
        keyword: str,
        logical: _Logical,
        flags: list[_Flag],
        args_at: int,
        env: Mapping[str, str],
        heredocs: list[Heredoc],
        start: int,
    ) -> Args:
        text = logical.text.rstrip()
        rest = text[args_at:]
        if keyword in ("RUN", "CMD", "ENTRYPOINT"):
            exec_form = _maybe_json(rest)
            if exec_form is not None:
                if keyword == "RUN" and not exec_form:
                    raise _Failure("RUN [] has no command; put the program in the list", args_at)
                return CommandArgs(False, tuple(exec_form))
            return CommandArgs(True, (rest.strip(),), tuple(heredocs))
        if keyword == "SHELL":
            shell = _maybe_json(rest)
            if shell is None:
                raise _Failure(
                    'SHELL must be a JSON array of strings, e.g. SHELL ["/bin/bash", "-c"]',
                    args_at,
                )
            if not shell:
                raise _Failure('SHELL needs at least the program, e.g. ["/bin/sh", "-c"]', args_at)
            return ShellArgs(tuple(shell))
        if keyword in ("COPY", "ADD"):
            return self.copy(keyword, logical, flags, args_at, env, heredocs, start)
        if keyword in ("ENV", "LABEL"):
            return self.key_values(keyword, text, args_at, env)
        if keyword == "EXPOSE":
            ports: list[Port] = []
            for word, offset in _plain_words(text, args_at):
                for part in self.expand(env, word, offset).split():
                    ports.extend(_ports(part, offset))
            return ExposeArgs(tuple(ports))
        if keyword == "VOLUME":
            items = _maybe_json(rest)
            words = (
                [(w, args_at) for w in items] if items is not None else _plain_words(text, args_at)
            )
            paths = tuple(self.expand(env, w, o) for w, o in words)
            if not paths or any(not p for p in paths):
                raise _Failure("VOLUME has an empty path; give the mount point", args_at)
            return VolumeArgs(paths)
        if keyword == "WORKDIR":
            path = self.expand(env, rest, args_at)
            if not path:
                raise _Failure("WORKDIR is empty after substitution; give a path", args_at)
            return PathArgs(path)
        if keyword in ("USER", "STOPSIGNAL"):
            words = _plain_words(text, args_at)
            if len(words) != 1:
                raise _Failure(f"{keyword} takes exactly one argument", args_at)
            value = self.expand(env, words[0][0], args_at)
            if keyword == "STOPSIGNAL":
                if not _SIGNAL.match(value):
                    raise _Failure(
                        f"invalid STOPSIGNAL {value!r}; use a name like SIGTERM or a number",
                        args_at,
                    )
                return SignalArgs(value)
            user, colon, group = value.partition(":")
            if not user or (colon and not group):
                raise _Failure(f"invalid USER {value!r}; write USER user[:group]", args_at)
            return UserArgs(user, group if colon else None)
        if keyword == "HEALTHCHECK":
            return self.healthcheck(flags, text, args_at)
        if keyword == "ONBUILD":
            inner = rest.strip()
            trigger = inner.split(None, 1)[0].upper()
            if trigger in ("ONBUILD", "FROM", "MAINTAINER"):
                raise _Failure(
                    f"ONBUILD cannot trigger {trigger}; use another instruction", args_at
                )
            if trigger not in KEYWORDS:
                close = difflib.get_close_matches(trigger, KEYWORDS, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise _Failure(f"unknown instruction: {inner.split(None, 1)[0]}{hint}", args_at)
            return OnbuildArgs(inner)
        if keyword == "MAINTAINER":
            self.notes.append(
                f"{self.filename}:{logical.at(start)[0]}: MAINTAINER is deprecated; "
                'use LABEL org.opencontainers.image.authors="..."'
            )
            return MaintainerArgs(rest.strip())
        raise _Failure(f"{keyword} is not handled", start)  # pragma: no cover - KEYWORDS covers all

    def copy(
        self,
        keyword: str,
        logical: _Logical,
        flags: list[_Flag],
        args_at: int,
        env: Mapping[str, str],
        heredocs: list[Heredoc],
        start: int,
    ) -> CopyArgs:
        text = logical.text.rstrip()
        items = _maybe_json(text[args_at:])
        words = [(w, args_at) for w in items] if items is not None else _plain_words(text, args_at)
        docs = list(heredocs)
        sources: list[str] = []
        expanded_docs: list[Heredoc] = []
        for word, offset in words[:-1]:
            if items is None and _HEREDOC.match(word) and docs:
                doc = docs.pop(0)
                if doc.expand:
                    try:
                        content = _Expander(env, self.escape).word(doc.content, raw=True)
                    except _Failure as err:
                        raise _Failure(f"in heredoc {doc.name}: {err.message}", offset) from None
                    doc = Heredoc(doc.name, content, doc.expand, doc.strip_tabs, doc.fd)
                expanded_docs.append(doc)
                continue
            sources.append(self.expand(env, word, offset))
        if len(words) < 2:
            raise _Failure(
                f"{keyword} needs a source and a destination: {keyword} <src>... <dest>",
                args_at if words else start,
            )
        dest = self.expand(env, words[-1][0], words[-1][1])
        values: dict[str, object] = {}
        exclude: list[str] = []
        from_stage = None
        from_index = None
        for flag in flags:
            value_at = flag.offset + len(flag.name) + 3
            if flag.name in ("link", "parents", "keep-git-dir"):
                values[flag.name] = self.boolean(flag)
                continue
            if flag.name == "unpack":
                values["unpack"] = self.boolean(flag)
                continue
            raw = self.needs_value(flag)
            value = self.expand(env, raw, value_at)
            if flag.name == "from":
                from_stage, from_index = value, self.resolve_from(value, flag.offset)
            elif flag.name == "chown":
                values["chown"] = _chown(value, flag.offset)
            elif flag.name == "chmod":
                if not _OCTAL_MODE.match(value):
                    raise _Failure(
                        f"invalid --chmod={value}: use an octal mode such as 755 or 0644",
                        flag.offset,
                    )
                values["chmod"] = int(value, 8)
            elif flag.name == "exclude":
                exclude.append(value)
            elif flag.name == "checksum":
                values["checksum"] = value
        return CopyArgs(
            sources=tuple(sources),
            dest=dest,
            from_stage=from_stage,
            from_index=from_index,
            chown=values.get("chown"),  # type: ignore[arg-type]
            chmod=values.get("chmod"),  # type: ignore[arg-type]
            link=bool(values.get("link", False)),
            exclude=tuple(exclude),
            heredocs=tuple(expanded_docs),
            parents=bool(values.get("parents", False)),
            checksum=values.get("checksum"),  # type: ignore[arg-type]
            unpack=values.get("unpack"),  # type: ignore[arg-type]
            keep_git_dir=bool(values.get("keep-git-dir", False)),
        )

    def resolve_from(self, value: str, offset: int) -> int | None:
        """``--from``: an earlier stage (by name or index), else an image reference."""
        current = len(self.stages) - 1
        if value.isdigit():
            index = int(value)
            if index >= current:
                raise _Failure(
                    f"--from={value} refers to this stage or a later one; "
                    f"use an earlier stage (0..{current - 1})"
                    if current
                    else f"--from={value}: there is no earlier stage to copy from",
                    offset,
                )
            return index
        lowered = value.lower()
        if self.stages[-1].name == lowered:
            raise _Failure(
                f"--from={value} names the stage it is in; copy from an earlier one", offset
            )
        if lowered in self.names:
            return self.names[lowered]
        # A bare word like "builder" is a valid Docker Hub name too, but in a Dockerfile it
        # is nearly always a stage name with a typo: ask for an explicit tag to mean an image.
        if "/" not in value and ":" not in value and "@" not in value:
            known = ", ".join(sorted(self.names)) or "none named"
            close = difflib.get_close_matches(lowered, list(self.names), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise _Failure(
                f"--from={value}: no earlier stage has that name{hint} (stages: {known}); "
                f"to copy from an image, give its tag, e.g. --from={value}:latest",
                offset,
            )
        _check_reference(value, offset)
        return None

    def key_values(
        self, keyword: str, text: str, args_at: int, env: Mapping[str, str]
    ) -> KeyValueArgs:
        words = _split_words(text, args_at, self.escape)
        if "=" not in words[0][0]:
            # The legacy form: the first word is the key, everything after it the value.
            key, offset = words[0]
            value_start = offset + len(key)
            while value_start < len(text) and text[value_start].isspace():
                value_start += 1
            if value_start >= len(text):
                raise _Failure(f"{keyword} {key} has no value; write {keyword} {key}=value", offset)
            pairs = [
                (
                    self.expand(env, key, offset),
                    self.expand(env, text[value_start:], value_start),
                )
            ]
            return KeyValueArgs(tuple(pairs))
        pairs = []
        for word, offset in words:
            key, eq, value = word.partition("=")
            if not eq:
                raise _Failure(
                    f"{keyword} expects key=value, found {word!r}; write {word}=<value>", offset
                )
            name = self.expand(env, key, offset)
            if not name:
                raise _Failure(f"{keyword} has an empty name before '='", offset)
            # Every value sees the variables as they were before this instruction (Docker).
            pairs.append((name, self.expand(env, value, offset + len(key) + 1)))
        return KeyValueArgs(tuple(pairs))

    def healthcheck(self, flags: list[_Flag], text: str, args_at: int) -> HealthcheckArgs:
        words = _plain_words(text, args_at)
        kind = words[0][0].upper()
        if kind == "NONE":
            if len(words) > 1 or flags:
                raise _Failure("HEALTHCHECK NONE takes no options or arguments", args_at)
            return HealthcheckArgs(("NONE",), None, None, None, None, None)
        if kind != "CMD":
            raise _Failure(
                "HEALTHCHECK needs CMD or NONE, e.g. HEALTHCHECK --interval=5s CMD wget -q "
                "-O- localhost",
                args_at,
            )
        command_at = words[0][1] + 3
        command = text[command_at:].strip()
        if not command:
            raise _Failure("HEALTHCHECK CMD needs a command after CMD", words[0][1])
        exec_form = _maybe_json(command)
        test = ("CMD", *exec_form) if exec_form is not None else ("CMD-SHELL", command)
        times: dict[str, int | None] = {}
        retries = None
        for flag in flags:
            value = self.needs_value(flag)
            if flag.name == "retries":
                if not value.isdigit():
                    raise _Failure(f"--retries must be a whole number, not {value!r}", flag.offset)
                retries = int(value)
                continue
            ns = _duration(value)
            if ns is None or (0 < ns < 10**6):
                raise _Failure(
                    f"--{flag.name}={value} is not a duration of at least 1ms "
                    "(write 30s, 1m30s, 500ms)",
                    flag.offset,
                )
            times[flag.name] = ns
        return HealthcheckArgs(
            tuple(test),
            times.get("interval"),
            times.get("timeout"),
            times.get("start-period"),
            times.get("start-interval"),
            retries,
        )


def _platform_args(host: str) -> dict[str, str]:
    """BuildKit's automatic global ARGs: TARGETPLATFORM, BUILDARCH... (target = host here)."""
    parts = host.split("/")
    os_, arch = parts[0], parts[1] if len(parts) > 1 else ""
    variant = parts[2] if len(parts) > 2 else ""
    out = {}
    for prefix in ("TARGET", "BUILD"):
        out[f"{prefix}PLATFORM"] = host
        out[f"{prefix}OS"] = os_
        out[f"{prefix}ARCH"] = arch
        out[f"{prefix}VARIANT"] = variant
    return out


def _normal_platform(text: str) -> tuple[str, str, str]:
    parts = text.strip().lower().split("/")
    os_ = parts[0]
    arch = parts[1] if len(parts) > 1 else ""
    arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}.get(arch, arch)
    variant = parts[2] if len(parts) > 2 else ""
    if arch == "arm64" and variant in ("", "v8"):
        variant = ""  # linux/arm64 and linux/arm64/v8 are the same platform
    return os_, arch, variant


def _same_platform(a: str, b: str) -> bool:
    return _normal_platform(a) == _normal_platform(b)


def _check_reference(image: str, offset: int) -> None:
    from containerlab.image import reference

    try:
        reference.parse(image)
    except ImageError as err:
        raise _Failure(f"{err}; fix the image name", offset) from None


def _chown(value: str, offset: int) -> Chown:
    parts = value.split(":")
    if not value or len(parts) > 2 or any(not p for p in parts):
        raise _Failure(
            f"invalid --chown={value}: write --chown=user, --chown=user:group or --chown=1000:1000",
            offset,
        )
    return Chown(parts[0], parts[1] if len(parts) == 2 else None)


def _ports(text: str, offset: int) -> list[Port]:
    spec, _, protocol = text.partition("/")
    protocol = (protocol or "tcp").lower()
    if protocol not in ("tcp", "udp", "sctp"):
        raise _Failure(
            f"invalid protocol {protocol!r} in EXPOSE {text}; use tcp, udp or sctp", offset
        )
    low, dash, high = spec.partition("-")
    try:
        first = int(low)
        last = int(high) if dash else first
    except ValueError:
        raise _Failure(
            f"invalid port {spec!r} in EXPOSE; write 80, 80/udp or 8000-8010", offset
        ) from None
    if not (1 <= first <= last <= 65535):
        raise _Failure(f"invalid port range {spec!r} in EXPOSE; ports go from 1 to 65535", offset)
    return [Port(p, protocol) for p in range(first, last + 1)]


def _duration(text: str) -> int | None:
    """Go's ``time.ParseDuration`` in nanoseconds (``1m30s``, ``500ms``), None if malformed."""
    if text == "0":
        return 0
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _DURATION_NS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        return None
    return int(total)


# --- the entry point ------------------------------------------------------------------------


def parse(
    text: str,
    *,
    filename: str = "Dockerfile",
    build_args: Mapping[str, str] | None = None,
    host_platform: str | None = None,
    image_env: Callable[[str], Mapping[str, str]] | None = None,
) -> Dockerfile:
    """Parse a Dockerfile into stages of typed instructions, or raise ``BuildError``.

    ``build_args`` are ``--build-arg`` values (they override ARG defaults); ``host_platform``
    defaults to this machine's (``linux/amd64``); ``image_env``, when given, returns the ENV of
    a base image so ``$PATH``-like references to it are replaced as Docker would (without it,
    variables only the base image defines are empty).
    """
    from containerlab.image.oci import host_platform as _host

    host = host_platform or _host()
    text = text.removeprefix("\ufeff")
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    found, escape_at, notes = _directives(lines, filename)
    escape = found.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise _fail(
            filename,
            escape_at or (1, 1),
            f"invalid escape character {escape!r}; the escape directive takes \\ or `",
        )
    parser = _Parser(filename, escape, build_args or {}, host, image_env)
    parser.notes = notes
    try:
        logicals = _logical_lines(lines, escape, filename, notes)
    except _Failure as err:  # pragma: no cover - line reading raises BuildError itself
        raise _fail(filename, (1, 1), err.message) from None
    parser.run(logicals)
    if not parser.stages:
        raise _fail(
            filename,
            (len(lines), 1),
            "no FROM instruction: a Dockerfile needs at least one; add FROM <image>",
        )
    unused = sorted(set(parser.build_args) - parser.used - PREDEFINED_ARGS)
    if unused:
        notes.append(
            f"[warning] one or more build-args {unused} were not consumed; "
            "declare them with ARG or drop them"
        )
    stages = tuple(
        Stage(
            s.index,
            s.name,
            s.base,
            s.base_index,
            s.platform,
            s.from_instruction,
            tuple(s.instructions),
        )
        for s in parser.stages
    )
    return Dockerfile(
        filename=filename,
        stages=stages,
        global_args=tuple(parser.global_args.values()),
        directives=tuple(found.items()),
        escape=escape,
        notes=tuple(notes),
    )


# --- stages and targets ---------------------------------------------------------------------


def stage_for_target(dockerfile: Dockerfile, target: str | None) -> int:
    """The index of the stage ``--target`` names (by name or index); None: the last stage."""
    if target is None:
        return len(dockerfile.stages) - 1
    lowered = target.lower()
    for stage in dockerfile.stages:
        if stage.name == lowered:
            return stage.index
    if target.isdigit() and int(target) < len(dockerfile.stages):
        return int(target)
    names = ", ".join(s.name for s in dockerfile.stages if s.name) or "no named stages"
    raise BuildError(
        f"target stage {target!r} could not be found in {dockerfile.filename} "
        f"(stages: {names}); check --target"
    )


def stages_needed(dockerfile: Dockerfile, index: int) -> tuple[int, ...]:
    """The stages building stage ``index`` needs (its bases and COPY --from), ``index`` last."""
    needed: set[int] = set()
    todo = [index]
    while todo:
        current = todo.pop()
        if current in needed:
            continue
        needed.add(current)
        stage = dockerfile.stages[current]
        if stage.base_index is not None:
            todo.append(stage.base_index)
        for instruction in stage.instructions:
            if isinstance(instruction.args, CopyArgs) and instruction.args.from_index is not None:
                todo.append(instruction.args.from_index)
    return tuple(sorted(needed))


# --- history --------------------------------------------------------------------------------


def _go_quote_list(items: tuple[str, ...]) -> str:
    """Go's ``%q`` of a []string, as the classic builder printed CMD: ``["sh" "-c" "x"]``."""
    return "[" + " ".join(json.dumps(i, ensure_ascii=False) for i in items) + "]"


def created_by(
    instruction: Instruction,
    shell: tuple[str, ...] = DEFAULT_SHELL,
    source_digest: str | None = None,
) -> str:
    """The history ``created_by`` Docker's classic builder writes for this instruction.

    RUN: the command as run, ``/bin/sh -c echo hi`` (exec form: ``echo hi``), prefixed with
    ``|N K=V ...`` when ARGs are in scope, as Docker did. Any other step:
    ``/bin/sh -c #(nop)  KEYWORD args`` (two spaces), except COPY/ADD and WORKDIR with one
    space, COPY/ADD naming the content (``file:<digest> in /dest``) when ``source_digest``
    is given.
    """
    args = instruction.args
    nop = f"{DEFAULT_SHELL[0]} {DEFAULT_SHELL[1]} #(nop) "
    if instruction.keyword == "RUN" and isinstance(args, CommandArgs):
        argv = (*shell, *args.command) if args.shell_form else args.command
        text = " ".join(argv)
        if args.heredocs:
            text += "\n" + "".join(f"{d.content}{d.name}\n" for d in args.heredocs)
        if instruction.build_args:
            pairs = " ".join(f"{k}={v}" for k, v in instruction.build_args)
            text = f"|{len(instruction.build_args)} {pairs} {text}"
        return text
    if isinstance(args, CommandArgs):
        argv = (*shell, *args.command) if args.shell_form else args.command
        return f"{nop} {instruction.keyword} {_go_quote_list(tuple(argv))}"
    if isinstance(args, CopyArgs):
        names = (*args.sources, *(f"<<{d.name}" for d in args.heredocs))
        what = f"file:{source_digest}" if source_digest else " ".join(names)
        return f"{nop}{instruction.keyword} {what} in {args.dest} "
    if isinstance(args, PathArgs):
        return f"{nop}WORKDIR {args.path}"
    if isinstance(args, KeyValueArgs):
        body = " ".join(f"{k}={v}" for k, v in args.pairs)
    elif isinstance(args, ExposeArgs):
        body = " ".join(f"{p.number}/{p.protocol}" for p in args.ports)
    elif isinstance(args, ArgArgs):
        body = " ".join(a.name if a.default is None else f"{a.name}={a.default}" for a in args.args)
    elif isinstance(args, UserArgs):
        body = args.user + (f":{args.group}" if args.group else "")
    elif isinstance(args, VolumeArgs):
        body = _go_quote_list(args.paths)
    elif isinstance(args, ShellArgs):
        body = _go_quote_list(args.shell)
    elif isinstance(args, SignalArgs):
        body = args.signal
    elif isinstance(args, HealthcheckArgs):
        body = _go_quote_list(args.test)
    elif isinstance(args, OnbuildArgs):
        body = args.trigger
    elif isinstance(args, MaintainerArgs):
        body = args.name
    else:
        body = instruction.original.split(None, 1)[-1]
    return f"{nop} {instruction.keyword} {body}"
