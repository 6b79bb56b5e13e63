"""``difflsrec data fetch | prepare | info``."""

from __future__ import annotations

import functools
import inspect
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import get_type_hints

import typer

from difflsrec.settings import CommonSettings
from model.data.fetch import DATASETS, amazon2023_instructions
from model.data.fetch import fetch as fetch_dataset
from model.data.formats import FORMATS, ReadOptions, head
from model.data.prepare import PrepareOptions, summary
from model.data.prepare import prepare as prepare_dataset

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

FORMAT_HELP = f"'auto' or one of: {', '.join(FORMATS)}"

# How interaction files are read: declared once and taken by every command that reads them (data prepare,
# benchmark, train, evaluate, reproduce, bootstrap, replay), so a file one of them reads, all of them read.
# typer only reads these declarations, so one object can serve several commands (see reads_interactions).
FORMAT = typer.Option("auto", help=FORMAT_HELP)
ITEM_KEY = typer.Option("parent_asin", help="Amazon 2023: the item id field, parent_asin | asin")
USER_COL = typer.Option(None, help="the user column (csv, amazon2023-csv) or JSON key (amazon2023, amazon2018); default: the format's own (csv: found in the header by name)")
ITEM_COL = typer.Option(None, help="the item column (csv, amazon2023-csv) or JSON key (amazon2023, amazon2018); overrides --item-key; default: the format's own")
TIME_COL = typer.Option(None, help="the timestamp column (csv, amazon2023-csv) or JSON key (amazon2023, amazon2018); default: the format's own")
TIME_UNIT = typer.Option("auto", help="timestamps in s | ms (auto: the format's own unit, checked against the magnitude; a csv's is detected)")
MAX_MALFORMED = typer.Option(0.01, help="fraction of malformed lines tolerated before the read fails")
TIMELINE_CUTS = typer.Option((0.8, 0.9), help="--split timeline: validation and test start at these time quantiles")


_READ_OPTIONS = (  # (parameter, declaration, type), in the order --help shows them
    ("format", FORMAT, str), ("item_key", ITEM_KEY, str), ("user_col", USER_COL, str | None), ("item_col", ITEM_COL, str | None),
    ("time_col", TIME_COL, str | None), ("time_unit", TIME_UNIT, str), ("max_malformed", MAX_MALFORMED, float),
)


def reads_interactions(command: Callable) -> Callable:
    """Give a command the reading options in place of its ``read: ReadOptions`` parameter.

    typer builds a command's options from its signature, so the wrapper shows typer the signature with
    ``read`` replaced by the options above, and calls the command with the :class:`ReadOptions` they make.
    A bad value is an option error (exit 2), before any file is read."""
    signature = inspect.signature(command)
    if "read" not in signature.parameters:
        raise TypeError(f"{command.__name__} needs a `read: ReadOptions` parameter to take the reading options")
    hints = get_type_hints(command)
    params = []
    for param in signature.parameters.values():
        if param.name == "read":
            params += [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option, annotation=kind) for name, option, kind in _READ_OPTIONS]
        else:
            params.append(param.replace(annotation=hints.get(param.name, param.annotation)))

    @functools.wraps(command)
    def with_read_options(**kwargs):
        values = {name: kwargs.pop(name) for name, _, _ in _READ_OPTIONS}
        try:
            read = ReadOptions(**values)
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None
        return command(read=read, **kwargs)

    with_read_options.__signature__ = inspect.Signature(params, return_annotation=None)  # what typer reads
    with_read_options.__annotations__ = {p.name: p.annotation for p in params}
    return with_read_options


def prepare_options(read: ReadOptions, kcore: int, users: int | None, seed: int, split: str, timeline_cuts: tuple[float, float]) -> PrepareOptions:
    """The preparation options of a command line; a bad value is an option error (exit 2), before any file is read."""
    options = PrepareOptions(read=read, kcore=kcore, users=users, seed=seed, split=split, timeline_cuts=timeline_cuts)
    try:
        options.validate()
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return options


@app.command()
def fetch(
    name: str = typer.Argument(..., help=f"{' | '.join(DATASETS)} | amazon2023"),
    category: str = typer.Argument(None, help="amazon2023 only: category, e.g. Cell_Phones_and_Accessories"),
    dest: Path = typer.Option(None, help="data dir (default: $DIFFLSREC_HOME/data)"),
    force: bool = typer.Option(False, help="fetch again even if the file exists"),
) -> None:
    """Download a small public dataset into the data dir (or say where Amazon 2023 files live)."""
    if name == "amazon2023":
        typer.echo(amazon2023_instructions(category or "Cell_Phones_and_Accessories"))
        return
    typer.echo(fetch_dataset(name, dest=dest, force=force))


@app.command()
@reads_interactions
def prepare(
    input: list[Path] = typer.Option(..., "--input", "-i", help="interaction file(s); several are concatenated"),
    read: ReadOptions = ReadOptions(),  # --format, --item-key, --user-col, ... (reads_interactions)
    kcore: int = typer.Option(5, help="minimum interactions per user and item (0 = off)"),
    users: int = typer.Option(None, help="random subset of this many users (after the k-core)"),
    seed: int = typer.Option(0, envvar="DIFFLSREC_SEED", help="seed of the user subset"),
    split: str = typer.Option("loo", help="loo | timeline"),
    timeline_cuts: tuple[float, float] = TIMELINE_CUTS,
    cache_dir: Path = typer.Option(None, help="default: $DIFFLSREC_HOME/prepared"),
) -> None:
    """Prepare a dataset (or load it from the cache) and print a summary."""
    options = prepare_options(read, kcore, users, seed, split, timeline_cuts)
    started = time.perf_counter()
    dataset = prepare_dataset([_resolve_input(p) for p in input], options, cache_dir=cache_dir)
    elapsed = time.perf_counter() - started
    numbers = summary(dataset)
    typer.echo(f"format        {dataset.meta['format']}")
    for key, value in numbers.items():
        typer.echo(f"{key:<20} {value:.6f}" if isinstance(value, float) else f"{key:<20} {value}")
    for step in dataset.meta["steps"]:
        typer.echo(
            f"  {step['step']:<28} users {step['users']:>9}  items {step['items']:>9}"
            f"  interactions {step['interactions']:>10}"
        )
    malformed = sum(r["malformed"] for r in dataset.meta["malformed"])
    typer.echo(f"malformed lines      {malformed}")
    if dataset.split.info:
        typer.echo(f"split info           {json.dumps(dataset.split.info)}")
    origin = "loaded from cache" if dataset.meta.get("from_cache") else "built"
    typer.echo(f"cache                {dataset.meta['cache_path']} ({origin} in {elapsed:.2f} s)")


@app.command()
@reads_interactions
def info(
    file: Path = typer.Argument(..., help="interaction file"),
    read: ReadOptions = ReadOptions(),  # --format, --item-key, --user-col, ... (reads_interactions)
    rows: int = typer.Option(5, help="how many parsed rows to show"),
) -> None:
    """Print the detected format and the first parsed rows of a file."""
    fmt, parsed, report = head(_resolve_input(file), rows, read)
    typer.echo(f"format     {fmt}  (timestamps in {report.time_unit})")
    for user, item, ts in parsed:
        typer.echo(f"user {user!s:<20} item {item!s:<20} time {ts} ({_utc(ts)})")
    if report.malformed:
        typer.echo(f"malformed  {report.malformed} of the first {report.lines} lines: {report.examples}")


def _utc(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        return "out of range"


def _resolve_input(path: Path) -> Path:
    """A path as given, or else relative to the data dir (so `ml-1m/ratings.dat` works after fetch)."""
    if path.exists():
        return path
    in_data_dir = CommonSettings().data_dir / path
    return in_data_dir if in_data_dir.exists() else path
