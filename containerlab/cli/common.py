"""What every verb of the CLI shares: the parser class, exit codes, output helpers."""

from __future__ import annotations

import argparse
import sys

EXIT_CLI_ERROR = 125  # Docker's code for "the runtime itself failed", bad flags included


class Parser(argparse.ArgumentParser):
    """argparse, but bad flags exit 125 and say where to look, as Docker's CLI does."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"containerlab: {message}\nSee '{self.prog} --help'.", file=sys.stderr)
        sys.exit(EXIT_CLI_ERROR)
