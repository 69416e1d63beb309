"""The ``robopolicy`` commands that join the learning library to the simulated tasks.

Each command module registers its subcommands with :func:`robopolicy.cli.command` and is named
by a ``robopolicy.commands`` entry point in ``pyproject.toml``: ``tasks``, ``collect``,
``train``, ``eval``, ``finetune``, ``medium`` and ``quickstart``. ``apps`` may import
``robopolicy``, ``sim`` and ``hardware``; none of them imports ``apps``. Command modules stay
light to import (torch and the trainers load when a command runs), so listing commands is quick.
"""
