"""ItemIndex against real FAISS: exactness vs numpy, exclusions, id mapping, ANN recall, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from index import IndexIntegrityError, ItemIndex, gpus_available
from tests.index.reference import brute_force

D = 16


def clustered(n: int, d: int, n_clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d)) * 3
    return (centres[rng.integers(n_clusters, size=n)] + rng.standard_normal((n, d))).astype(np.float32)


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact)]))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, D)).astype(np.float32)
    q = rng.standard_normal((40, D)).astype(np.float32)
    ids = [f"item-{j}" for j in range(len(x))]
    return x, q, ids


def test_flat_matches_brute_force(data):
    x, q, ids = data
    index = ItemIndex.build(x, ids, use_gpu=False)
    got_ids, scores = index.search(q, 10)
    top, ref_scores = brute_force(x, q, 10)
    assert got_ids == [[ids[j] for j in row] for row in top]
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    dense, dense_scores = index.search_dense_ids(q, 10)
    np.testing.assert_array_equal(dense, top)
    np.testing.assert_array_equal(dense_scores, scores)
    assert scores.dtype == np.float32 and scores.shape == (40, 10)


def test_scores_are_raw_inner_products_not_cosine():
    # a long vector must win on inner product even though it is not the closest in angle
    x = np.array([[1.0, 0.0], [10.0, 10.0]], dtype=np.float32)
    index = ItemIndex.build(x, ["a", "b"], use_gpu=False)
    ids, scores = index.search(np.array([[1.0, 0.0]], dtype=np.float32), 2)
    assert ids == [["b", "a"]]
    np.testing.assert_array_equal(scores, [[10.0, 1.0]])


def test_ties_exact_scores_and_deterministic_order():
    # small integer vectors: many exactly equal dot products, all exactly representable in float32
    rng = np.random.default_rng(1)
    x = rng.integers(-1, 2, size=(400, 6)).astype(np.float32)
    q = rng.integers(-1, 2, size=(30, 6)).astype(np.float32)
    k = 25
    index = ItemIndex.build(x, [str(j) for j in range(len(x))], use_gpu=False)
    pos, scores = index.search_dense_ids(q, k)
    full = q @ x.T
    _, ref_scores = brute_force(x, q, k)
    np.testing.assert_array_equal(scores, ref_scores)  # the k best scores, exactly
    for b in range(len(q)):
        assert len(set(pos[b])) == k
        np.testing.assert_array_equal(full[b, pos[b]], scores[b])
        # every item strictly above the k-th score is returned; which tied items fill the rest is faiss's choice
        assert set(np.flatnonzero(full[b] > scores[b, -1])) <= set(pos[b])
        # ties are listed by position
        order = np.lexsort((pos[b], -scores[b]))
        np.testing.assert_array_equal(order, np.arange(k))


def test_exclusion_removes_exactly_excluded_and_keeps_k(data):
    x, q, ids = data
    rng = np.random.default_rng(2)
    index = ItemIndex.build(x, ids, use_gpu=False)
    # exclude each query's own best items (the hard case) plus random ones, as str ids, ints and numpy ints
    best, _ = brute_force(x, q, 30)
    excluded = [set(best[b, : rng.integers(0, 30)]) | set(rng.choice(len(x), 60, replace=False)) for b in range(len(q))]
    exclude: list = []
    for b, ex in enumerate(excluded):
        ex = sorted(ex)
        if b % 3 == 0:
            exclude.append([ids[j] for j in ex])
        elif b % 3 == 1:
            exclude.append(np.array(ex, dtype=np.int64))
        else:
            exclude.append({ids[j] if j % 2 else j for j in ex} | {"not-in-catalogue", 10_000})
    got_ids, scores = index.search(q, 10, exclude=exclude)
    top, ref_scores = brute_force(x, q, 10, excluded)
    for b in range(len(q)):
        assert len(got_ids[b]) == 10
        assert not {ids.index(s) for s in got_ids[b]} & excluded[b]
    assert got_ids == [[ids[j] for j in row] for row in top]
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


def test_exclusions_covering_the_top_hits_trigger_an_exact_second_pass(data):
    # excluding each query's whole top-100 defeats the first (small margin) fetch; rows without exclusions
    # in the same batch must keep their first-pass answer
    x, q, ids = data
    index = ItemIndex.build(x, ids, use_gpu=False)
    best, _ = brute_force(x, q, 100)
    excluded = [set(best[b]) if b % 2 else set() for b in range(len(q))]
    got, scores = index.search_dense_ids(q, 10, exclude=[sorted(e) for e in excluded])
    top, ref_scores = brute_force(x, q, 10, excluded)
    np.testing.assert_array_equal(got, top)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


def test_empty_and_none_exclusions_change_nothing(data):
    x, q, ids = data
    index = ItemIndex.build(x, ids, use_gpu=False)
    plain = index.search(q, 10)
    for exclude in ([[] for _ in q], [None] * len(q), [set() for _ in q]):
        got = index.search(q, 10, exclude=exclude)
        assert got[0] == plain[0]
        np.testing.assert_array_equal(got[1], plain[1])


def test_excluding_almost_everything_returns_what_is_left(data):
    x, q, ids = data
    index = ItemIndex.build(x, ids, use_gpu=False)
    keep = {3, 77, 401}
    exclude = [[j for j in range(len(x)) if j not in keep]] * 2
    got_ids, scores = index.search(q[:2], 5, exclude=exclude)
    for b in range(2):
        assert sorted(got_ids[b]) == sorted(ids[j] for j in keep)
        assert np.isfinite(scores[b, :3]).all() and np.isneginf(scores[b, 3:]).all()


def test_string_and_dense_id_mapping_with_padding_row_guarded():
    rng = np.random.default_rng(3)
    table = rng.standard_normal((50, D)).astype(np.float32)
    table[0] = 100.0  # the padding row would win every query if it were indexed
    item_ids = ["<pad>"] + [f"movie/{j}" for j in range(1, 50)]
    index = ItemIndex.build(table, item_ids, use_gpu=False)
    assert len(index) == 49 and "<pad>" not in index.item_ids.tolist()
    q = np.abs(rng.standard_normal((8, D))).astype(np.float32)
    got_ids, _ = index.search(q, 49)
    dense, _ = index.search_dense_ids(q, 49)
    assert all("<pad>" not in row for row in got_ids)
    assert (dense >= 1).all()  # dense ids are rows of the model table, so 0 (padding) never comes back
    assert got_ids == [[f"movie/{j}" for j in row] for row in dense]
    top, _ = brute_force(table[1:], q, 5)
    np.testing.assert_array_equal(dense[:, :5], top + 1)


def test_custom_dense_ids():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((30, D)).astype(np.float32)
    dense_ids = rng.permutation(np.arange(1000, 1030))
    index = ItemIndex.build(x, [f"s{j}" for j in range(30)], dense_ids=dense_ids, use_gpu=False)
    q = rng.standard_normal((4, D)).astype(np.float32)
    top, _ = brute_force(x, q, 3)
    dense, _ = index.search_dense_ids(q, 3)
    np.testing.assert_array_equal(dense, dense_ids[top])
    # excluding by dense id drops the item
    dense2, _ = index.search_dense_ids(q, 3, exclude=[[int(dense[b, 0])] for b in range(4)])
    np.testing.assert_array_equal(dense2[:, :2], dense[:, 1:])


def test_k_larger_than_catalogue():
    x = np.eye(5, D, dtype=np.float32)
    index = ItemIndex.build(x, list("abcde"), use_gpu=False)
    ids, scores = index.search(np.ones((2, D), dtype=np.float32), 8)
    dense, _ = index.search_dense_ids(np.ones((2, D), dtype=np.float32), 8)
    assert [sorted(r) for r in ids] == [list("abcde")] * 2
    assert scores.shape == (2, 8)
    assert (scores[:, :5] == 1.0).all() and np.isneginf(scores[:, 5:]).all()
    assert (dense[:, 5:] == -1).all() and sorted(dense[0, :5]) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "kind, options",
    [("ivf", {"nlist": 20, "nprobe": 8}), ("hnsw", {"hnsw_m": 32, "ef_search": 128, "ef_construction": 100})],
)
def test_ann_recall_vs_flat(kind, options):
    x = clustered(3000, D, 20, seed=5)
    q = clustered(200, D, 20, seed=6)
    ids = [str(j) for j in range(len(x))]
    exact, _ = ItemIndex.build(x, ids, use_gpu=False).search_dense_ids(q, 10)
    ann = ItemIndex.build(x, ids, kind=kind, use_gpu=False, **options)
    approx, scores = ann.search_dense_ids(q, 10)
    assert recall_at_k(approx, exact) >= 0.9
    assert (approx >= 0).all()
    # with exclusions too (over-fetch must widen HNSW's beam / survive IVF list boundaries)
    rng = np.random.default_rng(7)
    excluded = [set(rng.choice(len(x), 100, replace=False)) | set(exact[b, :3]) for b in range(len(q))]
    exact_ex, _ = brute_force(x, q, 10, excluded)
    approx_ex, _ = ann.search_dense_ids(q, 10, exclude=[list(e) for e in excluded])
    assert all(not set(a) & e for a, e in zip(approx_ex, excluded))
    assert recall_at_k(approx_ex, exact_ex) >= 0.9


def test_hnsw_returns_k_with_many_exclusions_despite_small_ef():
    # HNSW yields ~efSearch hits at most; excluding each query's top-300 needs a 310-wide beam
    x = clustered(2000, D, 10, seed=8)
    q = clustered(20, D, 10, seed=18)
    index = ItemIndex.build(x, [str(j) for j in range(2000)], kind="hnsw", ef_search=8, use_gpu=False)
    best, _ = brute_force(x, q, 300)
    ids, scores = index.search(q, 10, exclude=[[str(j) for j in row] for row in best])
    assert [len(r) for r in ids] == [10] * len(q)
    assert all(not {int(s) for s in r} & set(b) for r, b in zip(ids, best))
    exact, _ = brute_force(x, q, 10, [set(row) for row in best])
    found = np.array([[int(s) for s in r] for r in ids])
    # the widened beam finds most of the 301st..310th best (MIPS on HNSW is approximate); an 8-wide one ~none
    assert recall_at_k(found, exact) >= 0.5


def test_ivf_default_params():
    x = clustered(3700, D, 30, seed=9)
    index = ItemIndex.build(x, [str(j) for j in range(len(x))], kind="ivf", use_gpu=False)
    assert 1 <= index.params["nprobe"] <= index.params["nlist"] <= len(x) // 39


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(tmp_path, kind):
    x = clustered(1200, D, 12, seed=10)
    q = clustered(30, D, 12, seed=11)
    ids = [f"i{j}" for j in range(len(x))]
    index = ItemIndex.build(x, ids, kind=kind, nlist=16, nprobe=4, ef_search=32, dense_ids=np.arange(7, 1207), use_gpu=False)
    index.save(tmp_path / "idx")
    loaded = ItemIndex.load(tmp_path / "idx", use_gpu=False)
    assert (loaded.kind, loaded.dim, len(loaded), loaded.params) == (index.kind, D, 1200, index.params)
    exclude = [[f"i{j}" for j in range(b, 1200, 40)] for b in range(len(q))]
    for ex in (None, exclude):
        a_ids, a_scores = index.search(q, 10, exclude=ex)
        b_ids, b_scores = loaded.search(q, 10, exclude=ex)
        assert a_ids == b_ids
        np.testing.assert_array_equal(a_scores, b_scores)
        np.testing.assert_array_equal(index.search_dense_ids(q, 10)[0], loaded.search_dense_ids(q, 10)[0])
    manifest = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert manifest["kind"] == kind and manifest["n"] == 1200 and manifest["dim"] == D and manifest["metric"] == "ip"
    assert set(manifest["files"]) == {"items.faiss", "item_ids.json"} and manifest["faiss_version"]


@pytest.mark.parametrize("victim", ["items.faiss", "item_ids.json"])
def test_corrupted_file_is_rejected(tmp_path, victim):
    x = clustered(300, D, 5, seed=12)
    ItemIndex.build(x, [str(j) for j in range(300)], use_gpu=False).save(tmp_path)
    path = tmp_path / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IndexIntegrityError, match=f"checksum mismatch for .*{victim}"):
        ItemIndex.load(tmp_path, use_gpu=False)


def test_missing_or_garbled_manifest_is_rejected(tmp_path):
    x = clustered(300, D, 5, seed=13)
    ItemIndex.build(x, [str(j) for j in range(300)], use_gpu=False).save(tmp_path / "a")
    (tmp_path / "a" / "item_ids.json").unlink()
    with pytest.raises(IndexIntegrityError, match="item_ids.json is missing"):
        ItemIndex.load(tmp_path / "a", use_gpu=False)
    ItemIndex.build(x, [str(j) for j in range(300)], use_gpu=False).save(tmp_path / "b")
    (tmp_path / "b" / "index.json").write_text("{not json")
    with pytest.raises(IndexIntegrityError, match="not a valid index manifest"):
        ItemIndex.load(tmp_path / "b", use_gpu=False)


@pytest.mark.skipif(gpus_available() > 0, reason="checks the no-GPU behaviour")
def test_gpu_requested_without_gpu():
    x = clustered(200, D, 4, seed=14)
    ids = [str(j) for j in range(200)]
    with pytest.raises(RuntimeError, match="no usable GPU"):
        ItemIndex.build(x, ids, use_gpu=True)
    assert not ItemIndex.build(x, ids, use_gpu="auto").on_gpu
    assert not ItemIndex.build(x, ids, kind="ivf", nlist=4, use_gpu="auto").on_gpu


def test_hnsw_never_goes_to_gpu():
    x = clustered(200, D, 4, seed=15)
    ids = [str(j) for j in range(200)]
    with pytest.raises(ValueError, match="no GPU HNSW"):
        ItemIndex.build(x, ids, kind="hnsw", use_gpu=True)
    assert not ItemIndex.build(x, ids, kind="hnsw", use_gpu="auto").on_gpu


@pytest.mark.skipif(gpus_available() == 0, reason="needs faiss with GPU support and a GPU")
@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_gpu_matches_cpu(tmp_path, kind):
    x = clustered(2000, D, 10, seed=16)
    q = clustered(64, D, 10, seed=17)
    ids = [str(j) for j in range(2000)]
    cpu = ItemIndex.build(x, ids, kind=kind, nlist=20, nprobe=20, use_gpu=False)
    gpu = ItemIndex.build(x, ids, kind=kind, nlist=20, nprobe=20, use_gpu="auto")
    assert gpu.on_gpu
    exclude = [list(range(b, 2000, 11)) for b in range(len(q))]
    c_ids, c_scores = cpu.search_dense_ids(q, 10, exclude=exclude)
    g_ids, g_scores = gpu.search_dense_ids(q, 10, exclude=exclude)
    assert recall_at_k(g_ids, c_ids) >= 0.99
    np.testing.assert_allclose(g_scores, c_scores, rtol=1e-4, atol=1e-4)
    gpu.save(tmp_path)  # written as a CPU index
    assert not ItemIndex.load(tmp_path, use_gpu=False).on_gpu


def test_input_validation(data):
    x, q, ids = data
    with pytest.raises(ValueError, match="unique"):
        ItemIndex.build(x[:3], ["a", "a", "b"], use_gpu=False)
    with pytest.raises(ValueError, match="lengths differ"):
        ItemIndex.build(x, ids[:-1], use_gpu=False)
    with pytest.raises(ValueError, match="metric"):
        ItemIndex.build(x, ids, metric="cosine", use_gpu=False)
    index = ItemIndex.build(x, ids, use_gpu=False)
    with pytest.raises(ValueError, match="shape"):
        index.search(q[:, :4], 5)
    with pytest.raises(ValueError, match="exclude has"):
        index.search(q, 5, exclude=[[]])
    with pytest.raises(ValueError, match="k must"):
        index.search(q, 0)
    with pytest.raises(TypeError, match="collections of ids"):
        index.search(q[:1], 5, exclude=["item-1"])


def test_copies_to_and_from_the_gpu_hold_the_gpu_lock(tmp_path, monkeypatch):
    """The one StandardGpuResources serves one thread at a time; a hot swap copies the new index to the GPU in its
    loader thread while the engine thread searches the old one, so copies take the lock searches take. No GPU
    is needed to check the locking: faiss's two copy functions are replaced by ones that record whether the lock
    is held and hand the CPU index through (the real copies run in test_gpu_matches_cpu on a GPU machine)."""
    import index.item_index as module

    held = []

    def copy(*args):
        held.append(module._gpu_lock.locked())
        return args[-1]

    monkeypatch.setattr(module, "_gpu_res", object())  # no StandardGpuResources on a faiss-cpu build
    monkeypatch.setattr(module.faiss, "index_cpu_to_gpu", copy, raising=False)
    monkeypatch.setattr(module.faiss, "index_gpu_to_cpu", copy, raising=False)
    monkeypatch.setattr(module, "_resolve_gpu", lambda use_gpu, kind: True)
    x = clustered(200, D, 4, seed=1)
    index = ItemIndex.build(x, [f"i{j}" for j in range(200)], kind="flat")
    index.save(tmp_path / "idx")
    assert held == [True, True]
