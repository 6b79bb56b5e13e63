"""On-disk layout of a saved :class:`~index.item_index.ItemIndex` (no pickle anywhere).

A saved index is a directory with three files::

    items.faiss    the CPU faiss index (faiss.serialize_index bytes; positions 0..n-1)
    item_ids.json  {"item_ids": [...], "dense_ids": [...]}: string and dense id of each position
    index.json     manifest: kind, metric, dim, n, params, faiss version, sha256 + size of the two files

The manifest is written last, so a reader that races a writer (or finds a half-copied directory) sees
checksums that do not match and gets :class:`IndexIntegrityError` instead of a silently wrong catalogue.
Bytes are hashed and deserialized from the same buffer, so what was verified is what gets loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from difflsrec.files import write_atomic

INDEX_FILE = "items.faiss"
IDS_FILE = "item_ids.json"
MANIFEST_FILE = "index.json"
FORMAT_VERSION = 1
_REQUIRED_KEYS = {"format", "kind", "metric", "dim", "n", "params", "files"}


class IndexIntegrityError(RuntimeError):
    """A saved index directory is incomplete, corrupted or inconsistent with its manifest."""


@dataclass(frozen=True)
class StoredIndex:
    manifest: dict[str, Any]
    index_bytes: bytes
    item_ids: list[str]
    dense_ids: list[int]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_index_dir(
    directory: Path, index_bytes: bytes, item_ids: list[str], dense_ids: list[int], manifest: dict[str, Any]
) -> None:
    """Write the three files; ``manifest`` gets ``format`` and ``files`` (checksums) added here."""
    directory.mkdir(parents=True, exist_ok=True)
    ids_bytes = json.dumps({"item_ids": item_ids, "dense_ids": dense_ids}).encode()
    files = {INDEX_FILE: index_bytes, IDS_FILE: ids_bytes}
    for name, data in files.items():
        write_atomic(directory / name, data)
    full = {
        "format": FORMAT_VERSION,
        **manifest,
        "files": {name: {"sha256": _sha256(data), "bytes": len(data)} for name, data in files.items()},
    }
    write_atomic(directory / MANIFEST_FILE, json.dumps(full, indent=2, sort_keys=True).encode())


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise IndexIntegrityError(f"saved index is incomplete: {path} is missing") from None


def read_index_dir(directory: Path) -> StoredIndex:
    """Read and verify a saved index directory; raises :class:`IndexIntegrityError` on any mismatch."""
    directory = Path(directory)
    try:
        manifest = json.loads(_read(directory / MANIFEST_FILE))
        expected = manifest["files"]
        missing = _REQUIRED_KEYS - set(manifest)
        if missing:
            raise KeyError(f"missing keys {sorted(missing)}")
        if manifest.get("format") != FORMAT_VERSION:
            raise IndexIntegrityError(
                f"{directory / MANIFEST_FILE}: unsupported format {manifest.get('format')!r} "
                f"(this code reads format {FORMAT_VERSION})"
            )
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError/UnicodeDecodeError are ValueErrors
        raise IndexIntegrityError(f"{directory / MANIFEST_FILE} is not a valid index manifest: {exc}") from exc

    blobs: dict[str, bytes] = {}
    for name in (INDEX_FILE, IDS_FILE):
        data = _read(directory / name)
        want = expected.get(name, {}).get("sha256")
        got = _sha256(data)
        if got != want:
            raise IndexIntegrityError(
                f"checksum mismatch for {directory / name}: manifest says sha256 {want}, file has {got} "
                f"({len(data)} bytes); the index directory is corrupted or was partially overwritten - "
                "rebuild or re-copy it"
            )
        blobs[name] = data

    ids = json.loads(blobs[IDS_FILE])
    item_ids, dense_ids = ids["item_ids"], ids["dense_ids"]
    if not (len(item_ids) == len(dense_ids) == manifest["n"]):
        raise IndexIntegrityError(
            f"{directory}: manifest n={manifest['n']} but {IDS_FILE} holds {len(item_ids)} item ids "
            f"and {len(dense_ids)} dense ids"
        )
    return StoredIndex(manifest=manifest, index_bytes=blobs[INDEX_FILE], item_ids=item_ids, dense_ids=dense_ids)
