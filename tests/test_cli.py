"""The ``robopolicy`` command: every subcommand answers ``--help``; user errors are one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from robopolicy.cli import COMMANDS, GROUPS, build_parser, main

build_parser()  # imports every command module, filling the registries
ALL_WORDS = sorted(set(COMMANDS) | set(GROUPS))


@pytest.mark.parametrize("words", ALL_WORDS, ids=" ".join)
def test_every_subcommand_has_help(words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*words, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: robopolicy " + " ".join(words))


def test_contract_commands_are_registered():
    for words in (("data", "info"), ("data", "convert"), ("data", "view")):
        assert words in COMMANDS


@pytest.mark.parametrize("module", ["robopolicy", "robopolicy.cli"])
def test_runs_as_a_module_with_every_command(module):
    done = subprocess.run(
        [sys.executable, "-m", module, "data", "info", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: robopolicy data info")


def test_unknown_subcommand_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
