"""Every command that reads interaction files reads them the same way: the same format, item-key, column,
time-unit and malformed-line options, checked before any file is read."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from difflsrec import cli

READ_FLAGS = {"--format", "--item-key", "--user-col", "--item-col", "--time-col", "--time-unit", "--max-malformed"}
COMMANDS = [("data", "prepare"), ("benchmark",), ("train",), ("evaluate",), ("reproduce",), ("bootstrap",), ("replay",)]


def _app() -> typer.Typer:
    """The ``difflsrec`` app with its sub-commands mounted (``main`` mounts them on start)."""
    if not cli.app.registered_groups:
        cli._mount()
    return cli.app


def _command(path: tuple[str, ...]):
    command = typer.main.get_command(_app())
    for name in path:
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_that_reads_files_takes_the_read_options(path):
    flags = {opt for param in _command(path).params for opt in param.opts}
    assert READ_FLAGS <= flags, f"{' '.join(path)} lacks {sorted(READ_FLAGS - flags)}"


def _ml100k_as_csv(ml100k_file: Path, path: Path, users: int = 60) -> Path:
    """The first users of the real ml-100k file as a csv whose columns no loader knows by name, times in ms."""
    rows = [line.split("\t") for line in Path(ml100k_file).read_text().splitlines()]
    keep = set(sorted({int(r[0]) for r in rows})[:users])
    lines = ["customer,product,stars,when"] + [f"c{u},p{i},{r},{int(t) * 1000}" for u, i, r, t in rows if int(u) in keep]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_reads_a_csv_by_the_column_names_it_is_given(ml100k_file, isolated_home, tmp_path):
    from model.artifact import load_artifact

    data = _ml100k_as_csv(ml100k_file, tmp_path / "log.csv")
    base = ["train", "--model", "pop", "--input", str(data), "--out", str(tmp_path / "art")]
    runner = CliRunner()

    refused = runner.invoke(_app(), base)
    assert refused.exit_code != 0 and "user_col" in str(refused.exception)  # says which options would help

    named = ["--format", "csv", "--user-col", "customer", "--item-col", "product", "--time-col", "when"]
    done = runner.invoke(_app(), base + named)
    assert done.exit_code == 0, done.output
    art = load_artifact(tmp_path / "art")
    assert art.item_ids[1:] and all(item.startswith("p") for item in art.item_ids[1:])


@pytest.mark.parametrize(
    "bad, message",
    [(["--format", "parquet"], "unknown format"), (["--item-key", "sku"], "item_key must be"), (["--time-unit", "us"], "time_unit must be"), (["--max-malformed", "2"], "max_malformed must be"),
     (["--split", "timeline", "--timeline-cuts", "0.9", "0.5"], "timeline_cuts must")],
)
def test_a_bad_read_option_is_an_option_error_before_any_file_is_read(bad, message, tmp_path):
    result = CliRunner().invoke(_app(), ["benchmark", "--input", str(tmp_path / "missing.csv"), "--models", "pop", "--out", str(tmp_path / "o"), *bad])
    assert result.exit_code == 2, result.output  # click's usage error, not a crash reading the (missing) file
    assert message in result.output


def test_data_prepare_refuses_bad_preparation_options_as_the_training_commands_do(tmp_path):
    result = CliRunner().invoke(_app(), ["data", "prepare", "--input", str(tmp_path / "missing.csv"), "--split", "timeline", "--timeline-cuts", "0.9", "0.5"])
    assert result.exit_code == 2, result.output
    assert "timeline_cuts must" in result.output


def test_a_command_without_a_read_parameter_cannot_take_the_read_options():
    from model.data.cli import reads_interactions

    def command(input: str = "x") -> None: ...

    with pytest.raises(TypeError, match="needs a `read: ReadOptions` parameter"):
        reads_interactions(command)
