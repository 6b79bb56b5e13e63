"""Micro-benchmark of ItemIndex: queries/s of flat vs IVF vs HNSW, with and without exclusions, and the
recall@k of IVF/HNSW against exact (flat) search.

    .venv/bin/python benchmarks/bench_index.py                      # n = 3,700 and 100,000, d = 64
    .venv/bin/python benchmarks/bench_index.py --sizes 3700 --compare-selector

Items are a synthetic mixture of Gaussian clusters with varying norms (trained item embeddings are
clustered and popular items have larger norms); exclusions are string ids, as the worker passes them,
random by default (``--exclude-from near|top`` makes them correlate with the query, see make_exclusions). Timings are medians over ``--repeats`` runs of one batch; variants are
interleaved within each repeat so that load from other processes hits them alike.
``--compare-selector`` also times the alternative exclusion strategy (one faiss search per query with
``IDSelectorNot(IDSelectorBatch(excluded))``), CPU only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# run as a script from anywhere: make the repository root importable
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index import ItemIndex  # noqa: E402
from index.faiss_blas import blas_report, faiss  # noqa: E402


def synthetic_items(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    n_clusters = max(8, int(np.sqrt(n)) // 2)
    centres = rng.standard_normal((n_clusters, d))
    x = centres[rng.integers(n_clusters, size=n)] + 0.5 * rng.standard_normal((n, d))
    norms = rng.lognormal(0.0, 0.3, size=(n, 1))  # popularity-like spread of norms
    return (x * norms / np.sqrt(d)).astype(np.float32)


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    for fn in fns.values():  # warm-up (first-touch allocations, OpenMP thread start)
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def make_exclusions(
    x: np.ndarray, queries: np.ndarray, ids: list[str], count: int, mode: str, rng: np.random.Generator
) -> list[list[str]]:
    """``count`` item ids per query: uniformly random ("random"), drawn from the query's exact top 5*count
    ("near", a history close to the user's taste), or exactly its top ``count`` ("top", the worst case for
    over-fetching)."""
    count = min(count, len(x))
    if mode == "random":
        return [[ids[j] for j in rng.choice(len(x), count, replace=False)] for _ in range(len(queries))]
    depth = count if mode == "top" else min(5 * count, len(x))
    best, _ = ItemIndex.build(x, ids, use_gpu=False).search_dense_ids(queries, depth)
    return [[ids[j] for j in (row if mode == "top" else rng.choice(row, count, replace=False))] for row in best]


def selector_search(index: ItemIndex, queries: np.ndarray, k: int, exclude: list[list[str]], position: dict) -> None:
    """The per-query IDSelector strategy, for comparison with ItemIndex's batched over-fetch (the string id to
    position lookup is timed too, as ItemIndex.search pays it)."""
    for b in range(len(queries)):
        excluded = np.fromiter((position[s] for s in exclude[b]), dtype=np.int64, count=len(exclude[b]))
        sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(excluded))
        if index.kind == "ivf":
            params = faiss.SearchParametersIVF(sel=sel, nprobe=index.params["nprobe"])
        elif index.kind == "hnsw":
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=index.params["ef_search"])
        else:
            params = faiss.SearchParameters(sel=sel)
        index.faiss_index.search(queries[b : b + 1], k, params=params)


def recall(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact)]))


def run(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    print(blas_report())
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads, d={args.dim}, "
          f"batch={args.batch}, k={args.k}, exclusions/query={args.exclusions} ({args.exclude_from}), "
          f"median of {args.repeats}")
    header = f"{'n':>8} {'kind':5} {'params':56} {'build s':>8} {'q/s':>9} {'q/s excl':>9} {'R@k':>6} {'R@k excl':>8}"
    if args.compare_selector:
        header += f" {'q/s sel':>9}"
    for n in args.sizes:
        x = synthetic_items(n, args.dim, rng)
        queries = synthetic_items(args.batch, args.dim, rng)
        ids = [f"item{j}" for j in range(n)]
        exclude = make_exclusions(x, queries, ids, args.exclusions, args.exclude_from, rng)
        print(header)
        exact = exact_excl = None
        for kind in args.kinds:
            t = time.perf_counter()
            index = ItemIndex.build(x, ids, kind=kind, use_gpu=args.use_gpu, ef_search=args.ef_search)
            build_s = time.perf_counter() - t
            fns: dict[str, Callable[[], object]] = {
                "plain": lambda: index.search(queries, args.k),
                "excl": lambda: index.search(queries, args.k, exclude=exclude),
            }
            if args.compare_selector and not index.on_gpu:
                position = {s: p for p, s in enumerate(index.item_ids.tolist())}
                fns["selector"] = lambda: selector_search(index, queries, args.k, exclude, position)
            med = interleaved_medians(fns, args.repeats)
            found, _ = index.search_dense_ids(queries, args.k)
            found_excl, _ = index.search_dense_ids(queries, args.k, exclude=exclude)
            if kind == "flat":
                exact, exact_excl = found, found_excl
            r = f"{recall(found, exact):6.3f} {recall(found_excl, exact_excl):8.3f}" if exact is not None else f"{'-':>6} {'-':>8}"
            line = (f"{n:>8} {kind:5} {str(index.params):56} {build_s:8.2f} {args.batch / med['plain']:9.0f} "
                    f"{args.batch / med['excl']:9.0f} {r}")
            if "selector" in med:
                line += f" {args.batch / med['selector']:9.0f}"
            print(line + (" (gpu)" if index.on_gpu else ""), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[3700, 100_000])
    p.add_argument("--kinds", nargs="+", default=["flat", "ivf", "hnsw"], choices=["flat", "ivf", "hnsw"])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--exclusions", type=int, default=200)
    p.add_argument("--exclude-from", default="random", choices=["random", "near", "top"],
                   help="how excluded items relate to the query (see make_exclusions)")
    p.add_argument("--ef-search", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--use-gpu", default="auto", type=lambda s: {"auto": "auto", "true": True, "false": False}[s.lower()])
    p.add_argument("--compare-selector", action="store_true", help="also time per-query IDSelector exclusion")
    p.add_argument("--threads", type=int, default=None, help="faiss OpenMP threads (default: all cores)")
    args = p.parse_args()
    if "flat" in args.kinds:
        args.kinds = ["flat"] + [k for k in args.kinds if k != "flat"]  # flat first: it is the recall reference
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    run(args)


if __name__ == "__main__":
    main()
