"""Top-N item retrieval over item embeddings with FAISS (maximum inner product, no normalisation).

DiffLSRec scores an item by the raw dot product ``e_user . e_i`` (not cosine), so every index uses the
inner-product metric on the vectors exactly as the model produced them:

* ``flat``  - ``IndexFlatIP``: exact; the default (the ML-1M catalogue is ~3.7k items).
* ``ivf``   - ``IndexIVFFlat`` (inner product), trained on the items; ``nprobe`` trades recall for speed.
* ``hnsw``  - ``IndexHNSWFlat`` with ``METRIC_INNER_PRODUCT``; CPU only (faiss has no GPU HNSW).

Ids. faiss stores rows at positions 0..n-1; each position maps to a string item id and to a *dense id*
(by default the row of the item in the ``embeddings`` passed to :meth:`ItemIndex.build`, so passing the
model's whole item table, padding row included, makes dense ids equal the model's item ids). The padding
item ``"<pad>"`` is skipped at build time, so it can never be returned.

Exclusions ("do not recommend what the user already has") are filtered after a batched search. A row is
exact once it fetched ``k + (its excluded items)`` hits, but asking faiss for ~k+200 hits per query costs
more than the search itself on small catalogues, so the whole batch first fetches ``k + max(k, 32)`` and
only rows whose margin was eaten by exclusions are searched again with their full over-fetch. Membership
is one ``np.searchsorted`` over sorted ``row * n + position`` keys. Alternative measured: one faiss search
per query with ``SearchParameters(sel=IDSelectorNot(IDSelectorBatch(excluded)))`` (the only way to give
each query its own selector). CPU ms per batch, 1 thread, process CPU time (the 2-core box was shared),
median of 5, B=256, k=10, d=64, 200 excluded string ids per query that are random / drawn from the
query's top 1,000 / exactly its top 200 (worst case for over-fetching):

    =========  =====  =======  =====================  ==================  ====================
    n          kind   no excl  two-pass (this code)   one-pass k+200      per-query selector
    =========  =====  =======  =====================  ==================  ====================
    3,700      flat      7     15 / 16 / 39           29                  22 / 24 / 24
    3,700      ivf       3     10 / 10 / 23           21                  17 / 18 / 18
    3,700      hnsw     12     22 / 20 / 55           37                  31 / 31 / 31
    100,000    flat    280     310 / 291 / 607        377                 389 / 382 / 383
    100,000    ivf      57     87 / 77 / 190          110                 140 / 127 / 182
    100,000    hnsw     25     59 / 49 / 82           72                  112 / 74 / 53
    =========  =====  =======  =====================  ==================  ====================

The two-pass over-fetch wins unless nearly every row excludes its own top hits; it also batches across
OpenMP threads (the selector loop does not) and is the only option on GPU (faiss GPU indexes take no
per-query selectors), so it is the one kept. ``benchmarks/bench_index.py --compare-selector`` re-measures.

GPU. With ``use_gpu="auto"`` flat and IVF indexes move to GPU 0 when faiss was built with GPU support
and sees a device; ``use_gpu=True`` raises if it cannot. faiss GPU k-selection is limited to 2048, so
on a GPU index at most :data:`GPU_MAX_K` results (including the over-fetched excluded ones) are
selected per query and the remaining columns are returned empty. :meth:`ItemIndex.save` always writes
a CPU index.

Thread-safety. An :class:`ItemIndex` is immutable after :meth:`build`/:meth:`load` (search parameters
are fixed at build time, per-call overrides go through faiss ``SearchParameters``), so the worker swaps
whole ``ItemIndex`` objects between micro-batches instead of mutating one. CPU searches may run
concurrently; GPU searches are serialised by a lock because every GPU index shares the process's one
``StandardGpuResources``, which faiss does not allow to be used from two threads at once.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any, Literal

import numpy as np

from index.faiss_blas import faiss
from index.storage import IndexIntegrityError, read_index_dir, write_index_dir
from model.data.dataset import PAD_TOKEN

Kind = Literal["flat", "ivf", "hnsw"]
UseGpu = bool | Literal["auto"]
KINDS: tuple[str, ...] = ("flat", "ivf", "hnsw")
GPU_MAX_K = 2048  # faiss GPU k-selection (and nprobe) limit
# what load() checks a manifest against before configuring the deserialized index
_REQUIRED_PARAMS: dict[str, set[str]] = {"flat": set(), "ivf": {"nlist", "nprobe"}, "hnsw": {"ef_search"}}
_FIRST_PASS_MARGIN = 32  # extra hits fetched per query before falling back to k + (excluded count)
_FAISS_CLASS = {"flat": faiss.IndexFlat, "ivf": faiss.IndexIVF, "hnsw": faiss.IndexHNSW}

_gpu_lock = threading.Lock()  # guards creation of the shared resources and every use of them: searches, copies to and from the GPU
_gpu_res: Any = None


def _gpu_resources() -> Any:
    """One StandardGpuResources per process: each holds a scratch allocation, and indexes get swapped."""
    global _gpu_res
    with _gpu_lock:
        if _gpu_res is None:
            _gpu_res = faiss.StandardGpuResources()
        return _gpu_res


def gpus_available() -> int:
    """GPUs faiss can use: 0 with a CPU-only faiss build even if CUDA devices exist."""
    if not hasattr(faiss, "StandardGpuResources"):
        return 0
    return int(faiss.get_num_gpus())


def _resolve_gpu(use_gpu: UseGpu, kind: str) -> bool:
    if use_gpu == "auto":
        return kind != "hnsw" and gpus_available() > 0
    if use_gpu is False:
        return False
    if use_gpu is True:
        if kind == "hnsw":
            raise ValueError("use_gpu=True with kind='hnsw': faiss has no GPU HNSW; use 'flat'/'ivf' or use_gpu='auto'")
        if gpus_available() == 0:
            raise RuntimeError(
                "use_gpu=True but faiss reports no usable GPU (faiss-cpu build or no visible CUDA device); "
                "install faiss-gpu on a CUDA machine, or pass use_gpu='auto' to fall back to CPU"
            )
        return True
    raise ValueError(f"use_gpu must be 'auto', True or False, got {use_gpu!r}")


def default_nlist(n: int) -> int:
    """~4*sqrt(n) lists, but at least 39 training points per list (faiss k-means warns below that)."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39, 65536))


def default_nprobe(nlist: int) -> int:
    return max(1, min(nlist, math.ceil(nlist / 8)))


class ItemIndex:
    """An immutable FAISS item index; build with :meth:`build` or :meth:`load`, query with :meth:`search`."""

    def __init__(
        self,
        index: Any,
        item_ids: Sequence[str],
        dense_ids: np.ndarray,
        kind: str,
        params: dict[str, int],
        on_gpu: bool,
    ):
        # Private: use build()/load(), which validate inputs and configure the faiss index.
        self._index = index
        self._kind = kind
        self._params = dict(params)
        self._on_gpu = on_gpu
        self._item_ids = np.asarray(list(item_ids), dtype=str)
        self._dense_ids = np.asarray(dense_ids, dtype=np.int64)
        self._item_ids.setflags(write=False)
        self._dense_ids.setflags(write=False)
        # str item ids and int dense ids share one lookup (str and int keys never collide)
        self._position: dict[str | int, int] = {s: p for p, s in enumerate(self._item_ids.tolist())}
        self._position.update((d, p) for p, d in enumerate(self._dense_ids.tolist()))
        self._sorted_dense_pos = np.argsort(self._dense_ids, kind="stable")
        self._sorted_dense = self._dense_ids[self._sorted_dense_pos]

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        item_ids: Sequence[str],
        kind: Kind = "flat",
        metric: Literal["ip"] = "ip",
        nlist: int | None = None,
        hnsw_m: int = 32,
        ef_search: int = 128,
        nprobe: int | None = None,
        use_gpu: UseGpu = "auto",
        ef_construction: int = 80,  # faiss default 40 loses ~5 points of recall@10 on MIPS
        dense_ids: Sequence[int] | None = None,
    ) -> "ItemIndex":
        """Index ``embeddings[i]`` under ``item_ids[i]`` (rows with id ``"<pad>"`` are skipped).

        ``dense_ids`` (default: the row numbers ``0..len(embeddings)-1``) are the integers returned by
        :meth:`search_dense_ids` and accepted in exclusion lists. ``nlist`` defaults to
        :func:`default_nlist`, ``nprobe`` to ``ceil(nlist / 8)``; ``hnsw_m``/``ef_construction``/``ef_search``
        configure HNSW.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if metric != "ip":
            raise ValueError(f"only metric='ip' (raw inner product, the model's score) is supported, got {metric!r}")
        x = np.asarray(embeddings)
        if x.ndim != 2 or x.shape[1] == 0:
            raise ValueError(f"embeddings must be a 2-D (n, d) array, got shape {x.shape}")
        ids = [str(s) for s in item_ids]
        dense = np.arange(len(x), dtype=np.int64) if dense_ids is None else np.asarray(dense_ids, dtype=np.int64)
        if not (len(ids) == len(x) == len(dense)):
            raise ValueError(f"{len(x)} embeddings, {len(ids)} item ids and {len(dense)} dense ids: lengths differ")
        keep = np.array([s != PAD_TOKEN for s in ids], dtype=bool)
        x = np.ascontiguousarray(x[keep], dtype=np.float32)
        ids = [s for s, k in zip(ids, keep) if k]
        dense = dense[keep]
        n, d = x.shape
        if n == 0:
            raise ValueError("no items to index (empty catalogue or only the padding row)")
        if len(set(ids)) != n or len(np.unique(dense)) != n:
            raise ValueError("item ids and dense ids must be unique")
        if not np.isfinite(x).all():
            raise ValueError("embeddings contain NaN or inf")
        on_gpu = _resolve_gpu(use_gpu, kind)

        params: dict[str, int] = {}
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "ivf":
            nlist = default_nlist(n) if nlist is None else int(nlist)
            if not 1 <= nlist <= n:
                raise ValueError(f"nlist must be in [1, n={n}], got {nlist}")
            nprobe = default_nprobe(nlist) if nprobe is None else int(nprobe)
            if nprobe < 1:
                raise ValueError(f"nprobe must be >= 1, got {nprobe}")
            params = {"nlist": nlist, "nprobe": min(nprobe, nlist)}
            # the quantizer must use the same metric, or lists are assigned by L2 while scored by IP
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(x)
        else:
            if hnsw_m < 2 or ef_search < 1 or ef_construction < 1:
                raise ValueError("hnsw_m must be >= 2, ef_search and ef_construction >= 1")
            params = {"hnsw_m": int(hnsw_m), "ef_construction": int(ef_construction), "ef_search": int(ef_search)}
            index = faiss.IndexHNSWFlat(d, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(ef_construction)
        index.add(x)
        return cls._finish(index, ids, dense, kind, params, on_gpu)

    @classmethod
    def _finish(
        cls, index: Any, ids: Sequence[str], dense: np.ndarray, kind: str, params: dict[str, int], on_gpu: bool
    ) -> "ItemIndex":
        """Apply search-time parameters to a populated CPU index and move it to the GPU if asked."""
        if kind == "ivf":
            index.nprobe = params["nprobe"]
        elif kind == "hnsw":
            index.hnsw.efSearch = params["ef_search"]
        if on_gpu:
            resources = _gpu_resources()
            # under the lock: a hot swap loads the new index in its own thread while the engine searches the old
            # one on the same resources, which serve one thread at a time (faiss: GPU indexes are not thread-safe)
            with _gpu_lock:
                index = faiss.index_cpu_to_gpu(resources, 0, index)
                if kind == "ivf":
                    # set explicitly: the GPU clone's nprobe is also capped by the GPU selection limit
                    faiss.GpuParameterSpace().set_index_parameter(index, "nprobe", min(params["nprobe"], GPU_MAX_K))
        return cls(index, ids, dense, kind, params, on_gpu)

    # ------------------------------------------------------------ properties
    @property
    def kind(self) -> str:
        return self._kind

    @property
    def metric(self) -> str:
        return "ip"

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def params(self) -> dict[str, int]:
        return dict(self._params)

    @property
    def on_gpu(self) -> bool:
        return self._on_gpu

    @property
    def faiss_index(self) -> Any:
        """The underlying faiss index (rows at positions ``0..n-1``); read-only by contract, never mutate it."""
        return self._index

    @property
    def item_ids(self) -> np.ndarray:
        """String id per position (read-only)."""
        return self._item_ids

    @property
    def dense_ids(self) -> np.ndarray:
        """Dense id per position (read-only)."""
        return self._dense_ids

    def __len__(self) -> int:
        return len(self._item_ids)

    def __repr__(self) -> str:
        where = "gpu" if self._on_gpu else "cpu"
        return f"ItemIndex(kind={self._kind!r}, n={len(self)}, dim={self.dim}, params={self._params}, {where})"

    # ---------------------------------------------------------------- search
    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[Iterable[str | int] | None] | None = None
    ) -> tuple[list[list[str]], np.ndarray]:
        """Top-``k`` items by inner product for each query row.

        ``exclude[b]`` holds string item ids and/or dense ids never to return for query ``b`` (unknown ids
        are ignored). Returns ``(ids, scores)``: ``scores`` is ``(B, k)`` float32, best first; ``ids[b]``
        lists the string ids of the real hits. Exactly ``k`` hits come back whenever the index holds at
        least ``k`` non-excluded items (and, for IVF/HNSW, the probed lists / graph reach them); otherwise
        ``ids[b]`` is shorter than ``k`` and the missing ``scores`` are ``-inf``. On a GPU index at most
        :data:`GPU_MAX_K` hits are selected per query (excluded ones included), so columns past that are
        empty too. Ties are ordered by position; which of several items tied at the k-th score make the
        cut is up to faiss.
        """
        scores, positions = self._search_positions(queries, k, exclude)
        ids = [self._item_ids[row[row >= 0]].tolist() for row in positions]
        return ids, scores

    def search_dense_ids(
        self, queries: np.ndarray, k: int, exclude: Sequence[Iterable[str | int] | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`search` but returns ``(dense_ids (B, k) int64, scores (B, k))`` with ``-1`` for no hit."""
        scores, positions = self._search_positions(queries, k, exclude)
        dense = np.where(positions >= 0, self._dense_ids[np.maximum(positions, 0)], -1)
        return dense, scores

    def _search_positions(
        self, queries: np.ndarray, k: int, exclude: Sequence[Iterable[str | int] | None] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (B, {self.dim}), got {q.shape}")
        if not np.isfinite(q).all():
            raise ValueError("queries contain NaN or inf")
        if int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        if exclude is not None and len(exclude) != len(q):
            raise ValueError(f"exclude has {len(exclude)} entries for {len(q)} queries")
        excluded_keys, excluded_per_row = self._excluded_keys(exclude, len(q))
        out_scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        out_pos = np.full((len(q), k), -1, dtype=np.int64)
        if len(q) == 0:
            return out_scores, out_pos
        # A row is exact when it fetched k + (its excluded items). Fetching that for the whole batch makes
        # faiss keep ~k+200 candidates per query, so fetch a small margin first and redo only the rows
        # whose margin was eaten by exclusions.
        needed = np.minimum(k + excluded_per_row, len(self))
        first = min(int(needed.max()), k + max(k, _FIRST_PASS_MARGIN))
        rows = np.arange(len(q))
        scores, pos, n_valid = self._fetch_filtered(q, rows, first, excluded_keys, k)
        redo = rows[(n_valid < k) & (needed > first)]
        if len(redo):
            scores[redo], pos[redo], _ = self._fetch_filtered(q[redo], redo, int(needed[redo].max()), excluded_keys, k)
        out_scores[:, : scores.shape[1]] = scores
        out_pos[:, : pos.shape[1]] = pos
        return out_scores, out_pos

    def _fetch_filtered(
        self, q: np.ndarray, rows: np.ndarray, fetch: int, excluded_keys: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Search ``fetch`` hits for queries ``q`` (batch rows ``rows``), drop excluded ones, keep the best k.

        Returns scores, positions (``-inf``/``-1`` where dropped) and the number of valid hits per row.
        """
        if self._on_gpu:
            fetch = min(fetch, GPU_MAX_K)
        scores, pos = self._faiss_search(q, fetch)
        drop = pos < 0  # faiss pads missing hits with -1
        if len(excluded_keys):
            # excluded_keys is sorted, so membership of every (row, position) hit is one searchsorted
            hit_keys = rows.astype(np.int64)[:, None] * len(self) + pos
            at = np.minimum(np.searchsorted(excluded_keys, hit_keys), len(excluded_keys) - 1)
            drop |= excluded_keys[at] == hit_keys
        # faiss returns hits best first; a stable partition keeps that order and moves dropped ones last
        order = np.argsort(drop, axis=1, kind="stable")[:, :k]
        valid = ~np.take_along_axis(drop, order, axis=1)
        scores = np.where(valid, np.take_along_axis(scores, order, axis=1), -np.inf).astype(np.float32, copy=False)
        pos = np.where(valid, np.take_along_axis(pos, order, axis=1), -1)
        # faiss leaves equal scores in heap order; order ties by position so results are deterministic
        tie_order = np.lexsort((pos, -scores), axis=-1)
        scores = np.take_along_axis(scores, tie_order, axis=1)
        pos = np.take_along_axis(pos, tie_order, axis=1)
        return scores, pos, valid.sum(axis=1)

    def _faiss_search(self, q: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._on_gpu:
            with _gpu_lock:
                return self._index.search(q, fetch)
        if self._kind == "hnsw" and fetch > self._params["ef_search"]:
            # HNSW returns at most efSearch hits; widen the beam for this call only (index stays immutable)
            params = faiss.SearchParametersHNSW(efSearch=fetch)
            return self._index.search(q, fetch, params=params)
        return self._index.search(q, fetch)

    def _excluded_keys(
        self, exclude: Sequence[Iterable[str | int] | None] | None, b: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique ``row * n + position`` keys of excluded items, and the number excluded per row.

        Ids not in the catalogue are dropped (they cannot be returned anyway), so they cost no over-fetch.
        """
        if exclude is None:
            return np.empty(0, dtype=np.int64), np.zeros(b, dtype=np.int64)
        per_row = [self._positions_of(items) for items in exclude]
        rows = np.repeat(np.arange(b, dtype=np.int64), [len(p) for p in per_row])
        positions = np.concatenate(per_row) if per_row else np.empty(0, dtype=np.int64)
        known = positions >= 0
        keys = np.sort(rows[known] * len(self) + positions[known])
        if len(keys) > 1:  # drop duplicates (cheaper than np.unique, which hashes before sorting)
            keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
        return keys, np.bincount(keys // len(self), minlength=b)

    def _positions_of(self, items: Iterable[str | int] | None) -> np.ndarray:
        """Positions of string ids / dense ids, -1 for unknown ones."""
        if items is None:
            return np.empty(0, dtype=np.int64)
        if isinstance(items, np.ndarray) and items.dtype.kind in "iu":
            # integer arrays (the evaluator's dense ids) map without a Python loop
            a = items.astype(np.int64, copy=False).ravel()
            at = np.minimum(np.searchsorted(self._sorted_dense, a), len(self) - 1)
            return np.where(self._sorted_dense[at] == a, self._sorted_dense_pos[at], -1)
        if isinstance(items, str):
            raise TypeError(f"exclude entries must be collections of ids, got the string {items!r}")
        if not isinstance(items, Sequence | np.ndarray):
            items = list(items)
        return np.fromiter(map(self._position.get, items, repeat(-1)), dtype=np.int64, count=len(items))

    # ------------------------------------------------------------ save / load
    def save(self, directory: str | Path) -> Path:
        """Write ``items.faiss``, ``item_ids.json`` and the ``index.json`` manifest (always a CPU index)."""
        directory = Path(directory)
        if self._on_gpu:
            with _gpu_lock:
                cpu_index = faiss.index_gpu_to_cpu(self._index)
        else:
            cpu_index = self._index
        manifest = {
            "kind": self._kind,
            "metric": self.metric,
            "dim": self.dim,
            "n": len(self),
            "params": self._params,
            "faiss_version": faiss.__version__,
        }
        write_index_dir(
            directory,
            faiss.serialize_index(cpu_index).tobytes(),
            self._item_ids.tolist(),
            self._dense_ids.tolist(),
            manifest,
        )
        return directory

    @classmethod
    def load(cls, directory: str | Path, use_gpu: UseGpu = "auto") -> "ItemIndex":
        """Read an index written by :meth:`save`; verifies checksums and the manifest against the index."""
        stored = read_index_dir(Path(directory))
        m = stored.manifest
        index = faiss.deserialize_index(np.frombuffer(stored.index_bytes, dtype=np.uint8))
        kind = m["kind"]
        if kind not in KINDS or m["metric"] != "ip":
            raise IndexIntegrityError(f"{directory}: unsupported kind/metric {kind!r}/{m['metric']!r}")
        missing = _REQUIRED_PARAMS[kind] - set(m["params"])
        if missing or not isinstance(index, _FAISS_CLASS[kind]):
            raise IndexIntegrityError(
                f"{directory}: manifest says kind={kind!r} with params {m['params']}, but the stored index is "
                f"{type(index).__name__}" + (f" and params {sorted(missing)} are missing" if missing else "")
            )
        if index.ntotal != m["n"] or index.d != m["dim"] or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise IndexIntegrityError(
                f"{directory}: faiss index (ntotal={index.ntotal}, d={index.d}) does not match the manifest "
                f"(n={m['n']}, dim={m['dim']}, metric=ip)"
            )
        on_gpu = _resolve_gpu(use_gpu, kind)
        dense = np.asarray(stored.dense_ids, dtype=np.int64)
        return cls._finish(index, stored.item_ids, dense, kind, m["params"], on_gpu)
