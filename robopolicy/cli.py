"""The ``robopolicy`` command.

Subcommands register themselves with :func:`command`. The modules holding them are named by the
``robopolicy.commands`` entry points in ``pyproject.toml`` and imported when the command line is
built, so ``sim`` and ``hardware`` add commands without ``robopolicy`` importing them. Errors the
user can fix (:class:`~robopolicy.errors.RobopolicyError`) print one ``error:`` line and exit 2,
never a traceback. Figures go to stdout (one JSON document with ``--json``); progress and logs
to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.metadata
import json
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any

from robopolicy import __version__
from robopolicy.errors import RobopolicyError

COMMAND_GROUP = "robopolicy.commands"


@dataclasses.dataclass(frozen=True)
class Command:
    """One subcommand: its words, help, arguments and the function that runs it."""

    words: tuple[str, ...]
    help: str
    args: tuple[tuple[tuple[str, ...], dict[str, Any]], ...]
    run: Callable[[argparse.Namespace], int | None]


COMMANDS: dict[tuple[str, ...], Command] = {}
GROUPS: dict[tuple[str, ...], str] = {}


def arg(*names: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """One argument of a subcommand, as given to ``ArgumentParser.add_argument``."""
    return names, kwargs


def group(words: str, *, help: str) -> None:
    """Declare a command group such as ``data`` (its subcommands come with :func:`command`)."""
    GROUPS[tuple(words.split())] = help


def command(words: str, *, help: str, args: Sequence[tuple] = ()) -> Callable:
    """Register the decorated ``run(args) -> exit code`` as the subcommand ``words``."""

    def decorate(run: Callable[[argparse.Namespace], int | None]) -> Callable:
        key = tuple(words.split())
        if key in COMMANDS:
            raise ValueError(f"command {words!r} registered twice")
        COMMANDS[key] = Command(key, help, tuple(args), run)
        return run

    return decorate


def print_json(document: Any) -> None:
    """Write the one JSON document a ``--json`` command puts on stdout."""
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")


def load_commands() -> None:
    """Import every module named by a ``robopolicy.commands`` entry point."""
    for entry in importlib.metadata.entry_points(group=COMMAND_GROUP):
        importlib.import_module(entry.value)


def build_parser() -> argparse.ArgumentParser:
    load_commands()
    parser = argparse.ArgumentParser(
        prog="robopolicy", description="Robot policies from demonstrations to hardware."
    )
    parser.add_argument("--version", action="version", version=f"robopolicy {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    subparsers: dict[tuple[str, ...], argparse._SubParsersAction] = {
        (): parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    }
    for words in sorted(set(GROUPS) | set(COMMANDS)):
        parent = subparsers[words[:-1]]
        if words in GROUPS:
            sub = parent.add_parser(words[-1], help=GROUPS[words], description=GROUPS[words])
            subparsers[words] = sub.add_subparsers(metavar="SUBCOMMAND", required=True)
        else:
            cmd = COMMANDS[words]
            # argparse %-formats a parser's help (the listing) but not its description
            listing = cmd.help.replace("%", "%%")
            sub = parent.add_parser(words[-1], help=listing, description=cmd.help)
            for names, kwargs in cmd.args:
                sub.add_argument(*names, **kwargs)
            sub.set_defaults(run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    # what was asked, for checkpoint cards (not sys.argv: main may be called in-process)
    args.command_line = shlex.join(["robopolicy", *argv])
    if extra:
        # ``key=value`` config overrides may come after the options (argparse stops a nargs="*"
        # positional at the first option)
        if hasattr(args, "overrides") and all("=" in w and not w.startswith("-") for w in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.run(args) or 0)
    except RobopolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # run as a script, this module is __main__: commands register in the imported robopolicy.cli
    from robopolicy.cli import main as installed_main

    sys.exit(installed_main())
