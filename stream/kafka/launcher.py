"""Run a real single-node Apache Kafka broker (KRaft, broker+controller) from its Maven Central jars.

Maven resolves the jars listed in ``pom.xml`` once (cached in ``~/.m2``); the resulting classpath is
cached in ``kafka-classpath-<pom hash>.txt`` next to the data dir, so later starts only launch Java.

Layout of a data dir::

    server.properties   rewritten on every start from the chosen ports
    kraft/              Kafka's log dir: topic data, the metadata log and meta.properties
    logs/server.log     the broker's log4j2 log; logs/stdout.log: JVM output (crashes before logging)
    kafka.pid           pid of the running broker
"""

from __future__ import annotations

import base64
import enum
import hashlib
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path

from difflsrec.files import LockBusy, pid_lock, write_atomic
from difflsrec.settings import CommonSettings
from stream.process import stop_with_this_process

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
NODE_ID = 1
POM = Path(__file__).with_name("pom.xml")
LOG4J2_CONFIG = Path(__file__).with_name("log4j2.properties")
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"
# Kafka's scripts default to a 1 GiB heap; a local single-node broker is fine with less.
# KAFKA_HEAP_OPTS / KAFKA_OPTS override and extend the JVM options, as with Kafka's own scripts.
DEFAULT_HEAP_OPTS = "-Xms128m -Xmx512m"
MAVEN_TIMEOUT_S = 1800  # a cold ~/.m2 downloads about 60 MB


class KafkaLauncherError(RuntimeError):
    """The local broker could not be resolved, formatted, started or stopped."""


class Stopped(enum.Enum):
    """What :meth:`LocalKafka.stop` did."""

    NOT_RUNNING = "not running"
    CLEANLY = "stopped cleanly"
    KILLED = "killed with SIGKILL after the SIGTERM timeout"


def default_data_dir() -> Path:
    return CommonSettings().home / "kafka"


def find_free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 (all sockets stay bound until every port is picked)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]


def find_free_port() -> int:
    return find_free_ports(1)[0]


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket() as sock:
        # Same flag as Java's server sockets, so a port in TIME_WAIT after a restart counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def process_exited(pid: int) -> bool:
    """Whether ``pid`` is gone, or a zombie with no thread left (dead, waiting for its parent to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return True
        try:  # no /proc (macOS): signal 0 tells whether the pid exists
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # it exists, owned by another user
        return False
    # Neither an empty cmdline nor a zombie main thread is enough: both show up while other threads
    # of the JVM are still exiting and holding its ports and files.
    if stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
        return False
    try:
        return os.listdir(f"/proc/{pid}/task") in ([], [str(pid)])
    except FileNotFoundError:
        return True


def java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = Path(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not Path(java).is_file():
        raise KafkaLauncherError(f"no java found ({'JAVA_HOME=' + java_home if java_home else 'not on PATH'}); Kafka 4.x needs Java 17+")
    return str(java)


def resolve_classpath(cache_dir: Path) -> str:
    """The broker's runtime classpath, from the cache file keyed by the pom's hash, else from Maven."""
    key = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    cache = cache_dir / f"kafka-classpath-{key}.txt"
    if cache.is_file():
        classpath = cache.read_text().strip()
        if all(Path(jar).is_file() for jar in classpath.split(os.pathsep)):
            return classpath
        log.info("cached classpath %s names jars that are gone; resolving again", cache)
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaLauncherError("Maven (`mvn`) is not on PATH; it is needed once to fetch the Kafka jars")
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(f"{cache.name}.{os.getpid()}.part")  # renamed when complete: readers never see half a file
    log.info("resolving the Kafka classpath with Maven (the first time downloads ~60 MB into ~/.m2)")
    started = time.monotonic()
    command = [mvn, "-q", "-B", "-f", str(POM), "dependency:build-classpath", f"-Dmdep.outputFile={partial}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as error:
        raise KafkaLauncherError(f"`{shlex.join(command)}` did not finish within {MAVEN_TIMEOUT_S}s") from error
    if result.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise KafkaLauncherError(f"`{shlex.join(command)}` failed (exit {result.returncode}):\n{_tail(result.stdout + result.stderr)}")
    os.replace(partial, cache)
    log.info("Kafka classpath resolved in %.1fs, cached in %s", time.monotonic() - started, cache)
    return cache.read_text().strip()


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes in URL-safe base64 without padding, like ``kafka-storage random-uuid``."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):  # Kafka avoids these too: they read as command-line options
            return cluster_id


def read_properties(path: Path) -> dict[str, str]:
    """The ``key=value`` lines of a Java properties file as written by this module and by Kafka."""
    if not path.is_file():
        return {}
    entries = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in entries}


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class LocalKafka:
    """One broker+controller node on 127.0.0.1, its state in ``data_dir``; usable as a context manager.

    ``start()`` runs the broker detached (it outlives this Python process) and returns once it answers
    metadata requests; ``stop()`` shuts it down in a controlled way. Another ``LocalKafka`` on the same
    data dir (e.g. a later ``difflsrec kafka stop``) finds the running broker through the pid file.
    """

    def __init__(self, data_dir: Path | str | None = None, port: int = 9092, controller_port: int = 9093, *, num_partitions: int = 1, owned: bool = False):
        if port == controller_port:
            raise ValueError(f"port and controller_port must differ (both {port})")
        # Resolved, because the path is matched against the broker's command line to recognise it: through a
        # symlink or `..` an absolute() path did not match, and stop() removed a live broker's pid file.
        self.data_dir = Path(data_dir or default_data_dir()).expanduser().resolve()
        self.port = port
        self.controller_port = controller_port
        self.num_partitions = num_partitions
        self.owned = owned  # start()'s default: see there
        self._process: subprocess.Popen | None = None
        self._started_here = False

    @classmethod
    def from_data_dir(cls, data_dir: Path | str | None = None) -> LocalKafka:
        """The broker last configured in ``data_dir``, with its ports (the defaults if it never ran)."""
        broker = cls(data_dir)
        properties = read_properties(broker.properties_file)
        if properties:
            try:
                broker.port = int(properties["advertised.listeners"].rsplit(":", 1)[1])
                broker.controller_port = int(properties["controller.quorum.voters"].rsplit(":", 1)[1])
                broker.num_partitions = int(properties["num.partitions"])
            except (KeyError, IndexError, ValueError) as error:  # a damaged file must not keep a broker from being stopped
                log.warning("%s is incomplete (%s): assuming the default ports; stop and status go by the pid file", broker.properties_file, error)
        return broker

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "kraft"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    def cluster_id(self) -> str | None:
        """Set once, when the storage is formatted on the first start."""
        return read_properties(self.log_dir / "meta.properties").get("cluster.id")

    # ---- process state -------------------------------------------------------------------------

    def pid(self) -> int | None:
        """Pid of the running broker of this data dir; None if none runs (even if a stale pid file exists)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if self._process is not None and self._process.pid == pid:
            return pid if self._process.poll() is None else None  # poll() also reaps our own child
        return pid if self._is_our_broker(pid) else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def has_stale_pid_file(self) -> bool:
        return self.pid_file.exists() and not self.is_running()

    def _is_our_broker(self, pid: int) -> bool:
        """Whether ``pid`` is a live broker started on this data dir (pids get reused after a crash or reboot)."""
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            # No such pid, or no /proc at all (macOS), where the best check is whether the pid is alive.
            return not Path("/proc/self").exists() and not process_exited(pid)
        except OSError:
            return False
        return BROKER_MAIN.encode() in args and str(self.properties_file).encode() in args

    def _remove_stale_pid_file(self) -> None:
        if self.has_stale_pid_file():
            log.warning("removing stale pid file %s (pid %s is not a running broker)", self.pid_file, self.pid_file.read_text().strip())
            self.pid_file.unlink()

    # ---- start ---------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0, owned: bool | None = None) -> bool:
        """Start the broker detached and wait until it answers; False if it was already running.

        ``owned`` (default: the constructor's): the broker belongs to this process (tests, demo, benchmarks)
        and gets SIGTERM (a controlled shutdown) when the process dies, even by SIGKILL, instead of living on
        as an orphan (:func:`stream.process.stop_with_this_process`)."""
        owned = self.owned if owned is None else owned
        with self._starting(timeout):
            if self._already_running():
                return False
            command = self._prepare(console=False)
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            with open(self.logs_dir / "stdout.log", "ab") as stdout:
                # A new session: the broker survives the CLI that started it and ignores its terminal's Ctrl-C.
                self._process = subprocess.Popen(
                    command, cwd=self.data_dir, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=stop_with_this_process() if owned else None,
                )
            self.pid_file.write_text(f"{self._process.pid}\n")
            try:
                self._wait_until_ready(timeout)
            except KeyboardInterrupt:  # Ctrl-C while it starts: stop it rather than leave a broker nobody asked to keep
                log.warning("interrupted while the broker (pid %d) was starting: stopping it", self._process.pid)
                self.stop()
                raise
        log.info("Kafka broker (pid %d) answers on %s after %.1fs", self._process.pid, self.bootstrap_servers, time.monotonic() - started)
        return True

    def run_foreground(self, timeout: float = 60.0) -> int:
        """Run the broker attached, its log echoed on stdout, until it exits (Ctrl-C or SIGTERM); its exit code."""
        with self._starting(timeout):  # held until the process and its pid file exist: a start after it sees them
            if self._already_running():
                raise KafkaLauncherError(f"a broker already runs from {self.data_dir} (pid {self.pid()}); stop it first")
            command = self._prepare(console=True)
            self._process = subprocess.Popen(command, cwd=self.data_dir, stdin=subprocess.DEVNULL)
            self.pid_file.write_text(f"{self._process.pid}\n")
        # Ctrl-C reaches the JVM directly (same process group); a SIGTERM to us is passed on.
        previous = signal.signal(signal.SIGTERM, lambda *_: self._process.terminate())
        try:
            self._wait_until_ready(timeout)
            log.info("Kafka broker answers on %s; Ctrl-C stops it", self.bootstrap_servers)
            while True:
                try:
                    return self._process.wait()
                except KeyboardInterrupt:
                    continue  # the JVM got the same SIGINT and is shutting down; wait for it
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.pid_file.unlink(missing_ok=True)

    @contextmanager
    def _starting(self, timeout: float):
        """One start of this data directory at a time (a lock on ``.start.lock``). Two concurrent first starts
        both formatted the storage, and one broker then refused the other's cluster id; now the second waits,
        then finds the first's broker running."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            try:
                stack.enter_context(pid_lock(self.data_dir / ".start.lock", wait=timeout))
            except LockBusy as busy:
                raise KafkaLauncherError(f"another start of the broker in {self.data_dir} ({busy.owner or 'a process'}) has not finished within {timeout:g}s") from None
            yield

    def _already_running(self) -> bool:
        pid = self.pid()
        if pid is None:
            self._remove_stale_pid_file()
            return False
        running = LocalKafka.from_data_dir(self.data_dir)
        if (running.port, running.controller_port) != (self.port, self.controller_port):
            raise KafkaLauncherError(
                f"a broker from {self.data_dir} already runs on {running.bootstrap_servers} "
                f"(controller port {running.controller_port}, pid {pid}); stop it first to change ports"
            )
        log.info("Kafka broker already running from %s (pid %d) on %s", self.data_dir, pid, self.bootstrap_servers)
        return True

    def _prepare(self, console: bool) -> list[str]:
        """Classpath, config and (first time only) storage format; the broker's command line."""
        for name, port in (("port", self.port), ("controller port", self.controller_port)):
            if not port_is_free(port):
                # Otherwise the readiness check could be answered by whatever else listens there.
                raise KafkaLauncherError(f"{name} {port} on {HOST} is already in use")
        classpath = resolve_classpath(self.data_dir.parent)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.properties_file, self._server_properties())  # whole or not at all: status and stop read it
        if self.cluster_id() is None:
            self._format_storage(classpath)
        return self._java_command(classpath, BROKER_MAIN, str(self.properties_file), console=console)

    def _server_properties(self) -> str:
        properties = {
            "process.roles": "broker,controller",
            "node.id": NODE_ID,
            # A static voter set (not `format --standalone`'s dynamic quorum, which records the
            # controller's address in the metadata log): the controller port may change between starts.
            "controller.quorum.voters": f"{NODE_ID}@{HOST}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": self.log_dir,
            "num.partitions": self.num_partitions,
            "auto.create.topics.enable": "true",
            # One node: every internal topic gets one replica, and one in-sync replica is enough.
            "default.replication.factor": 1,
            "min.insync.replicas": 1,
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            # Kafka's 50 partitions per internal topic cost seconds on first use and after every
            # restart (each is loaded before its groups answer); a few are plenty for one node.
            "offsets.topic.num.partitions": 4,
            "transaction.state.log.num.partitions": 4,
            "share.coordinator.state.topic.num.partitions": 4,
            # No other member will join late: start consumer groups at once instead of after 3 s.
            "group.initial.rebalance.delay.ms": 0,
        }
        header = "# Written by stream/kafka/launcher.py on every start; edit the launcher, not this file.\n"
        return header + "".join(f"{key}={value}\n" for key, value in properties.items())

    def _format_storage(self, classpath: str) -> None:
        arguments = ("format", "--config", str(self.properties_file), "--cluster-id", new_cluster_id())
        command = self._java_command(classpath, STORAGE_TOOL_MAIN, *arguments)
        result = subprocess.run(command, cwd=self.data_dir, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            output = _tail(result.stdout + result.stderr)
            raise KafkaLauncherError(f"formatting {self.log_dir} failed (exit {result.returncode}):\n{output}")
        log.info("formatted %s (cluster id %s)", self.log_dir, self.cluster_id())

    def _java_command(self, classpath: str, main_class: str, *args: str, console: bool = False) -> list[str]:
        jvm_options = shlex.split(os.environ.get("KAFKA_HEAP_OPTS", DEFAULT_HEAP_OPTS)) + shlex.split(os.environ.get("KAFKA_OPTS", ""))
        return [
            java_executable(),
            *jvm_options,
            "-Djava.awt.headless=true",
            # Kafka logs from its own shutdown hook; log4j's hook, racing it, would stop logging
            # first and send the last shutdown lines to a stderr fallback logger.
            "-Dlog4j2.shutdownHookEnabled=false",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            f"-Ddifflsrec.kafka.console={'INFO' if console else 'OFF'}",
            "-cp",
            classpath,
            main_class,
            *args,
        ]

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.answers():
            failure = None
            if self._process.poll() is not None:
                failure = f"the Kafka broker exited with code {self._process.returncode} while starting"
            elif time.monotonic() > deadline:
                failure = f"the Kafka broker did not answer on {self.bootstrap_servers} within {timeout:.0f}s"
                self._process.kill()
                self._process.wait()
            if failure:
                self.pid_file.unlink(missing_ok=True)
                raise KafkaLauncherError(f"{failure}; the end of its logs in {self.logs_dir}:\n{self.log_tail()}")
            time.sleep(0.2)

    def answers(self) -> bool:
        """Whether this data dir's broker answers a metadata request on its port (a real Kafka round trip)."""
        try:
            socket.create_connection((HOST, self.port), timeout=1).close()
        except OSError:
            return False  # not listening yet: skip the client, which would log connection errors
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            with KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers,
                client_id="difflsrec-kafka-probe",
                bootstrap_timeout_ms=3000,
                request_timeout_ms=3000,
            ) as admin:
                cluster = admin.describe_cluster()
        except (KafkaError, OSError):
            return False
        # The cluster id proves it is this data dir's broker and not another one on the same port.
        return cluster.get("cluster_id") == self.cluster_id() and bool(cluster.get("brokers"))

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.logs_dir / "stdout.log", self.logs_dir / "server.log"):
            if path.is_file() and path.stat().st_size:
                parts.append(f"--- {path.name}\n{_tail(path.read_text(errors='replace'), lines)}")
        return "\n".join(parts) or "(no log output)"

    # ---- stop ----------------------------------------------------------------------------------

    def stop(self, timeout: float = 30.0) -> Stopped:
        """SIGTERM (Kafka's controlled shutdown) and wait; SIGKILL only if it is still alive after ``timeout``."""
        pid = self.pid()
        if pid is None:
            self._remove_stale_pid_file()
            return Stopped.NOT_RUNNING
        started = time.monotonic()
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass  # it exited on its own since pid() looked
        outcome = Stopped.CLEANLY
        if not self._wait_for_exit(pid, timeout):
            log.warning("Kafka broker (pid %d) still running %.0fs after SIGTERM; sending SIGKILL", pid, timeout)
            os.kill(pid, signal.SIGKILL)
            self._wait_for_exit(pid, 10)
            outcome = Stopped.KILLED
        self.pid_file.unlink(missing_ok=True)
        self._process = None
        log.info("Kafka broker (pid %d) %s in %.1fs", pid, outcome.value, time.monotonic() - started)
        return outcome

    def _wait_for_exit(self, pid: int, timeout: float) -> bool:
        if self._process is not None and self._process.pid == pid:
            try:
                self._process.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while not process_exited(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def __enter__(self) -> LocalKafka:
        self._started_here = self.start(owned=True)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._started_here:  # a broker that was already running is left running
            self.stop()

    def __repr__(self) -> str:
        return f"LocalKafka({str(self.data_dir)!r}, port={self.port}, controller_port={self.controller_port})"
