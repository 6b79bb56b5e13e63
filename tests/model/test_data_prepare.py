"""Preprocessing steps, splits and the on-disk cache, on hand-made files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from model.data import prepare as prepare_module
from model.data.cli import app
from model.data.dataset import PAD_TOKEN, PreparedDataset, Sequences
from model.data.formats import MalformedDataError, ReadOptions
from model.data.prepare import (
    PrepareOptions,
    dedup_index,
    kcore_index,
    leave_one_out,
    prepare,
    summary,
    tied_target_share,
    timeline_split,
)
from tests.model.data_files import amazon2023_line, tab_rows, write_lines


def run(tmp_path, rows, **options) -> PreparedDataset:
    path = write_lines(tmp_path / "u.data", tab_rows(rows))
    return prepare(path, PrepareOptions(**options), cache_dir=tmp_path / "cache")


def grid_rows(n_users: int, n_items: int) -> list[tuple[str, str, int]]:
    """Every user rates every item: a dataset that any k-core with k <= min(n_users, n_items) keeps. Users take
    turns in time (so a timeline split has validation and test examples)."""
    return [(f"u{u}", f"i{i}", u + n_users * i) for u in range(n_users) for i in range(n_items)]


def sequence_of(ds: PreparedDataset, user: str) -> list[str]:
    seq = ds.sequences
    u = seq.user_ids.tolist().index(user)
    return seq.item_ids[seq.user_items(u)].tolist()


# ---- dedup ----------------------------------------------------------------------------------------
def test_dedup_keeps_first_of_exact_duplicates_only():
    users = np.array([0, 0, 0, 1, 0])
    items = np.array([5, 5, 5, 5, 6])
    times = np.array([10, 10, 11, 10, 10])
    # row 1 repeats row 0; row 2 differs in time, row 3 in user, row 4 in item
    assert dedup_index(users, items, times).tolist() == [0, 2, 3, 4]


def test_prepare_counts_dedup_step(tmp_path):
    rows = [("a", "x", 1), ("a", "x", 1), ("a", "y", 2), ("a", "z", 3)]
    ds = run(tmp_path, rows, kcore=0)
    steps = {s["step"]: s["interactions"] for s in ds.meta["steps"]}
    assert steps["read"] == 4 and steps["dedup"] == 3
    assert sequence_of(ds, "a") == ["x", "y", "z"]


# ---- k-core ---------------------------------------------------------------------------------------
def test_kcore_iterates_until_stable():
    # k=2. Round 1 drops (u3, i3) (i3 has one rating); u3 is then left with one rating, so round 2
    # drops (u3, i2). A single pass would wrongly keep (u3, i2).
    names = [("u1", "i1"), ("u1", "i2"), ("u2", "i1"), ("u2", "i2"), ("u3", "i2"), ("u3", "i3")]
    users = np.array([int(u[1]) for u, _ in names])
    items = np.array([int(i[1]) for _, i in names])
    assert kcore_index(users, items, 2).tolist() == [0, 1, 2, 3]


def test_prepare_kcore_result_is_a_kcore(tmp_path):
    rows = [("u1", "i1", 1), ("u1", "i2", 2), ("u2", "i1", 3), ("u2", "i2", 4)]
    rows += [("u3", "i2", 5), ("u3", "i3", 6), ("u3", "i1", 7)]
    ds = run(tmp_path, rows, kcore=2, split="timeline", timeline_cuts=(0.5, 0.9))  # a split with examples in each part
    seq = ds.sequences
    assert set(seq.user_ids.tolist()) == {"u1", "u2", "u3"}
    assert set(seq.item_ids[1:].tolist()) == {"i1", "i2"}
    assert seq.lengths().min() >= 2 and np.bincount(seq.items)[1:].min() >= 2
    assert [s["step"] for s in ds.meta["steps"]] == ["read", "dedup", "kcore_2"]


def test_leave_one_out_keeps_the_k_core_after_dropping_short_users(tmp_path):
    """k = 2 with leave-one-out: u1 (2 items) is too short for a split; dropping it left i10 and i11 with one
    interaction each in a dataset recorded as a 2-core. Now the k-core is taken again with users of >= 3."""
    rows = [("u1", "i10", 1), ("u1", "i11", 2)]
    rows += [("u2", "i10", 3), ("u2", "i11", 4), ("u2", "i12", 5)]
    rows += [("u3", "i12", 6), ("u3", "i13", 7), ("u3", "i14", 8)]
    rows += [("u4", "i13", 9), ("u4", "i14", 10), ("u4", "i12", 11)]
    ds = run(tmp_path, rows, kcore=2)
    seq = ds.sequences
    assert set(seq.user_ids.tolist()) == {"u3", "u4"} and set(seq.item_ids[1:].tolist()) == {"i12", "i13", "i14"}
    assert seq.lengths().min() >= 3 and np.bincount(seq.items)[1:].min() >= 2
    assert [s["step"] for s in ds.meta["steps"]] == ["read", "dedup", "kcore_2", "loo_min_length"]


# ---- ordering and ids -----------------------------------------------------------------------------
def test_chronological_order_with_stable_tie_break(tmp_path):
    # b, a, z share a timestamp: u's file order must decide (b before a), not the item id nor the item's
    # first appearance in the file (v rated a before anyone rated b)
    rows = [("v", "a", 5), ("v", "q", 6), ("v", "r", 7)]
    rows += [("u", "c", 30), ("u", "b", 20), ("u", "a", 20), ("u", "first", 10), ("u", "z", 20)]
    ds = run(tmp_path, rows, kcore=0)
    assert sequence_of(ds, "u") == ["first", "b", "a", "z", "c"]
    assert ds.sequences.user_times(1).tolist() == [10, 20, 20, 20, 30]


def test_tied_target_share_counts_targets_timed_like_their_predecessor(tmp_path):
    # leave-one-out targets: u's test item c (t=20) ties with its validation item b, w's does not; u's
    # validation item b ties with a; v's validation item is its second interaction (t=6 after t=5)
    rows = [("u", "a", 20), ("u", "first", 10), ("u", "b", 20), ("u", "c", 20)]
    rows += [("v", "a", 5), ("v", "q", 6), ("v", "r", 7)]
    rows += [("w", "a", 1), ("w", "q", 2), ("w", "r", 2), ("w", "s", 3)]
    ds = run(tmp_path, rows, kcore=0)
    assert tied_target_share(ds, ds.split.test) == pytest.approx(1 / 3)
    assert tied_target_share(ds, ds.split.valid) == pytest.approx(2 / 3)
    assert summary(ds)["test_targets_tied_in_time"] == pytest.approx(1 / 3)
    assert tied_target_share(ds, np.array([[0, 0]])) == 0.0  # a first interaction has no predecessor


def test_dense_ids_reserve_zero_for_padding(tmp_path):
    rows = [("u7", "x", 1), ("u3", "y", 2), ("u7", "y", 3), ("u3", "x", 4), ("u7", "w", 5), ("u3", "w", 6)]
    ds = run(tmp_path, rows, kcore=0)
    seq = ds.sequences
    assert seq.item_ids[0] == PAD_TOKEN
    assert seq.n_items == 3 and sorted(seq.items.tolist()) == [1, 1, 2, 2, 3, 3]
    assert seq.user_ids.tolist() == ["u7", "u3"]  # users 0..U-1 in order of first appearance
    assert seq.item_ids.tolist() == [PAD_TOKEN, "x", "y", "w"]
    assert seq.offsets.tolist() == [0, 3, 6]
    assert sequence_of(ds, "u3") == ["y", "x", "w"]


# ---- user subset ----------------------------------------------------------------------------------
def test_user_subset_is_reproducible_by_seed(tmp_path):
    rows = grid_rows(40, 6)

    def pick(seed: int) -> set[str]:
        return set(run(tmp_path, rows, kcore=5, users=10, seed=seed).sequences.user_ids.tolist())

    first, again, other = pick(1), pick(1), pick(2)
    assert len(first) == 10 and first == again
    assert first != other


def test_user_subset_independent_of_file_order(tmp_path):
    rows = grid_rows(30, 5)
    options = PrepareOptions(users=7, seed=3)
    a = prepare(write_lines(tmp_path / "a.data", tab_rows(rows)), options, cache_dir=tmp_path / "c")
    b = prepare(write_lines(tmp_path / "b.data", tab_rows(rows[::-1])), options, cache_dir=tmp_path / "c")
    assert set(a.sequences.user_ids.tolist()) == set(b.sequences.user_ids.tolist())


def test_subset_is_followed_by_kcore_again(tmp_path):
    # k=2: every user rates two common items and one item shared with a partner. An odd subset of
    # users always splits a pair, leaving its item with one rating: only a second k-core removes it.
    rows = []
    for u in range(10):
        rows += [(f"u{u}", "c1", u), (f"u{u}", "c2", 10 + u), (f"u{u}", f"pair{u // 2}", 20 + u)]  # users take turns
    ds = run(tmp_path, rows, kcore=2, users=5, seed=0, split="timeline")
    steps = {s["step"]: s for s in ds.meta["steps"]}
    assert steps["subset_5_seed_0"]["users"] == 5
    assert steps["kcore_2_after_subset"]["items"] < steps["subset_5_seed_0"]["items"]
    seq = ds.sequences
    assert seq.n_users == 5 and seq.lengths().min() >= 2 and np.bincount(seq.items)[1:].min() >= 2


def test_subset_larger_than_population_keeps_everyone(tmp_path):
    ds = run(tmp_path, grid_rows(6, 5), users=100)
    assert ds.sequences.n_users == 6


# ---- splits ---------------------------------------------------------------------------------------
def test_leave_one_out_positions(tmp_path):
    rows = [("a", f"i{k}", k) for k in range(5)] + [("b", f"i{k}", 10 + k) for k in range(3)]
    rows += [("c", "i0", 1), ("c", "i1", 2)]
    ds = run(tmp_path, rows, kcore=0)
    seq, split = ds.sequences, ds.split
    assert seq.user_ids.tolist() == ["a", "b"]  # c has only 2 interactions
    assert ds.meta["steps"][-1] == {"step": "loo_min_length", "users": 2, "items": 5, "interactions": 8}
    assert split.name == "loo"
    assert split.train_len.tolist() == [3, 1]
    assert split.valid.tolist() == [[0, 3], [1, 1]]
    assert split.test.tolist() == [[0, 4], [1, 2]]
    assert ds.train_mask().tolist() == [True, True, True, False, False, True, False, False]


def test_leave_one_out_rejects_short_sequences():
    ids = np.array([PAD_TOKEN, "x", "y"])
    seq = Sequences(np.array(["a"]), ids, offsets=np.array([0, 2]), items=np.array([1, 2]), times=np.array([1, 2]))
    with pytest.raises(ValueError, match=">= 3"):
        leave_one_out(seq)


def hand_sequences() -> Sequences:
    times = [[1, 2, 3, 8, 9, 10], [4, 5], [9, 10], [6, 7], [2, 9]]
    lengths = [len(t) for t in times]
    flat = np.concatenate(times)
    return Sequences(
        user_ids=np.array([f"u{k}" for k in range(5)]),
        item_ids=np.array([PAD_TOKEN, "x"]),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=np.ones(len(flat), dtype=np.int64),
        times=flat.astype(np.int64),
    )


def test_timeline_split_on_hand_made_example():
    # 14 sorted times 1,2,2,3,4,5,6,7,8,9,9,9,10,10: the 0.5 quantile is 6.5 (cut 7), the 0.75 one is 9
    split = timeline_split(hand_sequences(), (0.5, 0.75))
    assert split.info == {"cut_quantiles": [0.5, 0.75], "cut_timestamps": [7, 9]}
    assert split.train_len.tolist() == [3, 2, 0, 1, 1]
    # u0: valid at 8 (p=3), test at 9 (p=4); u3: valid at 7 (p=1), no test; u4: only a test at 9 (p=1);
    # u1 has nothing after the cuts; u2 starts after the test cut, so no earlier interaction
    assert split.valid.tolist() == [[0, 3], [3, 1]]
    assert split.test.tolist() == [[0, 4], [4, 1]]


def test_prepare_timeline_records_cuts(tmp_path):
    rows = [(f"u{u}", f"i{i}", 100 * i + u) for u in range(4) for i in range(10)]
    ds = run(tmp_path, rows, kcore=0, split="timeline")
    cut1, cut2 = ds.split.info["cut_timestamps"]
    assert ds.split.name == "timeline" and cut1 <= cut2
    seq = ds.sequences
    for u in range(seq.n_users):
        times = seq.user_times(u)
        assert (times[: ds.split.train_len[u]] < cut1).all()
        assert (times[ds.split.train_len[u] :] >= cut1).all()


# ---- cache, meta and persistence -----------------------------------------------------------------
def test_second_call_loads_the_cache(tmp_path, monkeypatch, caplog):
    path = write_lines(tmp_path / "u.data", tab_rows(grid_rows(6, 6)))
    first = prepare(path, cache_dir=tmp_path / "cache")
    assert first.meta["from_cache"] is False

    def must_not_read(*args, **kwargs):
        raise AssertionError("the input was read again instead of the cache")

    monkeypatch.setattr(prepare_module, "read_interactions", must_not_read)
    with caplog.at_level(logging.INFO, logger="model.data.prepare"):
        second = prepare(path, cache_dir=tmp_path / "cache")
    assert "loaded prepared dataset from cache" in caplog.text
    assert second.meta["from_cache"] is True
    assert second.hash == first.hash
    np.testing.assert_array_equal(second.sequences.items, first.sequences.items)


def test_cache_misses_when_an_option_or_the_content_changes(tmp_path):
    path = write_lines(tmp_path / "u.data", tab_rows(grid_rows(6, 6)))
    cache = tmp_path / "cache"
    base = prepare(path, cache_dir=cache)
    other_k = prepare(path, PrepareOptions(kcore=3), cache_dir=cache)
    other_read = prepare(path, PrepareOptions(read=ReadOptions(max_malformed=0.5)), cache_dir=cache)
    assert len({base.hash, other_k.hash, other_read.hash}) == 3
    write_lines(path, tab_rows(grid_rows(6, 7)))
    changed = prepare(path, cache_dir=cache)
    assert changed.hash != base.hash and changed.sequences.n_items == 7
    assert len(list(cache.glob("*.npz"))) == 4


def test_meta_contents(tmp_path):
    lines = [amazon2023_line(f"U{u}", f"P{i}", 1_600_000_000_000 + u * 10 + i) for u in range(5) for i in range(5)]
    path = write_lines(tmp_path / "r.jsonl.gz", lines + ["oops"], gz=True)
    ds = prepare(path, PrepareOptions(read=ReadOptions(max_malformed=0.1)), cache_dir=tmp_path / "cache")
    meta = ds.meta
    assert meta["hash"] == ds.hash and len(meta["hash"]) == 64
    assert meta["source"] == [str(path.resolve())] and meta["format"] == "amazon2023"
    assert meta["options"]["kcore"] == 5 and meta["options"]["read"]["format"] == "amazon2023"
    assert (meta["n_users"], meta["n_items"], meta["n_interactions"]) == (5, 5, 25)
    assert meta["malformed"][0]["malformed"] == 1 and meta["malformed"][0]["examples"] == [[26, "invalid JSON"]]
    assert [s["step"] for s in meta["steps"]] == ["read", "dedup", "kcore_5"]
    assert summary(ds)["density"] == 1.0


def test_malformed_threshold_propagates(tmp_path):
    path = write_lines(tmp_path / "u.data", tab_rows(grid_rows(3, 3)) + ["bad line"])
    with pytest.raises(MalformedDataError):
        prepare(path, cache_dir=tmp_path / "cache")


def test_nothing_left_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no interactions left"):
        run(tmp_path, grid_rows(3, 3), kcore=5)


def test_npz_round_trip(tmp_path):
    ds = run(tmp_path, grid_rows(5, 6), split="timeline")
    ds.save(tmp_path / "copy.npz")
    back = PreparedDataset.load(tmp_path / "copy.npz")
    for name in ("user_ids", "item_ids", "offsets", "items", "times"):
        np.testing.assert_array_equal(getattr(back.sequences, name), getattr(ds.sequences, name))
    for name in ("train_len", "valid", "test"):
        np.testing.assert_array_equal(getattr(back.split, name), getattr(ds.split, name))
    assert back.split.name == "timeline" and back.split.info == ds.split.info
    assert back.meta == ds.meta


def test_concurrent_saves_of_one_cache_entry_all_succeed(tmp_path):
    """Parallel runs preparing the same dataset write the same cache file at once: each writes its own
    temporary file and renames it (it used to be one shared temporary name, renamed away under the others)."""
    from concurrent.futures import ThreadPoolExecutor

    ds = run(tmp_path, grid_rows(5, 6))
    target = tmp_path / "parallel" / "same.npz"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: ds.save(target), range(16)))  # re-raises any writer's error
    np.testing.assert_array_equal(PreparedDataset.load(target).sequences.items, ds.sequences.items)
    assert [p.name for p in target.parent.iterdir()] == ["same.npz"]


def test_invalid_options_are_rejected(tmp_path):
    path = write_lines(tmp_path / "u.data", tab_rows(grid_rows(3, 3)))
    bad_options = [{"kcore": -1}, {"split": "random"}, {"timeline_cuts": (0.9, 0.8)}, {"users": 0}]
    for bad in bad_options:
        with pytest.raises(ValueError):
            prepare(path, PrepareOptions(**bad), cache_dir=tmp_path / "cache")


def test_cli_prepare_and_info(tmp_path):
    path = write_lines(tmp_path / "u.data", tab_rows(grid_rows(6, 6)))
    args = ["prepare", "--input", str(path), "--cache-dir", str(tmp_path / "cache"), "--split", "timeline"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "users                6" in first.output and "(built in" in first.output
    assert "cut_timestamps" in first.output
    second = CliRunner().invoke(app, args)
    assert "(loaded from cache in" in second.output
    info = CliRunner().invoke(app, ["info", str(path), "--rows", "2"])
    assert info.exit_code == 0, info.output
    assert "movielens-tab" in info.output and "item i1" in info.output and "1970-01-01T00:00:06" in info.output


# ---- refusals a reviewer found missing (2026-12-06) -------------------------------------------------
def test_a_split_without_validation_or_test_examples_is_refused_not_scored_as_zero(tmp_path):
    # every interaction at one instant: the timeline cuts coincide with every timestamp, nothing is after them
    rows = [(f"u{u}", f"i{i}", 1_600_000_000) for u in range(20) for i in range(5)]
    with pytest.raises(ValueError, match=r"the timeline split has no training interactions and no validation examples and no test examples\. The timeline cuts fell at"):
        run(tmp_path, rows, kcore=0, split="timeline")
    # users who are each active in their own period: no user has history before the cut and a target after it
    with pytest.raises(ValueError, match="the timeline split has no validation examples.*no user has them \\(users active in separate periods\\)"):
        run(tmp_path, [(f"u{u}", f"i{i}", 1000 * u + i) for u in range(5) for i in range(6)], kcore=0, split="timeline")
    with pytest.raises(ValueError, match=r"0 < cut1 < cut2 < 1"):
        PrepareOptions(split="timeline", timeline_cuts=(0.8, 0.8)).validate()


def test_a_truncated_cache_file_is_rebuilt(tmp_path, caplog):
    first = run(tmp_path, grid_rows(6, 5))
    cached = Path(first.meta["cache_path"])
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])  # an interrupted write, a full disk
    again = run(tmp_path, grid_rows(6, 5))
    assert again.meta["from_cache"] is False and "unreadable" in caplog.text
    np.testing.assert_array_equal(again.sequences.items, first.sequences.items)
    assert PreparedDataset.load(cached).meta["hash"] == first.meta["hash"]  # rewritten whole


def test_a_directory_is_named_as_one(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory: give the interaction file"):
        prepare(tmp_path, PrepareOptions(), cache_dir=tmp_path / "cache")


def test_a_subset_that_the_second_kcore_shrinks_much_is_warned_about(tmp_path, caplog):
    # a chain of users, each sharing one item with the next: a random half keeps few 2-core items
    rows = []
    for u in range(40):
        rows += [(f"u{u}", f"s{u}", 3 * u), (f"u{u}", f"s{u + 1}", 3 * u + 1), (f"u{u}", "c", 3 * u + 2)]
    # (a timeline split: leave-one-out would then also need users of 3 interactions, and no 2-core of such is left)
    ds = run(tmp_path, rows, kcore=2, users=20, seed=1, split="timeline")
    steps = {s["step"]: s["users"] for s in ds.meta["steps"]}
    assert steps["subset_20_seed_1"] == 20
    kept = steps["kcore_2_after_subset"]
    assert kept < 18 and f"kept {kept} of the 20 users drawn" in caplog.text


def test_a_cache_from_the_older_reader_is_rebuilt_with_the_same_identity(tmp_path, caplog):
    """Reader version 2 keeps sub-second times etc.: an older cache is rebuilt, the dataset hash stays (it
    is in every run and artifact identity, and files the old reader read right prepare to the same arrays)."""
    first = run(tmp_path, grid_rows(6, 5))
    cached = Path(first.meta["cache_path"])
    old = PreparedDataset.load(cached)
    del old.meta["reader_version"]
    old.save(cached)
    caplog.set_level(logging.INFO)
    again = run(tmp_path, grid_rows(6, 5))
    assert again.meta["from_cache"] is False and "read by an older reader, rebuilding" in caplog.text
    assert again.hash == first.hash and PreparedDataset.load(cached).meta["reader_version"] == prepare_module.READER_VERSION
    assert run(tmp_path, grid_rows(6, 5)).meta["from_cache"] is True
