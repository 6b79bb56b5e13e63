"""The model artifact: the contract between training (or the bootstrap job) and the streaming worker.

A directory holding

    manifest.json       format version, model name, version, creation time, dataset hash and split,
                        metrics, and the sha256 of every other file
    config.json         the model's hyper-parameters (its Config dataclass)
    weights.safetensors the state_dict (tensors only; nothing is unpickled on load)
    items.json          the item vocabulary: dense id -> raw item id (index 0 is padding)
    features.json       fitted feature statistics (interval min/max, item counts, buckets)

and optionally ``histories.npz``, the last interactions of every user it was trained on (``model/histories.py``:
the worker builds a user's first state from them), and an ``index/`` sub-directory with the FAISS index of
the item embeddings (see ``index/``).
"""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from model.features import FeatureStats
from model.histories import FILE as HISTORIES_FILE
from model.histories import UserHistories
from model.registry import Recommender, build

FORMAT_VERSION = 1
FILES = ("config.json", "weights.safetensors", "items.json", "features.json")


class ArtifactError(RuntimeError):
    pass


@dataclass
class Artifact:
    model: Recommender
    stats: FeatureStats
    item_ids: list[str]
    manifest: dict
    path: Path
    histories: UserHistories | None = None  # None: an artifact written without them (or before they existed)

    @property
    def version(self) -> str:
        return self.manifest["version"]

    def item_index_of(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids) if i > 0}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_version(after: str | None = None) -> str:
    """A name that sorts by creation time: UTC seconds and microseconds from one clock reading.

    The registry's ``prune`` keeps the newest versions by name, so a name must sort after every version already
    published: given the newest one as ``after``, a clock that reads at or before it (two versions in one
    microsecond, a clock stepped back) gives ``after``'s time plus one microsecond instead."""
    micros = time.time_ns() // 1_000
    if after is not None and (earlier := _version_micros(after)) is not None and micros <= earlier:
        micros = earlier + 1
    seconds, fraction = divmod(micros, 1_000_000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f"-{fraction:06d}"


def _version_micros(version: str) -> int | None:
    """Microseconds since the epoch of a name written by :func:`new_version` (None for any other name)."""
    match = re.fullmatch(r"(\d{8}T\d{6})-(\d{6})", version)
    if match is None:
        return None
    return calendar.timegm(time.strptime(match[1], "%Y%m%dT%H%M%S")) * 1_000_000 + int(match[2])


def save_artifact(
    path: Path, model: Recommender, stats: FeatureStats, item_ids, *, data_hash: str, split: str, metrics: dict | None = None, version: str | None = None,
    extra: dict | None = None, histories: UserHistories | None = None,
) -> dict:
    """Write the artifact files into ``path`` (created; caller handles atomic publication)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    item_ids = [str(x) for x in item_ids]
    if len(item_ids) != model.n_items + 1:
        raise ArtifactError(f"vocabulary has {len(item_ids)} entries, model expects {model.n_items + 1}")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / "weights.safetensors"))
    (path / "config.json").write_text(json.dumps({"model": model.name, "n_items": model.n_items, "config": dataclasses.asdict(model.config)}, indent=2))
    (path / "items.json").write_text(json.dumps(item_ids))
    (path / "features.json").write_text(json.dumps(stats.to_dict()))
    files = FILES
    if histories is not None:
        histories.save(path / HISTORIES_FILE)
        files = (*FILES, HISTORIES_FILE)
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": model.name,
        "version": version or new_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data_hash": data_hash,
        "split": split,
        "n_items": model.n_items,
        "metrics": metrics or {},
        "files": {name: sha256_file(path / name) for name in files},
        **(extra or {}),
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def load_artifact(path: Path, device: str | torch.device = "cpu", verify: bool = True) -> Artifact:
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise ArtifactError(f"{path} is not a model artifact (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{manifest_path} is not readable JSON ({error}): a damaged artifact") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: artifact format {manifest.get('format_version')} is not supported (expected {FORMAT_VERSION})")
    if verify:
        for name, digest in manifest["files"].items():
            if not (path / name).is_file() or sha256_file(path / name) != digest:
                raise ArtifactError(f"{path}: {name} is missing or does not match its checksum in manifest.json")
    cfg = json.loads((path / "config.json").read_text())
    stats = FeatureStats.from_dict(json.loads((path / "features.json").read_text()))
    item_ids = json.loads((path / "items.json").read_text())
    model = build(cfg["model"], cfg["n_items"], stats, cfg["config"])
    model.load_state_dict(load_file(str(path / "weights.safetensors"), device="cpu"))
    model.to(device).eval()
    histories = None
    if HISTORIES_FILE in manifest["files"]:
        try:
            histories = UserHistories.load(path / HISTORIES_FILE)
        except (ValueError, KeyError, OSError) as error:
            raise ArtifactError(f"{path}: {HISTORIES_FILE} is not readable: {error}") from None
        if len(histories.items) and (histories.items.min() < 1 or histories.items.max() > model.n_items):
            raise ArtifactError(f"{path}: {HISTORIES_FILE} holds item ids outside the model's vocabulary")
    return Artifact(model=model, stats=stats, item_ids=item_ids, manifest=manifest, path=path, histories=histories)
