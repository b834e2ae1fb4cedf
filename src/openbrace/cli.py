"""The `openbrace` command.

Each subcommand is one `_cmd_NAME(args) -> int` function; `main` only parses and
dispatches. Errors print as one clear line (or a JSON object with `--json`),
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .exceptions import OpenBraceError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openbrace", description="Stream structured LLM output field by field."
    )
    parser.add_argument("--json", action="store_true", help="print errors as JSON objects")
    commands = parser.add_subparsers(dest="command", required=True)
    # Each subcommand registers itself below with add_parser(...).set_defaults(run=_cmd_NAME).
    del commands  # (placeholder until the first subcommand lands)
    return parser


def _fail(args: argparse.Namespace, message: str, kind: str = "error") -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": {"type": kind, "message": message}}), file=sys.stderr)
    else:
        print(f"openbrace: {message}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except ImportError as exc:
        return _fail(args, f"{exc}. Install the extra: pip install 'openbrace[all]'", "import")
    except OpenBraceError as exc:
        return _fail(args, str(exc), type(exc).__name__)


if __name__ == "__main__":
    sys.exit(main())
