"""Every command's --help shows all of its options' help text: typer renders help with rich markup, which
takes any "[...]" for a tag and drops it (the environment variables and defaults written that way in the
worker's help were invisible)."""

from __future__ import annotations

import re

import typer
from typer.testing import CliRunner

from difflsrec import cli

if not cli.app.registered_groups:  # the sub-commands are mounted by main(); once per process
    cli._mount()
app = cli.app


def _commands(command, path: tuple[str, ...] = ()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():  # a group (typer bundles its own click)
        yield from _commands(sub, (*path, name))


def test_no_help_text_is_written_as_markup():
    checked = 0
    for path, command in _commands(typer.main.get_command(app)):
        for param in command.params:
            text = getattr(param, "help", None) or ""
            assert not re.search(r"\[[^\]]*\]", text), (" ".join(path), param.name, text)
            checked += 1
    assert checked > 100  # the whole tree was walked


def test_the_worker_help_names_its_environment_variables():
    result = CliRunner().invoke(app, ["worker", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for variable in ("DIFFLSREC_ARTIFACT", "DIFFLSREC_BATCH_MAX", "DIFFLSREC_WEB_PORT"):
        assert variable in result.output
