"""``difflsrec kafka start|stop|status``: a local single-node Apache Kafka broker.

``start`` prints only the bootstrap address on stdout (messages go to stderr), so scripts can do
``export KAFKA_BOOTSTRAP_SERVERS=$(difflsrec kafka start)``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from stream.kafka.launcher import KafkaLauncherError, LocalKafka

app = typer.Typer(
    help="Run a real single-node Apache Kafka broker (KRaft) on 127.0.0.1, from its Maven Central jars.",
    no_args_is_help=True,
)

DataDir = Annotated[
    Optional[Path], typer.Option("--data-dir", help="broker state, logs and pid file (default: $DIFFLSREC_HOME/kafka)")
]


@app.callback()
def _quiet_client_logs() -> None:
    # The readiness probe uses kafka-python, whose INFO lines (a dozen per connection) would bury ours.
    logging.getLogger("kafka").setLevel(logging.WARNING)


def _fail(error: Exception) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(1)


@app.command()
def start(
    data_dir: DataDir = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="PLAINTEXT listener for clients")] = 9092,
    controller_port: Annotated[Optional[int], typer.Option(min=1, max=65535, help="KRaft controller listener (default: the one this data dir last used with the same --port, else --port + 1)")] = None,
    partitions: Annotated[int, typer.Option(help="partitions of auto-created topics")] = 1,
    foreground: Annotated[bool, typer.Option(help="stay attached and echo the broker log; Ctrl-C stops it")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the broker to answer")] = 60.0,
) -> None:
    """Start the broker (formatting its storage on first use) and wait until it answers."""
    if controller_port is None:
        controller_port = _default_controller_port(data_dir, port)
    broker = LocalKafka(data_dir, port, controller_port, num_partitions=partitions)
    try:
        if foreground:
            raise typer.Exit(broker.run_foreground(timeout))
        started = broker.start(timeout)
    except KafkaLauncherError as error:
        raise _fail(error) from error
    state = "started" if started else "already running"
    typer.echo(f"Kafka {state} (pid {broker.pid()}, data dir {broker.data_dir})", err=True)
    typer.echo(broker.bootstrap_servers)


def _default_controller_port(data_dir, port: int) -> int:
    """The controller port this data dir was configured with for the same client port (a restart keeps
    both), else the one after the client port. A fixed 9093 made a second broker with another --port fail
    on a port the user never chose."""
    configured = LocalKafka.from_data_dir(data_dir)
    if configured.properties_file.exists() and configured.port == port:
        return configured.controller_port
    return port + 1 if port < 65535 else port - 1


@app.command()
def stop(
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait after SIGTERM before SIGKILL")] = 30.0,
) -> None:
    """Shut the broker down cleanly (SIGTERM; SIGKILL only after --timeout)."""
    broker = LocalKafka.from_data_dir(data_dir)
    try:
        outcome = broker.stop(timeout)
    except (KafkaLauncherError, OSError) as error:
        raise _fail(error) from error
    typer.echo(f"Kafka {outcome.value} ({broker.data_dir})")


@app.command()
def status(data_dir: DataDir = None) -> None:
    """Report whether the broker runs and answers; exit code 1 when it does not run."""
    broker = LocalKafka.from_data_dir(data_dir)
    pid = broker.pid()
    if pid is None:
        stale = " (stale pid file)" if broker.has_stale_pid_file() else ""
        typer.echo(f"Kafka not running{stale} ({broker.data_dir})")
        raise typer.Exit(1)
    answering = "answering" if broker.answers() else "NOT answering"
    typer.echo(f"Kafka running (pid {pid}), {answering} on {broker.bootstrap_servers} ({broker.data_dir})")
