"""Hot swap: load a new model version off the event path and switch to it between two micro-batches.

Two triggers, both in every worker: a message on ``model-updates`` (read with a group-less consumer, so
every worker sees every announcement, not one worker per partition) and, when the worker serves from a
registry, a change of its ``LATEST`` pointer (checked every ``model_poll_interval`` seconds, so a lost
announcement only delays a swap). The new bundle (weights, FAISS index, compiled graphs) is built in a
thread of its own while batches keep being served with the old one; the switch is one reference
assignment, which the engine reads once at the start of each batch. User states computed by the old
version are re-encoded from their bounded history on their next event (``Engine``), never mixed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stream.engine import ModelBundle, resolve_artifact

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 600.0  # seconds: the longest wait before loading a LATEST version that failed again


class ModelSwapper:
    def __init__(self, worker, device):
        self.worker = worker
        self.settings = worker.settings
        self.device = device
        self.loader = ThreadPoolExecutor(1, thread_name_prefix="model-loader")
        self.lock = asyncio.Lock()
        self.swaps: list[dict] = []  # version, load seconds, swap time (for logs and tests)
        # a *change* of LATEST triggers a swap (not a mere difference from the served version: an announced
        # version that is not LATEST yet must not be swapped back by the next poll). It starts at the version
        # served, not at LATEST read again now: one published while the model loaded would otherwise count as
        # seen, and no poll would ever swap to it.
        self.last_latest = self._served_name()
        self.failed: dict[str, tuple[int, float]] = {}  # LATEST name -> (failed loads, monotonic time of the next try)

    @property
    def registry_root(self) -> Path | None:
        """The registry the worker serves from, if it serves one (not a fixed artifact directory)."""
        root = Path(self.settings.artifact or self.settings.registry_dir).expanduser()
        return None if (root / "manifest.json").is_file() else root

    def _served_name(self) -> str | None:
        """The registry's name of the version being served (its directory under ``versions/``)."""
        if self.registry_root is None:
            return None
        return Path(self.worker.engine.bundle.artifact.path).name

    async def consider(self, path: Path, announced_version: str | None = None, trigger: str = "announcement") -> str:
        """Swap to the artifact at ``path`` unless it is already served. Returns ``"swapped"``, ``"served"`` (it
        already was) or ``"failed"`` (it could not be loaded: the old version keeps serving)."""
        async with self.lock:  # one load at a time; a burst of announcements collapses into one swap
            current = self.worker.engine.bundle.version
            if announced_version is not None and announced_version == current:
                return "served"
            try:
                resolved = resolve_artifact(path)
                started = time.perf_counter()
                bundle = await asyncio.get_running_loop().run_in_executor(self.loader, self._load, resolved)
            except Exception:
                log.exception("could not load the model at %s; still serving %s", path, current)
                self.worker.metrics.swap_failures.inc()
                return "failed"
            if bundle.version == self.worker.engine.bundle.version:
                return "served"
            loaded = time.perf_counter() - started
            self.worker.engine.bundle = bundle  # the next batch is served by it; a running batch keeps the old one
            self.worker.metrics.set_model_version(bundle.version)
            self.worker.metrics.swaps.labels(trigger).inc()
            self.swaps.append({"from": current, "to": bundle.version, "trigger": trigger, "load_seconds": loaded, "at": time.time()})
            log.info("hot swap %s -> %s on %s (%d items; loaded off the event path in %.2fs)", current, bundle.version, trigger, len(bundle.index), loaded)
            return "swapped"

    def _load(self, path: Path) -> ModelBundle:
        return ModelBundle.load(path, self.device, self.settings.inference_steps, self.settings.index_kind)

    async def poll_registry(self) -> None:
        root = self.registry_root
        if root is None:
            return
        try:
            live = resolve_artifact(root)
        except Exception as error:  # a half-configured registry must not stop serving
            log.warning("registry %s: %s", root, error)
            return
        if live.name == self.last_latest:
            return
        failures, next_try = self.failed.get(live.name, (0, 0.0))
        if time.monotonic() < next_try:
            return
        if await self.consider(live, live.name, trigger="registry") == "failed":
            # tried again later (a transient error must not leave the worker on the old version until LATEST
            # moves again), less and less often: a broken version is not reloaded at every poll
            delay = min(MAX_RETRY_DELAY, self.settings.model_poll_interval * 2**failures)
            self.failed[live.name] = (failures + 1, time.monotonic() + delay)
            log.warning("LATEST %s could not be loaded (%d times); trying again in %.0fs", live.name, failures + 1, delay)
            return
        self.failed.pop(live.name, None)
        self.last_latest = live.name

    async def follow_announcements(self) -> None:
        """Read ``model-updates`` from its end, without a consumer group (every worker sees every message),
        for as long as the worker runs. A failure here is logged and retried: it must never stop serving."""
        while True:
            try:
                await self._follow_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("following %s failed; retrying in 5s (LATEST polling still swaps)", self.settings.model_updates_topic)
                await asyncio.sleep(5)

    async def _follow_once(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            self.settings.model_updates_topic, bootstrap_servers=self.settings.bootstrap_servers, group_id=None,
            enable_auto_commit=False, auto_offset_reset="latest",
        )
        await consumer.start()
        try:
            async for record in consumer:
                try:
                    update = json.loads(record.value)
                    path = Path(update["path"])
                except (ValueError, KeyError, TypeError) as error:
                    log.warning("ignoring a malformed model update at offset %d: %s", record.offset, error)
                    continue
                if self.follows(path):
                    await self.consider(path, update.get("version"))
        finally:
            await consumer.stop()

    def follows(self, path: Path) -> bool:
        """Whether an announced version is this worker's to serve: one published in the registry it serves. The
        topic is shared by every registry on the cluster (a test, a demo, another team's job): a worker of
        registry A took registry B's announced model and served it until A's LATEST changed. A worker serving
        one fixed artifact directory serves only that."""
        root = self.registry_root
        if root is None:
            log.info("ignoring the announced model %s: this worker serves the fixed artifact %s (serve a registry to follow new versions)", path, self.settings.artifact)
            self.worker.metrics.updates_ignored.inc()
            return False
        if not path.is_absolute() or not path.resolve().is_relative_to(root.resolve()):
            log.warning("ignoring the announced model %s: not in the registry this worker serves (%s)", path, root.resolve())
            self.worker.metrics.updates_ignored.inc()
            return False
        return True
