"""What every verb of the CLI shares: the parser class, exit codes, output helpers."""

from __future__ import annotations

import argparse
import json
import sys

from containerlab.errors import ContainerlabError

# Types for annotations only: importing typing costs every container start ~2 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EXIT_CLI_ERROR = 125  # Docker's code for "the runtime itself failed", bad flags included


class Parser(argparse.ArgumentParser):
    """argparse, but bad flags exit 125 and say where to look, as Docker's CLI does."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"containerlab: {message}\nSee '{self.prog} --help'.", file=sys.stderr)
        sys.exit(EXIT_CLI_ERROR)


def template(text: str, doc: dict[str, Any]) -> str:
    """A subset of Docker's Go templates: ``{{.Id}}``, ``{{.Config.Cmd}}``, ``{{json .X}}``."""
    import re

    def value(path: str, as_json: bool) -> str:
        v: Any = doc
        for part in path.strip(".").split("."):
            if not part:
                continue
            if not isinstance(v, dict) or part not in v:
                raise ContainerlabError(f"template: no field {path!r}; fields: {', '.join(doc)}")
            v = v[part]
        return json.dumps(v) if as_json or isinstance(v, dict | list) else str(v)

    return re.sub(
        r"\{\{\s*(json\s+)?(\.[\w.]*)\s*\}\}",
        lambda m: value(m.group(2), bool(m.group(1))),
        text,
    )


def detach_keys_flag(p: argparse.ArgumentParser) -> None:
    """``--detach-keys``, as run, start and attach spell it."""
    p.add_argument(
        "--detach-keys",
        metavar="KEYS",
        help="keys that detach from a -t container and leave it running "
        "(default ctrl-p,ctrl-q; ctrl-<a-z@[\\]^_> or single characters)",
    )
