"""``difflsrec registry``: what a registry holds, and which version is live (a rollback is `set-live` of an
older version; workers serving the registry swap to it at their next poll of ``LATEST``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)

REGISTRY = typer.Option(None, help="registry directory (default: $DIFFLSREC_HOME/registry)")


def _registry(path: Path | None):
    from bootstrap.registry import Registry
    from difflsrec.settings import CommonSettings

    registry = Registry(path or CommonSettings().registry_dir)
    if not registry.root.is_dir():
        raise FileNotFoundError(f"no registry at {registry.root} (`difflsrec bootstrap` creates one when it first publishes)")
    return registry


@app.command("list")
def list_versions(registry: Path = REGISTRY, as_json: bool = typer.Option(False, "--json", help="one JSON object per version")) -> None:
    """Published versions, oldest first: the live one marked, with their model, data and validation NDCG@10."""
    from bootstrap.registry import RegistryError

    reg = _registry(registry)
    try:
        live = reg.latest()
    except RegistryError as error:  # LATEST names nothing: list what there is, so one can be made live
        typer.echo(f"warning: {error}", err=True)
        live = None
    versions = reg.versions()
    for version in versions:
        manifest = json.loads((reg.versions_dir / version / "manifest.json").read_text())
        metrics = manifest.get("metrics", {})
        row = {"version": version, "live": version == live, "model": manifest.get("model"), "created": manifest.get("created"),
               "n_items": manifest.get("n_items"), "valid_NDCG@10": metrics.get("valid_NDCG@10"), "n_interactions": metrics.get("n_interactions")}
        if as_json:
            typer.echo(json.dumps(row))
        else:
            ndcg = "–" if row["valid_NDCG@10"] is None else f"{row['valid_NDCG@10']:.4f}"
            typer.echo(f"{'*' if row['live'] else ' '} {version}  {row['model']}  {row['n_items']} items  valid NDCG@10 {ndcg}  created {row['created']}")
    if not versions:
        typer.echo(f"{reg.root}: no published version", err=True)


@app.command("set-live")
def set_live(version: str = typer.Argument(..., help="a published version (see `difflsrec registry list`)"), registry: Path = REGISTRY) -> None:
    """Make a published version live (e.g. roll back): it is loaded and its checksums verified first."""
    from bootstrap.registry import RegistryError
    from model.artifact import load_artifact

    reg = _registry(registry)
    with reg.lock():  # not between a bootstrap job's gate and its publication
        path = reg.path_of(version)
        load_artifact(path)  # a corrupt version must not become live: the worker would refuse to start on it
        previous = None
        try:
            previous = reg.latest()
        except RegistryError:  # LATEST named a missing version: this is the repair
            pass
        reg.set_latest(version)
    typer.echo(f"live: {version} (was {previous or 'none'}); workers serving {reg.root} swap to it at their next poll")


@app.command()
def prune(keep: int = typer.Option(..., min=1, help="how many of the newest versions to keep (the live one is always kept)"), registry: Path = REGISTRY) -> None:
    """Remove old versions: all but the --keep newest, never the live one."""
    reg = _registry(registry)
    with reg.lock():
        removed = reg.prune(keep)
    typer.echo(f"removed {len(removed)} version(s){': ' + ', '.join(removed) if removed else ''}; {len(reg.versions())} left in {reg.root}")
