"""The image verbs: pull, push, images, tag, rmi, inspect, save, load, import, export,
history, and ``image prune`` (plus ``image ls/rm/inspect/history/...`` as Docker has them)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from containerlab.cli.common import template
from containerlab.errors import ContainerlabError, ImageError


def _store():
    from containerlab.image.store import Store

    return Store()


def _ensure_base(store) -> None:
    # The offline busybox image appears the first time anyone looks, as if always there.
    from containerlab.image import base

    base.ensure_base_image(store)


def _human(n: float) -> str:
    from containerlab.image.progress import human

    return human(n)


def _ago(created: str | None) -> str:
    """``3 minutes ago``, as Docker prints the CREATED column."""
    if not created:
        return "N/A"
    from datetime import datetime

    try:
        t = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return created
    delta = max(0, time.time() - t)
    for unit, secs in (
        ("year", 31536000),
        ("month", 2592000),
        ("week", 604800),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
    ):
        if delta >= secs:
            n = int(delta // secs)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "Less than a second ago" if delta < 1 else f"{int(delta)} seconds ago"


def _short_id(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


# --- verbs ----------------------------------------------------------------------------------
def cmd_images(args: argparse.Namespace) -> int:
    from containerlab.image.reference import parse

    store = _store()
    _ensure_base(store)
    rows = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]]
    if args.digests:
        rows[0].insert(2, "DIGEST")
    ids = []
    for image in store.images():
        for tag in image.tags:
            r = parse(tag)
            repo = r.familiar.rsplit(":", 1)[0]
            image_id = image.id if args.no_trunc else _short_id(image.id)
            row = [
                repo,
                r.tag or "<none>",
                image_id,
                _ago(image.config.get("created")),
                _human(image.size),
            ]
            if args.digests:
                row.insert(2, image.digest)
            rows.append(row)
            ids.append(image_id)
    if args.quiet:
        print("\n".join(dict.fromkeys(ids)))
    else:
        print(_table(rows))
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from containerlab.image import progress, registry
    from containerlab.image.reference import parse

    ref = parse(args.name)
    store = _store()
    prog = progress.NullProgress() if args.quiet else progress.auto("pull")
    digest = registry.pull(
        ref, store, platform=args.platform, insecure=args.insecure, progress=prog
    )
    if args.quiet:
        print(ref.familiar)
    else:
        print(f"Digest: {digest}\nStatus: pulled {ref.familiar}\n{ref}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from containerlab.image import progress, registry
    from containerlab.image.reference import parse

    ref = parse(args.name)
    store = _store()
    store.resolve(ref)  # a clear "not found" before any network traffic
    prog = progress.NullProgress() if args.quiet else progress.auto("push")
    digest = registry.push(ref, store, insecure=args.insecure, progress=prog)
    print(f"{ref.tag or 'latest'}: digest: {digest} size: {store.blob_size(digest)}")
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    from containerlab.image.reference import parse

    store = _store()
    _ensure_base(store)
    target = parse(args.target)
    if target.digest:
        raise ImageError(f"cannot tag with a digest reference '{args.target}'; give NAME[:TAG]")
    store.tag(target, store.resolve(args.source))
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    from containerlab.image.reference import parse

    store = _store()
    status = 0
    for name in args.images:
        try:
            digest = store.resolve(name)
            in_use = _leased(store, digest)
            if in_use and not args.force:
                raise ImageError(
                    f"image '{name}' is used by running container {in_use[0][:12]}; "
                    "stop it first, or use -f"
                )
            tags = [t for t, d in store.tags().items() if d == digest]
            by_name = not (name.startswith("sha256:") or _looks_like_id(name, tags))
            if by_name:
                targets = [str(parse(name))]
            elif len(tags) > 1 and not args.force:
                raise ImageError(
                    f"image '{name}' is referenced by {len(tags)} tags "
                    f"({', '.join(parse(t).familiar for t in tags)}); "
                    "remove them by name, or use -f"
                )
            else:
                targets = tags
            for t in targets:
                store.untag(t)
                print(f"Untagged: {parse(t).familiar}")
        except ContainerlabError as e:
            print(f"containerlab: {e}", file=sys.stderr)
            status = 1
    removed = store.gc()
    if removed["blobs"] or removed["layers"]:
        print(f"Deleted: {removed['blobs']} blobs, {removed['layers']} unpacked layers")
    return status


def _looks_like_id(name: str, tags: list[str]) -> bool:
    from containerlab.image.reference import parse

    try:
        return str(parse(name)) not in tags
    except ImageError:
        return True


def _leased(store, digest: str) -> list[str]:
    if not store.leases.is_dir():
        return []
    return [p.name for p in store.leases.iterdir() if p.read_text().strip() == digest]


def cmd_prune(args: argparse.Namespace) -> int:
    store = _store()
    before = _disk_usage(store.root)
    removed = store.gc()
    print(f"Deleted {removed['blobs']} blobs and {removed['layers']} unpacked layers.")
    print(f"Total reclaimed space: {_human(max(0, before - _disk_usage(store.root)))}")
    return 0


def _disk_usage(root) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _inspect_doc(image) -> dict[str, Any]:
    from containerlab.image.reference import parse

    cfg = image.config
    repo_digests = sorted(
        {f"{parse(t).familiar.rsplit(':', 1)[0]}@{image.digest}" for t in image.tags}
    )
    return {
        "Id": image.id,
        "RepoTags": [parse(t).familiar for t in image.tags],
        "RepoDigests": repo_digests,
        "ManifestDigest": image.digest,
        "MediaType": image.media_type,
        "Created": cfg.get("created"),
        "Architecture": cfg.get("architecture"),
        "Os": cfg.get("os"),
        "Config": cfg.get("config") or {},
        "RootFS": cfg.get("rootfs"),
        "Layers": [
            {"Digest": la["digest"], "MediaType": la["mediaType"], "Size": la["size"]}
            for la in image.layers
        ],
        "Size": image.size,
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    """Containers first, then images, as Docker looks them up (``--type`` to choose)."""
    from containerlab.runtime import lifecycle, state

    store = _store()
    _ensure_base(store)
    docs = []
    for name in args.names:
        if args.type in (None, "container"):
            try:
                docs.append(lifecycle.inspect(name))
                continue
            except state.NoSuchContainerError:
                if args.type == "container":
                    raise
        docs.append(_inspect_doc(store.image(name)))
    if args.format:
        for doc in docs:
            print(template(args.format, doc))
    else:
        print(json.dumps(docs, indent=4))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    store = _store()
    _ensure_base(store)
    image = store.image(args.name)
    rows = [["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]]
    layers = list(image.layers)
    entries = image.config.get("history") or [{} for _ in layers]
    sized: list[tuple[dict, int]] = []
    for entry in entries:
        size = 0
        if not entry.get("empty_layer") and layers:
            size = int(layers.pop(0)["size"])
        sized.append((entry, size))
    for i, (entry, size) in enumerate(reversed(sized)):
        created_by = entry.get("created_by", "")
        if not args.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append(
            [
                _short_id(image.id) if i == 0 else "<missing>",
                _ago(entry.get("created")),
                created_by,
                _human(size),
                entry.get("comment", ""),
            ]
        )
    print(_table(rows))
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    from containerlab.image import archive

    store = _store()
    _ensure_base(store)
    for name in args.images:
        store.resolve(name)  # every name must exist before anything is written
    refs = list(args.images)
    if args.format == "oci":
        if not args.output:
            raise ContainerlabError("--format oci writes a directory: give it with -o DIR")
        archive.save_oci_layout(store, refs, args.output)
        return 0
    if args.output:
        archive.save_docker_archive(store, refs, args.output)
    else:
        if sys.stdout.isatty():
            raise ContainerlabError(
                "refusing to write a tar archive to a terminal; use -o FILE or redirect the output"
            )
        archive.save_docker_archive(store, refs, sys.stdout.buffer)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from containerlab.image import archive
    from containerlab.image.reference import parse

    store = _store()
    src = args.input
    if args.ref and not (src and os.path.isdir(src)):
        raise ContainerlabError(
            "--ref is for OCI layout directories; a docker archive carries its own names"
        )
    if src and os.path.isdir(src):
        digests = archive.load_oci_layout(store, src, ref=args.ref)
    elif src:
        digests = archive.load_docker_archive(store, src)
    else:
        digests = archive.load_docker_archive(store, sys.stdin.buffer)
    for digest in digests:
        tags = [t for t, d in store.tags().items() if d == digest]
        for t in tags or [digest]:
            print(f"Loaded image: {parse(t).familiar if tags else t}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from containerlab.image import archive

    store = _store()
    changes: dict[str, Any] = {}
    for change in args.change:
        key, _, value = change.partition(" ")
        key = key.upper()
        if key in ("CMD", "ENTRYPOINT"):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = ["/bin/sh", "-c", value]
            changes[key.title()] = parsed
        elif key == "ENV":
            changes.setdefault("Env", []).append(
                value.replace(" ", "=", 1) if "=" not in value else value
            )
        elif key == "WORKDIR":
            changes["WorkingDir"] = value
        elif key == "USER":
            changes["User"] = value
        else:
            raise ContainerlabError(
                f"--change {key} is not supported; use CMD, ENTRYPOINT, ENV, WORKDIR or USER"
            )
    src = sys.stdin.buffer if args.file == "-" else args.file
    digest = archive.import_rootfs(store, src, args.reference or "imported:latest", changes=changes)
    print(digest)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from containerlab.image import archive

    store = _store()
    _ensure_base(store)
    if args.output:
        with open(args.output, "wb") as f:
            archive.export_rootfs(store, args.image, f)
    else:
        if sys.stdout.isatty():
            raise ContainerlabError(
                "refusing to write a tar archive to a terminal; use -o FILE or redirect the output"
            )
        archive.export_rootfs(store, args.image, sys.stdout.buffer)
    return 0


# --- parsers --------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    def images_parser(p: argparse.ArgumentParser) -> None:
        p.add_argument("-q", "--quiet", action="store_true", help="only image ids")
        p.add_argument("--digests", action="store_true", help="show manifest digests")
        p.add_argument("--no-trunc", action="store_true", help="full image ids")
        p.set_defaults(func=cmd_images)

    def pull_parser(p: argparse.ArgumentParser) -> None:
        p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
        p.add_argument(
            "--platform",
            metavar="OS/ARCH[/VARIANT]",
            help="pick this platform from a multi-platform image (default: this machine's)",
        )
        p.add_argument(
            "--insecure",
            action="store_true",
            help="allow plain http to a registry that is not on loopback",
        )
        p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        p.set_defaults(func=cmd_pull)

    def push_parser(p: argparse.ArgumentParser) -> None:
        p.add_argument("name", metavar="NAME[:TAG]")
        p.add_argument(
            "--insecure",
            action="store_true",
            help="allow plain http to a registry that is not on loopback",
        )
        p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        p.set_defaults(func=cmd_push)

    def rmi_parser(p: argparse.ArgumentParser) -> None:
        p.add_argument("images", nargs="+", metavar="IMAGE")
        p.add_argument(
            "-f",
            "--force",
            action="store_true",
            help="remove every tag of an image id, even if a container uses it",
        )
        p.set_defaults(func=cmd_rmi)

    def inspect_parser(p: argparse.ArgumentParser) -> None:
        p.add_argument("names", nargs="+", metavar="IMAGE")
        p.add_argument("-f", "--format", help="Go-template-like format, e.g. '{{.Id}}'")
        p.add_argument(
            "--type",
            choices=("container", "image"),
            help="look only for a container, or only for an image",
        )
        p.set_defaults(func=cmd_inspect)

    def history_parser(p: argparse.ArgumentParser) -> None:
        p.add_argument("name", metavar="IMAGE")
        p.add_argument("--no-trunc", action="store_true", help="do not shorten CREATED BY")
        p.set_defaults(func=cmd_history)

    def save_parser(p: argparse.ArgumentParser) -> None:
        p.add_argument("images", nargs="+", metavar="IMAGE")
        p.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")
        p.add_argument(
            "--format",
            choices=("docker", "oci"),
            default="docker",
            help="docker: a `docker save` tarball (default); oci: an OCI layout dir",
        )
        p.set_defaults(func=cmd_save)

    def load_parser(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-i",
            "--input",
            metavar="FILE",
            help="a docker-archive tar or an OCI layout directory (default: stdin)",
        )
        p.add_argument(
            "--ref",
            metavar="NAME[:TAG]",
            help="OCI layouts only: which image to load and the name to give it "
            "(skopeo and umoci name images by tag alone)",
        )
        p.set_defaults(func=cmd_load)

    def tag_parser(p: argparse.ArgumentParser) -> None:
        p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
        p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
        p.set_defaults(func=cmd_tag)

    def prune_parser(p: argparse.ArgumentParser) -> None:
        p.add_argument("-f", "--force", action="store_true", help="do not ask (never asks)")
        p.set_defaults(func=cmd_prune)

    def import_parser(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", metavar="FILE|-", help="a rootfs tarball ('-': stdin)")
        p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
        p.add_argument(
            "-c",
            "--change",
            action="append",
            default=[],
            help="a Dockerfile instruction for the config: CMD, ENTRYPOINT, ENV, WORKDIR, USER",
        )
        p.set_defaults(func=cmd_import)

    def export_parser(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "image",
            metavar="IMAGE",
            help="the image whose filesystem to export (containers: with the container lifecycle)",
        )
        p.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")
        p.set_defaults(func=cmd_export)

    top = {
        "images": ("list images", images_parser),
        "pull": ("download an image from a registry", pull_parser),
        "push": ("upload an image to a registry", push_parser),
        "rmi": ("remove images (what nothing else uses)", rmi_parser),
        "inspect": ("show an image's details as JSON", inspect_parser),
        "history": ("show how an image was built, layer by layer", history_parser),
        "save": ("write images to a tar archive (docker save) or an OCI layout", save_parser),
        "load": ("read images from a tar archive or an OCI layout", load_parser),
        "tag": ("give an image another name", tag_parser),
        "import": ("make an image from a rootfs tarball", import_parser),
        "export": ("write an image's filesystem as one tarball", export_parser),
    }
    for verb, (text, build) in top.items():
        build(sub.add_parser(verb, help=text, description=text[0].upper() + text[1:] + "."))

    image = sub.add_parser(
        "image", help="manage images (ls, rm, prune, inspect, ...)", description="Manage images."
    )
    isub = image.add_subparsers(dest="image_verb", metavar="COMMAND", parser_class=type(image))
    for verb, (text, build) in {
        "ls": ("list images", images_parser),
        "rm": ("remove images", rmi_parser),
        "prune": ("remove every blob and layer no tagged image uses", prune_parser),
        **{
            v: top[v]
            for v in ("pull", "push", "inspect", "history", "save", "load", "tag", "import")
        },
    }.items():
        build(isub.add_parser(verb, help=text, description=text[0].upper() + text[1:] + "."))
