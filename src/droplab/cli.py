"""Command line interface: parse, call the library, print. No logic lives here.

Errors the user can cause (:class:`droplab.errors.DroplabError`) end the program with one
line on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from droplab.errors import DroplabError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse that exits with code 2 and one line (its default is usage + message)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"droplab: error: {message}", file=sys.stderr)
        raise SystemExit(2)


# --- demo -------------------------------------------------------------------------------------
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the README's main job: a small study on MNIST-1D")
    p.add_argument("--out", default="out", help="folder for the study store and the report")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from droplab.demo import run_demo

    return run_demo(out=args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="droplab", description="a laboratory for dropout and other regularizers")
    from droplab import __version__

    parser.add_argument("--version", action="version", version=f"droplab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_demo(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DroplabError as exc:
        print(f"droplab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("droplab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
