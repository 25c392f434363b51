"""``containerlab build``: a Dockerfile turned into an image, step by step, with a cache.

For each stage the builder starts from its base (an image, ``scratch`` or an earlier stage)
and applies the instructions in order. Metadata instructions (ENV, CMD, ...) change the
config; RUN, COPY and ADD add a layer (see ``steps``). Every step's result is stored as an
untagged image, and remembered in the build cache under a key made of:

    the previous step's key  +  the instruction as written (after substitution)
                             +  for COPY/ADD: the content of every file it reads
                                (ADD <URL>: of what it serves; see ``fetch``)

so a rebuild reuses every step up to the first one whose input changed, and only a change
of *content* (never a new mtime) invalidates a COPY. Cache entries hold their images
against ``image prune``; ``containerlab builder prune`` drops them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from containerlab.build import dockerfile as df
from containerlab.build import dockerignore, fetch, steps
from containerlab.build.snapshot import Snapshot
from containerlab.errors import BuildError, ContainerlabError, ImageNotFoundError
from containerlab.image.store import Image, Store

CACHE_PREFIX = "build-"  # store holds named build-<key> are build cache entries
DEFAULT_SHELL = ("/bin/sh", "-c")


@dataclass(frozen=True)
class StepResult:
    """One line of the build report (and one bar of the notebook's picture)."""

    stage: int
    number: int  # 1-based, across the whole build, as Docker numbers steps
    text: str  # the instruction as written
    cached: bool
    seconds: float
    layer_size: int  # 0 for a metadata step


@dataclass(frozen=True)
class BuildResult:
    digest: str  # manifest digest of the final image
    image_id: str  # its config digest, Docker's image id
    steps: tuple[StepResult, ...]


class _Cache:
    """key -> manifest digest of the snapshot after that step, kept as store holds."""

    def __init__(self, store: Store, enabled: bool):
        self.store = store
        self.enabled = enabled

    def get(self, key: str) -> Snapshot | None:
        if not self.enabled:
            return None
        digest = self.store.holders().get(CACHE_PREFIX + key)
        if not digest:
            return None
        try:
            return Snapshot.of(self.store.image(digest))
        except ContainerlabError:
            return None

    def put(self, key: str, snap: Snapshot) -> None:
        self.store.hold(CACHE_PREFIX + key, self.store.image(snap.digest))


def prune_cache(store: Store | None = None) -> int:
    """Forget every cached step (and let ``gc`` take what only the cache held)."""
    store = store or Store()
    held = [h for h in store.holders() if h.startswith(CACHE_PREFIX)]
    for h in held:
        store.release(h)
    store.gc()
    return len(held)


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _image_for(store: Store, ref: str) -> Image:
    """The image ``ref`` names; the runtime (which builds the offline busybox base on first
    use) is imported only when the store does not have it, to keep cached builds quick."""
    try:
        return store.image(ref)
    except ImageNotFoundError:
        from containerlab.runtime.container import image_for

        return image_for(store, ref)


def _base(
    store: Store, ref: str, built: dict[int, Snapshot], stage: df.Stage, filename: str
) -> Snapshot:
    if stage.base_index is not None:
        return built[stage.base_index]
    if ref == "scratch":
        snap = Snapshot.scratch()
        return snap
    try:
        return Snapshot.of(_image_for(store, ref))
    except ContainerlabError as e:
        raise BuildError(f"{filename}:{stage.from_instruction.line}: FROM {ref}: {e}") from None


def build(
    context: str | os.PathLike[str],
    *,
    dockerfile: str | os.PathLike[str] | None = None,
    tags: tuple[str, ...] = (),
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    no_cache: bool = False,
    out: Callable[[str], None] = print,
    store: Store | None = None,
) -> BuildResult:
    """Build an image from ``context`` (a directory) and its Dockerfile; tag it."""
    store = store or Store()
    ctx = Path(context)
    if not ctx.is_dir():
        raise BuildError(f"build context {ctx} is not a directory")
    path = Path(dockerfile) if dockerfile else ctx / "Dockerfile"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise BuildError(f"no Dockerfile at {path}; give one with -f") from None

    def image_env(ref: str) -> Mapping[str, str]:
        try:
            return Snapshot.of(_image_for(store, ref)).env()
        except ContainerlabError:
            return {}

    parsed = df.parse(text, filename=path.name, build_args=build_args or {}, image_env=image_env)
    for note in parsed.notes:
        out(f"note: {note}")
    matcher = dockerignore.load(ctx)
    # what COPY may read: files, and the directories the context keeps (an ignored
    # directory is absent, unless it holds a re-included file)
    allowed = set(dockerignore.walk(ctx, matcher, include_dirs=True))
    final = df.stage_for_target(parsed, target)
    needed = df.stages_needed(parsed, final)
    total = sum(1 + len(parsed.stages[i].instructions) for i in needed)
    cache = _Cache(store, not no_cache)
    built: dict[int, Snapshot] = {}
    results: list[StepResult] = []
    number = 0
    with store.pending():
        for index in needed:
            stage = parsed.stages[index]
            number += 1
            t0 = time.monotonic()
            snap = _base(store, stage.base, built, stage, parsed.filename)
            key = _key("FROM", snap.digest or "scratch", str(stage.base_index))
            out(
                f"[{number}/{total}] FROM {stage.base}"
                + (f" AS {stage.name}" if stage.name else "")
            )
            results.append(
                StepResult(index, number, f"FROM {stage.base}", True, time.monotonic() - t0, 0)
            )
            flags: dict[str, bool] = {}
            for instr in stage.instructions:
                number += 1
                with contextlib.ExitStack() as stack:  # what a COPY --from mounts, for this step
                    snap, key, result = _step_in(
                        stack,
                        store,
                        cache,
                        ctx,
                        allowed,
                        parsed,
                        built,
                        snap,
                        key,
                        instr,
                        index,
                        number,
                        total,
                        out,
                        flags,
                    )
                results.append(result)
            if not snap.digest:
                snap.store(store)
            built[index] = snap
    image = built[final]
    for tag in tags:
        store.tag(tag, image.digest)
    image_id = store.image(image.digest).id
    out(f"=> image {image_id}" + "".join(f"\n=> tagged {t}" for t in tags))
    return BuildResult(image.digest, image_id, tuple(results))


def _step_in(
    stack: contextlib.ExitStack,
    store: Store,
    cache: _Cache,
    ctx: Path,
    allowed: set[str],
    parsed: df.Dockerfile,
    built: dict[int, Snapshot],
    snap: Snapshot,
    key: str,
    instr: df.Instruction,
    stage: int,
    number: int,
    total: int,
    out: Callable[[str], None],
    flags: dict[str, bool],
) -> tuple[Snapshot, str, StepResult]:
    where = f"{parsed.filename}:{instr.line}"
    label = f"[{number}/{total}] {instr.original.strip().splitlines()[0]}"
    t0 = time.monotonic()
    content = ""
    copy_root: Path | None = None
    copy_sources: list[Path] = []
    fetch_later: Callable[[], None] | None = None
    args = instr.args
    if isinstance(args, df.CopyArgs):
        copy_root, copy_sources, content, fetch_later = _copy_inputs(
            stack, store, ctx, allowed, built, instr.keyword, args, where
        )
    run_env = dict(instr.build_args)
    step_key = _key(
        key,
        instr.keyword,
        json.dumps(_canonical(args), sort_keys=True, default=str),
        json.dumps(sorted(run_env.items())) if instr.keyword == "RUN" else "",
        content,
    )
    if instr.keyword == "CMD":
        # Set on a cache hit too: a later ENTRYPOINT keeps a CMD of this stage.
        flags["cmd_set"] = True
    hit = cache.get(step_key)
    if hit is not None:
        out(f"{label}  CACHED")
        size = int(hit.layers[-1]["size"]) if len(hit.layers) > len(snap.layers) else 0
        return (
            hit,
            step_key,
            StepResult(stage, number, instr.original.strip(), True, time.monotonic() - t0, size),
        )
    out(label)
    shell = tuple(snap.run.get("Shell") or DEFAULT_SHELL)
    shown = instr
    if isinstance(args, df.PathArgs):
        # history shows the directory WORKDIR resolved to, as Docker's does
        shown = dataclasses.replace(instr, args=df.PathArgs(_workdir(snap, args.path)))
    history = df.created_by(shown, shell, content[:12] or None)
    layer = diff_id = None
    if instr.keyword == "RUN":
        if not isinstance(args, df.CommandArgs):  # the parser guarantees it; say so if not
            raise BuildError(f"{where}: RUN has no command")
        if not snap.digest:
            snap.store(store)
        argv = [*shell, *args.command] if args.shell_form else list(args.command)
        if args.heredocs:
            argv = [
                *shell,
                "\n".join([args.command[0]] + [f"{d.content}{d.name}" for d in args.heredocs]),
            ]
        layer, diff_id = steps.run_step(
            store, snap, argv, run_env, lambda line: out(f"    {line}"), where
        )
    elif isinstance(args, df.CopyArgs):
        if fetch_later is not None:  # ADD --checksum URL: its key needed no download, this does
            fetch_later()
        if not snap.digest and snap.layers:
            snap.store(store)
        chown = None
        if args.chown:
            chown = args.chown.user + (f":{args.chown.group}" if args.chown.group else "")
        try:
            layer, diff_id = steps.copy_step(
                store,
                snap,
                src_root=copy_root or ctx,
                sources=copy_sources,
                dest=args.dest,
                workdir=snap.run.get("WorkingDir") or "/",
                chown=chown,
                chmod=f"{args.chmod:o}" if args.chmod is not None else None,
                allowed=allowed if copy_root == ctx else None,
                extract_archives=_unpacks(instr.keyword, args),
                inline=tuple((d.name, d.content) for d in args.heredocs),
            )
        except BuildError as e:
            raise BuildError(f"{where}: {e}") from None
    else:
        _apply_metadata(snap, instr, shell, flags)
    nxt = snap.then(store, history, layer=layer, diff_id=diff_id)
    cache.put(step_key, nxt)
    seconds = time.monotonic() - t0
    out(f"    done {seconds:.1f}s")
    size = int(layer["size"]) if layer else 0
    return nxt, step_key, StepResult(stage, number, instr.original.strip(), False, seconds, size)


def _workdir(snap: Snapshot, path: str) -> str:
    """WORKDIR's path: a relative one is under the current WORKDIR."""
    return os.path.normpath(os.path.join(snap.run.get("WorkingDir") or "/", path))


def _canonical(args: object) -> object:
    """The instruction's parsed arguments as plain data (the cache key part)."""
    from dataclasses import asdict, is_dataclass

    return asdict(args) if is_dataclass(args) else args


def _unpacks(keyword: str, args: df.CopyArgs) -> bool:
    """ADD unpacks a local tar; a downloaded one only with --unpack=true (Docker's rule: what
    a URL serves is not known in advance). COPY never unpacks."""
    if keyword != "ADD":
        return False
    if any(fetch.is_url(src) for src in args.sources):
        return args.unpack is True
    return args.unpack is not False


def _copy_inputs(
    stack: contextlib.ExitStack,
    store: Store,
    ctx: Path,
    allowed: set[str],
    built: dict[int, Snapshot],
    keyword: str,
    args: df.CopyArgs,
    where: str,
) -> tuple[Path, list[Path], str, Callable[[], None] | None]:
    """Where a COPY reads from, what it reads, the hash of that content, and a download
    still to do when the step is not cached (None: nothing left to fetch).

    From the context: the files' content (``.dockerignore`` applied). From a stage or an
    image (``--from``): its filesystem mounted read-only; its digest names the content.
    ADD from http(s) URLs: the downloaded files (see ``_url_inputs``).
    """
    for src in args.sources:
        if keyword == "COPY" and fetch.is_url(src):
            raise BuildError(f"{where}: COPY {src}: COPY does not download URLs; use ADD")
        if keyword != "ADD":
            continue
        if fetch.is_git(src):
            raise BuildError(
                f"{where}: ADD {src}: git sources are not supported by containerlab; "
                "clone the repository into the build context and ADD that directory"
            )
        scheme = fetch.other_scheme(src)
        if scheme:
            raise BuildError(
                f"{where}: ADD {src}: only http:// and https:// URLs can be downloaded, "
                f"not {scheme}://; put the file into the build context and ADD that"
            )
    if args.checksum is not None and (len(args.sources) != 1 or not fetch.is_url(args.sources[0])):
        raise BuildError(
            f"{where}: ADD --checksum={args.checksum}: a checksum needs exactly one source, "
            "an http(s) URL; drop --checksum or give the URL alone"
        )
    if any(fetch.is_url(src) for src in args.sources):
        return _url_inputs(stack, store, args, where)
    try:
        if args.from_index is not None or args.from_stage:
            if args.from_index is not None:
                src = built[args.from_index]
                if not src.digest:
                    src.store(store)
            else:
                src = Snapshot.of(_image_for(store, args.from_stage))
            root = stack.enter_context(steps.mounted(store, src))
            if root is None:
                raise BuildError(f"COPY --from={args.from_stage}: that stage is empty")
            sources = steps.match_sources(root, list(args.sources), None)
            return root, sources, _key(src.digest, *args.sources), None
        sources = steps.match_sources(ctx, list(args.sources), allowed)
    except BuildError as e:
        raise BuildError(f"{where}: {e}") from None
    return ctx, sources, steps.content_hash(ctx, sources, allowed), None


def _url_inputs(
    stack: contextlib.ExitStack, store: Store, args: df.CopyArgs, where: str
) -> tuple[Path, list[Path], str, Callable[[], None] | None]:
    """ADD <URL>...: the files downloaded into a temporary directory (the step's source root,
    removed with the step), each named as Docker names it, so COPY's code places them.

    The content key is the digest of the bytes, so the step is cached exactly while the URL
    serves the same bytes; that means a download on every build. With ``--checksum`` the
    digest is known beforehand: the download is handed back, to run only on a cache miss.
    """
    if not all(fetch.is_url(src) for src in args.sources):
        raise BuildError(
            f"{where}: ADD with both URLs and local files is not supported by containerlab; "
            "use one ADD for the URLs and another for the files"
        )
    dest = args.dest
    to_dir = (
        dest.endswith(("/", "/.", "/.."))
        or dest in (".", "..")
        or len(args.sources) + len(args.heredocs) > 1
    )
    names: list[str] = []
    for url in args.sources:
        try:
            fetch.check_url(url)
        except BuildError as e:
            raise BuildError(f"{where}: {e}") from None
        name = fetch.file_name(url)
        if name is None and to_dir:
            raise BuildError(
                f"{where}: ADD {url} {dest}: the URL has no file name to use under {dest}; "
                "give the file's path as the destination (ADD <URL> /dir/name)"
            )
        # no name but a file destination: the name is not used (unless dest turns out to
        # be a directory of the image; BuildKit then calls the file __unnamed__ too)
        name = name or fetch.UNNAMED
        if name in names:
            raise BuildError(
                f"{where}: ADD: two URLs give the same file name '{name}'; use one ADD for each"
            )
        names.append(name)
    store.tmp.mkdir(parents=True, exist_ok=True)
    root = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=store.tmp, prefix="fetch-")))
    paths = [root / name for name in names]

    def get(url: str, path: Path, checksum: str | None = None) -> str:
        try:
            return fetch.download(url, path, checksum=checksum).digest
        except BuildError as e:
            raise BuildError(f"{where}: {e}") from None

    if args.checksum is not None:  # one URL: checked by the caller
        try:
            algorithm, hexdigest = fetch.parse_checksum(args.checksum)
        except BuildError as e:
            raise BuildError(f"{where}: {e}") from None

        def later() -> None:
            get(args.sources[0], paths[0], args.checksum)

        return root, paths, _key(f"{names[0]}\0{algorithm}:{hexdigest}"), later
    digests = [get(url, path) for url, path in zip(args.sources, paths, strict=True)]
    content = _key(*(f"{name}\0{digest}" for name, digest in zip(names, digests, strict=True)))
    return root, paths, content, None


def _apply_metadata(
    snap: Snapshot, instr: df.Instruction, shell: tuple[str, ...], flags: dict[str, bool]
) -> None:
    """ENV, CMD, ENTRYPOINT... change only the config."""
    args, run, kw = instr.args, snap.run, instr.keyword
    if kw == "ENV":
        for k, v in args.pairs:
            snap.set_env(k, v)
    elif kw == "LABEL":
        run.setdefault("Labels", {}).update(dict(args.pairs))
    elif kw in ("CMD", "ENTRYPOINT"):
        argv = [*shell, *args.command] if args.shell_form else list(args.command)
        run["Cmd" if kw == "CMD" else "Entrypoint"] = argv
        if kw == "ENTRYPOINT" and not flags.get("cmd_set"):
            # Docker: an ENTRYPOINT drops the CMD inherited from the base image (a CMD
            # given earlier in this stage stays).
            run.pop("Cmd", None)
    elif kw == "WORKDIR":
        run["WorkingDir"] = _workdir(snap, args.path)
    elif kw == "USER":
        run["User"] = args.user + (f":{args.group}" if args.group else "")
    elif kw == "EXPOSE":
        for port in args.ports:
            run.setdefault("ExposedPorts", {})[f"{port.number}/{port.protocol}"] = {}
    elif kw == "VOLUME":
        for p in args.paths:
            run.setdefault("Volumes", {})[p] = {}
    elif kw == "STOPSIGNAL":
        run["StopSignal"] = args.signal
    elif kw == "SHELL":
        run["Shell"] = list(args.shell)
    elif kw == "HEALTHCHECK":
        hc = {"Test": list(args.test)}
        for name, value in (
            ("Interval", args.interval),
            ("Timeout", args.timeout),
            ("StartPeriod", args.start_period),
            ("Retries", args.retries),
        ):
            if value is not None:
                hc[name] = value
        run["Healthcheck"] = hc
    elif kw == "ONBUILD":
        run.setdefault("OnBuild", []).append(args.trigger)
    elif kw == "MAINTAINER":
        snap.config["author"] = args.name
    # ARG changes nothing in the image: its value reaches later RUN steps only.
