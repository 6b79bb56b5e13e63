"""The training loop shared by every model: Adam, every-prefix batches, early stopping on validation
NDCG@10 with only the best-validation weights kept. The test split is never looked at here."""

from __future__ import annotations

import copy
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from difflsrec.progress import progress, say
from difflsrec.settings import DEFAULT_PATIENCE, parse_device, resolve_device
from model import checkpoint as checkpoints
from model.batching import FeatureView, TrainBatches
from model.checkpoint import TrainingProgress
from model.data.dataset import PreparedDataset
from model.evaluation import evaluate
from model.features import FeatureStats
from model.registry import Recommender

log = logging.getLogger(__name__)


def step_loss(model: Recommender, batch, scale: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """One optimiser step's objective: the model's data loss times ``scale`` (the per-target weighting of
    ``loss_scale``) plus its parameter penalty, unscaled: an L2 term is the same whatever batch it rides on."""
    loss, logs = model.loss(batch)
    loss = loss * scale
    penalty = model.penalty()
    if penalty is not None:
        loss = loss + penalty
        logs["penalty"] = float(penalty.detach())
    return loss, logs


@dataclass
class TrainConfig:
    epochs: int = 200
    lr: float | None = None  # None: the model's own default_lr (model/registry.py)
    weight_decay: float = 0.0
    batch_size: int = 128
    token_budget: int = 32_768  # max B * L of a training batch
    logit_budget: int = 60_000_000  # max positions * n_items scored by one batch (bounds CE memory)
    # "bucket": users of similar length batched together under the budgets above (less padding);
    # "random": batch_size random users per batch whatever their lengths, budgets not applied, as in the
    # reference SASRec implementations (memory: batch_size * max_len * n_items logits)
    batching: str = "bucket"
    # "target": a step's loss (the model's mean over its batch's targets) times the batch's targets over the
    # targets a random batch of batch_size users holds on average, so a target weighs the same in a bucket of
    # short histories as in one of long ones, as with random batches; "batch": the plain mean (the default
    # until 2026-11-27: ml-100k validation NDCG@10 over 3 seeds 0.1121 -> 0.1144 SASRec, 0.1144 -> 0.1163
    # GRU4Rec, 0.1124 -> 0.1165 DiffLSRec with "target")
    loss_scale: str = "target"
    patience: int = DEFAULT_PATIENCE  # epochs without a better validation NDCG@10 before stopping
    # no early stop before this epoch: a run whose validation score sits on its initial plateau (about
    # popularity's) for more than `patience` epochs is otherwise stopped before it starts to learn, which
    # 4 of 9 DiffLSRec runs with K <= 32 did on ml-100k (README, the K study)
    min_epochs: int = 0
    grad_clip: float = 5.0
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 256
    valid_metric: str = "NDCG@10"
    max_minutes: float | None = None  # wall-clock cap on training (stops after the epoch that crosses it)
    progress: bool = True

    def __post_init__(self):
        if self.batching not in ("bucket", "random"):
            raise ValueError(f"batching must be 'bucket' or 'random', got {self.batching!r}")
        if self.loss_scale not in ("batch", "target"):
            raise ValueError(f"loss_scale must be 'batch' or 'target', got {self.loss_scale!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        # below these bounds a run trains no epoch at all (epochs 0, patience 0 stop before the first one) and
        # its untrained model was written and scored as if it were the result, or training failed after the
        # data was prepared
        for name, value, low in (("epochs", self.epochs, 1), ("patience", self.patience, 1), ("min_epochs", self.min_epochs, 0), ("batch_size", self.batch_size, 1)):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value!r}")
        if self.lr is not None and not self.lr >= 0:
            raise ValueError(f"lr must be >= 0, got {self.lr!r}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes!r}")
        if self.device != "auto":
            parse_device(self.device)  # a typo fails here, not after the data is prepared

    def stops(self, state: TrainingProgress) -> bool:
        """Early stopping: ``patience`` epochs without a better validation score, not before ``min_epochs``."""
        return state.stale >= self.patience and state.epoch >= self.min_epochs

    def batches(self, data: PreparedDataset, features: FeatureView, model: Recommender) -> TrainBatches:
        """The training batches this configuration gives ``model`` (the trainer's and the benchmarks')."""
        budget = self.batch_token_budget(model.n_items)
        return TrainBatches(data, features, self.batch_size, model.max_len, budget, seed=self.seed, bucket=self.batching == "bucket")

    def batch_token_budget(self, n_items: int) -> int:
        """Max B * L of a training batch for a catalogue of ``n_items``: ``token_budget``, lowered so that one
        batch's catalogue logits stay under ``logit_budget``."""
        return max(256, min(self.token_budget, self.logit_budget // max(1, n_items)))


@dataclass
class TrainResult:
    best_epoch: int
    best_valid: dict[str, float]
    epochs_run: int
    train_seconds: float
    epoch_seconds: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    lr: float | None = None  # the learning rate used

    def to_dict(self) -> dict:
        return asdict(self)


def time_left(state: TrainingProgress, cfg: TrainConfig, elapsed: float) -> str:
    """How long this run may still take, as a range: early stopping ends it after ``patience - stale`` more
    epochs if none improves (each better epoch pushes that back), the epoch cap or ``max_minutes`` (``elapsed``
    seconds of it spent) at the latest. Epoch time: the median of the last five epochs."""
    capped = cfg.max_minutes is not None and elapsed > 60 * cfg.max_minutes
    if cfg.stops(state) or capped or state.epoch >= cfg.epochs:
        return "done"
    per_epoch = float(np.median(state.epoch_seconds[-5:]))
    latest = (cfg.epochs - state.epoch) * per_epoch
    if cfg.max_minutes is not None:
        latest = min(latest, 60 * cfg.max_minutes - elapsed + per_epoch)  # it stops after the epoch that crosses the cap
    earliest = min(latest, max(cfg.patience - state.stale, cfg.min_epochs - state.epoch) * per_epoch)
    if earliest >= latest:
        return f"left {_duration(latest)}"
    return f"left {_duration(earliest)} (no better epoch) to {_duration(latest)} (cap)"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}min"
    return f"{seconds / 3600:.1f}h"


def stop_epoch(history: list[dict], cfg: TrainConfig) -> int | None:
    """The epoch after which ``cfg`` would have stopped a run with this per-epoch ``history`` (None: it would
    not have stopped within it), by the trainer's own rules (the epoch cap and ``cfg.stops``)."""
    state = TrainingProgress()
    for row in history:
        score = row[f"valid_{cfg.valid_metric}"]
        state.best_score, state.stale = (score, 0) if score > state.best_score else (state.best_score, state.stale + 1)
        state.epoch = row["epoch"]
        if state.epoch >= cfg.epochs or cfg.stops(state):
            return state.epoch
    return None


def refuse_past_stop(state: TrainingProgress, cfg: TrainConfig, checkpoint: Path) -> None:
    """A checkpoint may be continued with a larger ``epochs`` or ``patience``, not with settings that would have
    stopped the run before the epochs it holds: its weights (and its best epoch) would then come from epochs
    these settings never allow, reported under them."""
    stop = stop_epoch(state.history, cfg)
    if stop is not None and stop < state.epoch:
        raise checkpoints.CheckpointError(
            f"{checkpoint} holds {state.epoch} epochs of this run, but --epochs {cfg.epochs} / --patience {cfg.patience} / --min-epochs "
            f"{cfg.min_epochs} stop it after epoch {stop}: keep the settings it was trained with (larger ones go on from it)"
        )


def recorded_result(model: Recommender, data: PreparedDataset, cfg: TrainConfig, checkpoint: Path, features: FeatureView) -> TrainResult | None:
    """What :func:`train` with ``cfg`` would return, read from the history of a checkpoint of the same run that
    went on past where ``cfg`` stops it; None when there is no such checkpoint (``train`` then continues it,
    starts afresh, or refuses a foreign one). A successive-halving search resumed after an interruption in a
    later rung asks again for each earlier rung's result: this answers without training and without touching
    the checkpoint (``train`` would refuse it as past its stop). ``model`` is left as it was given, and the
    seconds are the epochs' own (validation excluded)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        return None
    try:
        info = checkpoints.describe(checkpoint)
    except checkpoints.CheckpointError:
        return None
    lr = cfg.lr if cfg.lr is not None else model.default_lr
    # the run's fingerprint covers the configuration as training leaves it: fit_statistics sizes the per-user
    # tables (Fossil, HGN, MARank: n_users). On a copy, so that ``model`` stays as given (that fit draws
    # random numbers into the tables, and a model trained afterwards must start as a fresh one does)
    fitted = copy.deepcopy(model)
    fitted.fit_statistics(data, features)
    if info["fingerprint"] not in checkpoints.accepted_fingerprints(fitted, data.hash, cfg, lr):
        return None
    stop = stop_epoch(info["history"], cfg)
    if stop is None or stop >= info["epoch"]:
        return None
    rows = [row for row in info["history"] if row["epoch"] <= stop]
    best = None
    for row in rows:  # the trainer's rule: only a strictly better epoch replaces the best
        if best is None or row[f"valid_{cfg.valid_metric}"] > best[f"valid_{cfg.valid_metric}"]:
            best = row
    valid = {k.removeprefix("valid_"): v for k, v in best.items() if k.startswith("valid_")}
    seconds = [float(row.get("seconds", 0.0)) for row in rows]
    return TrainResult(best["epoch"], valid, len(rows), sum(seconds), seconds, rows, lr)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(
    model: Recommender, data: PreparedDataset, stats: FeatureStats, cfg: TrainConfig, features: FeatureView | None = None, checkpoint: Path | None = None
) -> TrainResult:
    """Train ``model`` in place; on return it holds its best-validation weights.

    With ``checkpoint`` (a file path) the state after every epoch is written there, and a run that finds one
    of its own there continues after its last finished epoch: an interrupted run ends with the weights an
    uninterrupted one would have (model/checkpoint.py). A finished run's checkpoint stays, so the same call
    with a larger ``patience`` or ``epochs`` trains on from where it stopped."""
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    features = features or FeatureView.build(data, stats)
    model.to(device)
    model.fit_statistics(data, features)
    validate = lambda: evaluate(model, data, features, data.split.valid, batch_size=cfg.eval_batch_size, device=device).mean()  # noqa: E731

    start = time.perf_counter()
    if not model.trainable:
        metrics = validate()
        return TrainResult(0, metrics, 0, time.perf_counter() - start, history=[{"epoch": 0, **metrics}])

    lr = cfg.lr if cfg.lr is not None else model.default_lr
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    batches = cfg.batches(data, features, model)
    per_user = model.loss_unit == "user"
    # the loss units a batch of batch_size random users holds on average: the scale's denominator
    units_per_random_batch = cfg.batch_size * (1.0 if per_user else batches.n_targets / max(1, len(batches.users)))
    state, fp = TrainingProgress(), ""
    if checkpoint is not None:
        fp = checkpoints.fingerprint(model, data.hash, cfg, lr)
        accepted = checkpoints.accepted_fingerprints(model, data.hash, cfg, lr)
        state = checkpoints.load(checkpoint, accepted, model, opt, batches.rng, accept=lambda found: refuse_past_stop(found, cfg, checkpoint)) or state
    before = state.seconds  # training time of earlier invocations of this run
    if state.epoch:
        log.info("%s: resuming after epoch %d from %s (best %d, %d epochs without improvement)", model.name, state.epoch, checkpoint, state.best_epoch, state.stale)
        if cfg.progress:
            say(f"{model.name}: resuming after epoch {state.epoch} (best epoch {state.best_epoch}) from {checkpoint}")

    while state.epoch < cfg.epochs and not cfg.stops(state):
        epoch = state.epoch + 1
        t0 = time.perf_counter()
        model.train()
        total, n_batches, sums = 0.0, 0, {}
        bar = progress(batches, detail=True, desc=f"{model.name} epoch {epoch}", leave=False, disable=not cfg.progress, unit="batch")
        for batch in bar:
            batch = batch.to(device)
            scale = 1.0
            if cfg.loss_scale == "target":
                units = batch.items.shape[0] if per_user else int((batch.targets > 0).sum())
                scale = units / units_per_random_batch
            loss, logs = step_loss(model, batch, scale)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{model.name}: non-finite loss at epoch {epoch}: {logs}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            total += loss.item()
            n_batches += 1
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{total / n_batches:.4f}")
        state.epoch_seconds.append(time.perf_counter() - t0)
        valid = validate()
        row = {"epoch": epoch, "loss": total / max(1, n_batches), **{k: v / max(1, n_batches) for k, v in sums.items()}, **{f"valid_{k}": v for k, v in valid.items()}, "seconds": state.epoch_seconds[-1]}
        state.history.append(row)
        state.epoch = epoch
        improved = valid[cfg.valid_metric] > state.best_score
        if improved:
            state.best_score, state.best_epoch, state.best_valid, state.stale = valid[cfg.valid_metric], epoch, valid, 0
            state.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            state.stale += 1
        if checkpoint is not None:
            state.seconds = before + time.perf_counter() - start
            checkpoints.save(checkpoint, fp, state, model, opt, batches.rng)
        if cfg.progress:
            say(
                f"{model.name} epoch {epoch:3d}  loss {row['loss']:.4f}  valid HR@10 {valid['HR@10']:.4f}  NDCG@10 {valid['NDCG@10']:.4f}"
                f"  ({state.epoch_seconds[-1]:.1f}s){'  *' if improved else '   '}  {time_left(state, cfg, time.perf_counter() - start)}"
            )
        if cfg.stops(state):
            log.info("%s: early stop at epoch %d (best %d)", model.name, epoch, state.best_epoch)
        elif cfg.max_minutes is not None and time.perf_counter() - start > 60 * cfg.max_minutes:  # per invocation
            log.info("%s: time cap of %.1f min reached at epoch %d", model.name, cfg.max_minutes, epoch)
            break

    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    return TrainResult(state.best_epoch, state.best_valid, len(state.history), before + time.perf_counter() - start, state.epoch_seconds, state.history, lr)


def train_discarding_foreign(
    model: Recommender, data: PreparedDataset, stats: FeatureStats, cfg: TrainConfig, features: FeatureView | None, checkpoint: Path
) -> TrainResult:
    """:func:`train` with ``checkpoint``, where a checkpoint of another run (other settings, or an unreadable file) is
    not ours to keep: it is deleted and the run starts afresh, from a copy of ``model`` as it was given (its
    initial or warm-started weights), so that it is the run a fresh ``train`` would be: the refused attempt had
    already fitted the model's statistics, which for the per-user tables (HGN, MARank) draws random numbers, and a
    second fit on the same model draws none (MARank's dropout then differed). ``model`` ends trained, in place."""
    given = copy.deepcopy(model)
    try:
        return train(model, data, stats, cfg, features, checkpoint=checkpoint)
    except checkpoints.CheckpointError as error:
        log.warning("discarding the training checkpoint %s: %s", checkpoint, error)
        checkpoint.unlink(missing_ok=True)
        result = train(given, data, stats, cfg, features, checkpoint=checkpoint)
        model.load_state_dict(given.state_dict())
        model.to(next(given.parameters()).device)
        return result
