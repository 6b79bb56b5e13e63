"""The ``difflsrec`` command: one entry point, a sub-command per step of the data flow."""

from __future__ import annotations

import logging
import os
import sys
import traceback

import typer

app = typer.Typer(
    name="difflsrec",
    help="DiffLSRec: train and evaluate the diffusion long/short-term recommender offline, and serve it "
    "in real time from Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _mount() -> None:
    from bootstrap.cli import app as bootstrap_app
    from bootstrap.registry_cli import app as registry_app
    from model.cli import app as model_app
    from model.data.cli import app as data_app
    from stream.cli import mount as mount_stream
    from stream.kafka.cli import app as kafka_app

    app.add_typer(data_app, name="data", help="Fetch and prepare interaction datasets.")
    app.registered_commands.extend(model_app.registered_commands)  # train, evaluate, benchmark, reproduce, models
    app.add_typer(kafka_app, name="kafka", help="Run the local Apache Kafka broker (KRaft, single node, 127.0.0.1).")
    mount_stream(app)  # worker, bench stream
    app.registered_commands.extend(bootstrap_app.registered_commands)  # bootstrap, replay, demo
    app.add_typer(registry_app, name="registry", help="List a model registry's versions; make one live (roll back).")


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging"),
    threads: int = typer.Option(None, "--threads", help="torch CPU threads (default: $DIFFLSREC_THREADS or torch's choice)"),
) -> None:
    from difflsrec.settings import CommonSettings, apply_threads

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:  # the Kafka clients log every connection at INFO, faiss each CPU variant it tries to load
        for noisy in ("kafka", "aiokafka", "faiss"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    if threads:  # the flag wins over DIFFLSREC_THREADS everywhere, the settings the worker reads included
        os.environ["DIFFLSREC_THREADS"] = str(threads)
    apply_threads(threads or CommonSettings().threads)


#: (module, class) of the errors a user's input or environment causes beside OSError and ValueError
_USER_ERRORS = (
    ("kafka.errors", "KafkaError"), ("aiokafka.errors", "KafkaError"), ("bootstrap.registry", "RegistryError"),
    ("index.storage", "IndexIntegrityError"), ("model.artifact", "ArtifactError"), ("model.checkpoint", "CheckpointError"),
    ("stream.kafka.launcher", "KafkaLauncherError"),
)


def _user_errors() -> tuple[type[BaseException], ...]:
    """The errors a user's input or environment causes (a missing file, a bad value, no broker): shown as one
    line, not as a traceback. Any other exception is a bug and keeps its traceback. Only the classes of modules
    already imported: no other can have been raised, and importing them (torch, with model.artifact) cost every
    command ~2 s at exit, when this tuple is built for click's SystemExit."""
    loaded = [getattr(sys.modules[module], name) for module, name in _USER_ERRORS if module in sys.modules]
    return (OSError, ValueError, *loaded)


def _hint(error: BaseException) -> str:
    # by name: kafka-python and aiokafka each define these classes
    if type(error).__name__ in ("KafkaConnectionError", "KafkaTimeoutError", "NoBrokersAvailable"):
        return "no Kafka broker answers: start one with `difflsrec kafka start`, or point KAFKA_BOOTSTRAP_SERVERS at yours"
    if type(error).__name__ == "CheckpointError" and type(error).__module__ == "model.checkpoint":
        return "`difflsrec train --no-resume` starts that run over; for `benchmark` and `reproduce` use a new --out"
    return ""


def _message(error: BaseException) -> str:
    """The text of ``error`` for its one line. A pydantic ValidationError printed itself on four lines per
    field, with a link, and a bad setting did not say where it came from: each field here is one clause
    with the value given and, for a settings class, the environment variable that sets it."""
    if type(error).__name__ != "ValidationError" or not hasattr(error, "errors"):
        return str(error)
    from difflsrec.settings import env_name

    clauses = []
    for e in error.errors(include_url=False):
        field = ".".join(str(p) for p in e["loc"])
        given = f"={e['input']!r}" if "input" in e and e["type"] != "missing" else ""
        # every settings class extends CommonSettings (env prefix DIFFLSREC_); an alias (KAFKA_...) is named as is
        source = "" if not error.title.endswith("Settings") else f" (environment {field if field.isupper() else env_name(field)} or its option)"
        clauses.append(f"{field}{given}{source}: {e['msg']}")
    return f"invalid {error.title}: " + "; ".join(clauses)


def main() -> None:
    _mount()
    try:
        app()
    except _user_errors() as error:
        if logging.getLogger().isEnabledFor(logging.DEBUG):  # --verbose: the whole traceback
            raise
        frame = traceback.extract_tb(error.__traceback__)[-1]
        typer.echo(f"error: {_message(error)}", err=True)
        if hint := _hint(error):
            typer.echo(f"hint: {hint}", err=True)
        typer.echo(f"({type(error).__name__} at {frame.filename}:{frame.lineno}; --verbose shows the traceback)", err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
