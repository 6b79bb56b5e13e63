"""One retraining run: history -> prepared data -> DiffLSRec training (optionally warm-started from the
live model) -> publication gate -> FAISS index -> atomic publication -> announcement on ``model-updates``.

Any failure before the final rename leaves the live version and the registry exactly as they were. A job
killed while training goes on from its last finished epoch when it runs again on the same history
(``<registry>/.training/``, :func:`training_checkpoint`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bootstrap.gate import GateRule, decide, live_validation_scores
from bootstrap.history import HistoryTable, read_files, read_topic
from bootstrap.registry import TRAINING_DIR, Registry
from index import ItemIndex
from model.artifact import Artifact, load_artifact, new_version, save_artifact
from model.batching import FeatureView
from model.benchmark import fit_features
from model.data.dataset import PreparedDataset, Split
from model.data.formats import ReadOptions
from model.data.prepare import PrepareOptions, prepare
from model.evaluation import evaluate
from model.histories import UserHistories
from model.registry import build
from model.training import TrainConfig, seed_everything, train_discarding_foreign

log = logging.getLogger(__name__)


@dataclass
class BootstrapOptions:
    inputs: list[Path] = field(default_factory=list)  # history files, any loader format
    read: ReadOptions = field(default_factory=ReadOptions)  # how the history files are read (format, item key, columns)
    from_topic: bool = False  # also read the interactions topic from the beginning
    topic_window: float | None = None  # only topic events newer than this many seconds
    train_until: float | None = None  # keep history before this time: a quantile in (0, 1) or epoch seconds
    kcore: int = 5
    model: str = "difflsrec"
    overrides: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    warm_start: bool = True  # start from the live model's weights (vocabulary grown by new items)
    gate: GateRule = field(default_factory=GateRule)  # when a model is refused for being worse than the live one (bootstrap/gate.py)
    index_kind: str = "flat"
    announce: bool = True
    keep_versions: int | None = 10  # after publishing, remove all but this many newest versions (None: keep all)


@dataclass
class BootstrapReport:
    published: bool
    version: str | None
    reason: str
    metrics: dict
    seconds: float
    path: str | None = None

    def line(self) -> str:
        m = self.metrics
        verdict = f"published {self.version}" if self.published else f"not published ({self.reason})"
        live = f"live {m['live_NDCG@10']:.4f}" if "live_NDCG@10" in m else "no live version to compare with"
        return (
            f"bootstrap: {m.get('n_users', 0)} users, {m.get('n_items', 0)} items, {m.get('n_interactions', 0)} interactions; "
            f"valid NDCG@10 {m.get('valid_NDCG@10', float('nan')):.4f} ({live}); {verdict} in {self.seconds:.1f}s"
            + (f"; announcement failed ({m['announce_error']}): workers find the version by polling LATEST" if "announce_error" in m else "")
        )


def serving_split(data: PreparedDataset) -> PreparedDataset:
    """Train on everything but each user's newest interaction, which validates (early stopping and the
    gate). No test split: a retrained model is judged on validation only; offline benchmarks own test."""
    L = data.sequences.lengths()
    users = np.flatnonzero(L >= 2)
    split = Split("serve", np.where(L >= 2, L - 1, L).astype(np.int64), np.stack([users, L[users] - 1], 1).astype(np.int64), np.zeros((0, 2), np.int64))
    return PreparedDataset(data.sequences, split, data.meta)


def load_history(opts: BootstrapOptions, bootstrap_servers: str | None, interactions_topic: str) -> HistoryTable:
    history = read_files(opts.inputs, opts.read) if opts.inputs else HistoryTable([], [], [])
    if opts.from_topic:
        history.extend(read_topic(bootstrap_servers, interactions_topic, opts.topic_window))
    if opts.train_until is not None:
        cut = history.time_quantile(opts.train_until) if 0 < opts.train_until < 1 else int(opts.train_until)
        history = history.filter_time(end=cut)
        log.info("history before %d: %d interactions", cut, len(history))
    if len(history) == 0:
        raise ValueError("no history to train on (no input files, empty topic, or nothing before train_until)")
    return history


def prepare_history(history: HistoryTable, kcore: int, cache_dir: Path | None) -> PreparedDataset:
    with tempfile.TemporaryDirectory(prefix="difflsrec-bootstrap-") as tmp:
        path = Path(tmp) / "history.csv"
        unit = history.write_csv(path)
        data = prepare(path, PrepareOptions(read=ReadOptions(format="csv", time_unit=unit), kcore=kcore), cache_dir=cache_dir)
    return serving_split(data)


def warm_start(model, live: Artifact, item_ids) -> int:
    """Copy every live parameter of the same shape; item rows are matched by raw item id. Returns the
    number of item rows carried over."""
    new_state, old_state = model.state_dict(), live.model.state_dict()
    for key, value in old_state.items():
        if key in new_state and new_state[key].shape == value.shape and key != "item_emb.weight":
            new_state[key] = value.clone()
    carried = 0
    if "item_emb.weight" in new_state and "item_emb.weight" in old_state:
        if new_state["item_emb.weight"].shape[1] != old_state["item_emb.weight"].shape[1]:
            log.warning("warm start: the live model's item embeddings have %d dimensions, this model %d: item rows not carried over",
                        old_state["item_emb.weight"].shape[1], new_state["item_emb.weight"].shape[1])
            model.load_state_dict(new_state)
            return 0
        old_index = {item: i for i, item in enumerate(live.item_ids) if i > 0}
        for i, item in enumerate(item_ids):
            j = old_index.get(str(item))
            if i > 0 and j is not None:
                new_state["item_emb.weight"][i] = old_state["item_emb.weight"][j]
                carried += 1
    model.load_state_dict(new_state)
    return carried


def training_checkpoint(registry: Registry, data_hash: str, live_version: str | None) -> Path:
    """Where this retraining keeps its state after every epoch (model/checkpoint.py): a job killed while
    training (a restart, a node drain) goes on from its last finished epoch when it runs again on the same
    history from the same live version, instead of starting over. The checkpoints of any other retraining
    are obsolete (their history or starting point is gone) and removed."""
    folder = registry.root / TRAINING_DIR
    path = folder / f"{data_hash[:24]}-{live_version or 'cold'}.pt"
    if folder.is_dir():
        for old in folder.iterdir():
            if old != path and old.is_file():
                log.info("removing an obsolete training checkpoint %s", old)
                old.unlink(missing_ok=True)
    return path


def build_index(model, item_ids, kind: str) -> ItemIndex:
    with torch.no_grad():
        table = model.item_embeddings().detach().cpu().float().numpy()
    return ItemIndex.build(table, [str(x) for x in item_ids], kind=kind)


def run_once(opts: BootstrapOptions, registry: Registry, bootstrap_servers: str | None = None, interactions_topic: str = "interactions", updates_topic: str = "model-updates", cache_dir: Path | None = None) -> BootstrapReport:
    started = time.perf_counter()
    if not opts.model.startswith("difflsrec"):
        raise ValueError(f"the worker serves DiffLSRec models; {opts.model!r} has no streaming state update")
    data = prepare_history(load_history(opts, bootstrap_servers, interactions_topic), opts.kcore, cache_dir)
    seq = data.sequences
    metrics = {"n_users": seq.n_users, "n_items": seq.n_items, "n_interactions": seq.n_interactions, "data_hash": data.hash}
    stats = fit_features(data)
    seed_everything(opts.train.seed)
    model = build(opts.model, seq.n_items, stats, opts.overrides)
    live_path = registry.latest_path()
    live = _load_live(live_path, metrics)
    if live is not None and opts.warm_start and live.model.name == model.name:
        metrics["warm_started_items"] = warm_start(model, live, seq.item_ids)
    checkpoint = training_checkpoint(registry, data.hash, live.version if live is not None else None)
    features = FeatureView.build(data, stats)
    result = train_discarding_foreign(model, data, stats, opts.train, features, checkpoint)  # this retraining under other options: not ours
    model.cpu().eval()
    metrics.update({f"valid_{k}": v for k, v in result.best_valid.items()}, best_epoch=result.best_epoch, epochs=result.epochs_run)

    def write(staging: Path) -> None:
        save_artifact(staging, model, stats, seq.item_ids, data_hash=data.hash, split=data.split.name, metrics={k: v for k, v in metrics.items() if k != "data_hash"}, version=version, extra={"data_options": data.meta.get("options"), "data_content": data.content_hash},
                      histories=UserHistories.from_sequences(seq))  # the worker starts known users from these
        build_index(model, seq.item_ids, opts.index_kind).save(staging / "index")

    def validation_scores() -> np.ndarray:  # the candidate's per-user scores the gate compares
        return evaluate(model, data, features, data.split.valid).per_example["NDCG@10"] if len(data.split.valid) else np.zeros(0)

    # outside the registry's lock when a live version exists now (they need none); the first run needs none
    candidate_scores = validation_scores() if live is not None else None
    with registry.lock():  # the gate's live version is the one this publication replaces, whoever published it meanwhile
        now_live = registry.latest_path()
        if now_live != live_path:
            log.info("the live version changed while training (%s -> %s): gating against the new one", live_path and live_path.name, now_live and now_live.name)
            live = _load_live(now_live, metrics)
        if live is not None:
            metrics["live_version"] = live.version
            if candidate_scores is None:  # a first version was published while this one trained
                candidate_scores = validation_scores()
            decision = decide(candidate_scores, live_validation_scores(live, data), opts.gate)
            metrics.update({"live_NDCG@10": decision.live, **decision.as_metrics()})
            log.info("gate against %s: %s", live.version, decision.reason())
            if not decision.publish:
                reason = f"{decision.reason()} (live version {live.version})"
                log.warning("refusing to publish: %s", reason)
                checkpoint.unlink(missing_ok=True)
                return BootstrapReport(False, None, reason, metrics, time.perf_counter() - started)
        # named here, under the lock: after every version published before it (prune keeps the newest names)
        version = new_version(after=max(registry.versions(), default=None))
        path = registry.publish(version, write)
        if opts.keep_versions is not None:
            if removed := registry.prune(opts.keep_versions):
                log.info("removed %d old version(s), keeping the %d newest: %s", len(removed), opts.keep_versions, ", ".join(removed))
        # announced under the lock, so announcements reach the workers in the order the versions went live: sent
        # after it, a slow announcement of this version could arrive after a later publisher's, and the workers
        # would swap back to it and stay there (their LATEST poll acts on a change of LATEST only)
        if opts.announce and bootstrap_servers:
            try:
                # absolute: a worker in another working directory (or container with the same mount) must find it
                announce(bootstrap_servers, updates_topic, version, path.resolve(), metrics)
            except Exception as error:  # published and live: workers also poll LATEST, so this only delays the swap
                log.warning("published %s, but its announcement on %s failed: %s (workers find it by polling LATEST)", version, updates_topic, error)
                metrics["announce_error"] = f"{type(error).__name__}: {error}"
    checkpoint.unlink(missing_ok=True)  # published: a rerun retrains on whatever history it then finds
    return BootstrapReport(True, version, "ok", metrics, time.perf_counter() - started, str(path))


def _load_live(path: Path | None, metrics: dict):
    """The live artifact, or None when there is none or it cannot be loaded (a truncated weights file, a
    missing file): a broken live version must not block the retraining that replaces it (no warm start and
    no gate against it then; the reason is in ``metrics["live_unreadable"]``)."""
    if path is None:
        return None
    try:
        return load_artifact(path)
    except (OSError, ValueError, KeyError, RuntimeError) as error:  # ArtifactError is a ValueError or RuntimeError
        log.error("the live version %s cannot be loaded (%s): training without it, and publishing replaces it", path.name, error)
        metrics["live_unreadable"] = f"{path.name}: {error}"
        return None


def announce(bootstrap_servers: str, topic: str, version: str, path: Path, metrics: dict) -> None:
    """Tell workers a new version is live (they also watch LATEST, so a lost message only delays a swap)."""
    from kafka import KafkaProducer

    from stream.settings import kafka_python_config
    from stream.topics import ensure_updates_topic, require_reachable

    require_reachable(bootstrap_servers)  # ~3 s without a broker, not kafka-python's 30 s of retries
    ensure_updates_topic(bootstrap_servers, topic)
    producer = KafkaProducer(**kafka_python_config(bootstrap_servers=bootstrap_servers, acks="all"))
    try:
        payload = {"version": version, "path": str(path), "created": time.time(), "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}}
        producer.send(topic, key=version.encode(), value=json.dumps(payload).encode()).get(timeout=30)
    finally:
        producer.close()


def parse_duration(text: str) -> float:
    """'90s', '15m', '2h', '1d' or plain seconds -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise ValueError(f"invalid duration {text!r} (examples: 90s, 15m, 2h, 1d)") from None
    if not seconds > 0:  # also NaN; a period of 0 or less retrained back to back
        raise ValueError(f"a duration must be positive, got {text!r} (examples: 90s, 15m, 2h, 1d)")
    return seconds


def options_dict(opts: BootstrapOptions) -> dict:
    d = dataclasses.asdict(opts)
    d["inputs"] = [str(p) for p in opts.inputs]
    return d
