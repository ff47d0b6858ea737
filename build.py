#!/usr/bin/env python3
"""Build, serve and test the KV-cache hit-rate calculator.

    python build.py          build dist/ (the deployable static site)
    python build.py serve    build dist/ and serve it on http://127.0.0.1:8000/
    python build.py test     install what the tests need and run them
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def run(cmd: list[str], **kwargs) -> None:
    """Run a command, echoing it; exit with its status if it fails."""
    print("+", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, cwd=kwargs.pop("cwd", ROOT), **kwargs)
    if result.returncode != 0:
        sys.exit(result.returncode)


def install_test_deps() -> None:
    """Install the package in editable mode with its test extra."""
    run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-e", ".[test]"])


def cmd_test(args: argparse.Namespace) -> None:
    install_test_deps()
    pytest_args = list(args.pytest_args or [])
    run([sys.executable, "-m", "pytest", *pytest_args])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    p_test = sub.add_parser("test", help="install test dependencies and run the tests")
    p_test.add_argument("pytest_args", nargs=argparse.REMAINDER,
                        help="extra arguments passed to pytest (e.g. -m 'not browser')")
    p_test.set_defaults(func=cmd_test)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return
    args.func(args)


if __name__ == "__main__":
    main()
