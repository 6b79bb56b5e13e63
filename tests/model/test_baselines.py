"""Pop, GRU4Rec and SASRec: shapes, training-only counts, causality, padding invariance, registry, overfitting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import registry
from model.baselines.gru4rec import GRU4Rec
from model.baselines.pop import Pop
from model.baselines.sasrec import SASRec
from model.batching import FeatureView, SeqBatch, TrainBatches, eval_batches, left_align
from model.data.dataset import PAD_TOKEN, PreparedDataset, Sequences, Split
from model.features import FeatureStats
from model.losses import catalogue_scores


def make_data(seqs: list[list[int]], n_items: int, train_len: list[int] | None = None) -> PreparedDataset:
    """Leave-one-out split by default: train on all but the last two items, valid = L-2, test = L-1."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs])
    seq = Sequences(
        user_ids=np.array([f"u{u}" for u in range(len(seqs))]),
        item_ids=np.array([PAD_TOKEN] + [f"i{i}" for i in range(1, n_items + 1)]),
        offsets=offsets,
        items=items,
        times=np.arange(len(items), dtype=np.int64) * 60,
    )
    users = np.arange(len(seqs), dtype=np.int64)
    split = Split(
        name="loo",
        train_len=np.asarray(train_len if train_len is not None else lengths - 2, dtype=np.int64),
        valid=np.stack([users, lengths - 2], 1),
        test=np.stack([users, lengths - 1], 1),
    )
    return PreparedDataset(seq, split, meta={"hash": "toy"})


def fit_stats(data: PreparedDataset) -> FeatureStats:
    s = data.sequences
    return FeatureStats.fit(s.items, s.times, s.offsets, data.split.train_len, s.n_items)


def padded_batch(rows: list[list[int]], L: int) -> SeqBatch:
    """Histories left-padded to exactly L columns (features zero: these models ignore them)."""
    items = torch.zeros(len(rows), L, dtype=torch.long)
    for b, r in enumerate(rows):
        items[b, L - len(r) :] = torch.tensor(r)
    return SeqBatch(
        items=items,
        intervals=torch.zeros(len(rows), L),
        freqs=(items > 0).long(),
        lengths=torch.tensor([len(r) for r in rows]),
        users=torch.arange(len(rows)),
    )


N_ITEMS = 20
TOY = make_data([[1, 2, 3, 4, 5], [3, 3, 7], [9, 8, 7, 6, 5, 4]], N_ITEMS)
STATS = fit_stats(TOY)
NEURAL = {
    "gru4rec": lambda: GRU4Rec(N_ITEMS, GRU4Rec.Config(d=16), STATS),
    "sasrec": lambda: SASRec(N_ITEMS, SASRec.Config(d=16, n_heads=2, max_len=16), STATS),
    "sasrec-reference": lambda: SASRec(N_ITEMS, SASRec.Config(d=16, n_heads=2, max_len=16, block="reference"), STATS),
    "sasrec-end": lambda: SASRec(N_ITEMS, SASRec.Config(d=16, n_heads=2, max_len=16, positions="end"), STATS),
    # GRU state size != d exercises the projection back to the embedding space
    "gru4rec-deep": lambda: GRU4Rec(N_ITEMS, GRU4Rec.Config(d=16, hidden=24, n_layers=2), STATS),
}


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    # tiny tensors: intra-op threads cost far more than they save (30x slower on a loaded 2-core box)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


# ---- shapes ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pop", *NEURAL])
def test_score_shape_and_padding_column(name):
    model = Pop(N_ITEMS, Pop.Config(), STATS) if name == "pop" else NEURAL[name]()
    model.fit_statistics(TOY, FeatureView.build(TOY, STATS))
    model.eval()
    batch = padded_batch([[1, 2, 3], [4], [5, 6, 7, 8, 9, 10]], L=6)
    scores = model.score(batch)
    assert scores.shape == (3, N_ITEMS + 1) and scores.dtype == torch.float32
    assert torch.isneginf(scores[:, 0]).all()
    assert torch.isfinite(scores[:, 1:]).all()


@pytest.mark.parametrize("name", list(NEURAL))
def test_loss_on_train_batches(name):
    model = NEURAL[name]()
    batch = next(iter(TrainBatches(TOY, FeatureView.build(TOY, STATS), batch_size=8)))
    loss, logs = model.loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert logs["ce"] == pytest.approx(loss.item())
    assert abs(loss.item() - np.log(N_ITEMS)) < 0.5  # small init: near-uniform softmax at the start
    loss.backward()
    assert model.item_emb.weight.grad.abs().sum() > 0


# ---- Pop ------------------------------------------------------------------------------------------------
def test_pop_counts_training_interactions_only():
    # train_len 2 and 1: only [1, 2] and [3] are training data; later items must not be counted
    data = make_data([[1, 2, 5, 5, 5], [3, 5, 5, 4]], n_items=5, train_len=[2, 1])
    stats = fit_stats(data)
    model = Pop(5, Pop.Config(), stats)
    model.fit_statistics(data, FeatureView.build(data, stats))
    scores = model.score(padded_batch([[1], [2, 3]], L=2))
    expected = torch.tensor([float("-inf"), 1, 1, 1, 0, 0])
    assert torch.equal(scores, expected.expand(2, -1))
    # the counts are a buffer: they survive a state_dict round trip into a fresh model
    fresh = Pop(5, Pop.Config(), stats)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.score(padded_batch([[1]], L=1)), expected[None])
    assert not Pop.trainable
    with pytest.raises(RuntimeError, match="not trainable|no trainable"):
        model.loss(padded_batch([[1]], L=1))


# ---- causality and padding ------------------------------------------------------------------------------
def test_left_align():
    x = torch.tensor([[0, 0, 1, 2], [0, 3, 4, 5], [6, 7, 8, 9], [0, 0, 0, 0]])
    n = (x > 0).sum(1)
    assert left_align(x, n).tolist() == [[1, 2, 0, 0], [3, 4, 5, 0], [6, 7, 8, 9], [0, 0, 0, 0]]


@pytest.mark.parametrize("name", ["sasrec", "sasrec-reference", "sasrec-end"])
def test_sasrec_causal(name):
    model = NEURAL[name]().eval()
    items = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    h = model.encode(items)
    changed = items.clone()
    changed[0, 5:] = torch.tensor([11, 12, 13])
    h2 = model.encode(changed)
    assert torch.allclose(h[0, :5], h2[0, :5], atol=1e-6)
    assert not torch.allclose(h[0, 5:], h2[0, 5:], atol=1e-3)


@pytest.mark.parametrize("name", ["gru4rec", "sasrec", "sasrec-reference"])
def test_training_output_at_t_equals_scoring_the_prefix(name):
    """Causal + forward positions: the output trained at step t is what scoring s[:t+1] gives."""
    model = NEURAL[name]().eval()
    seq = [3, 1, 4, 1, 5, 9, 2, 6]
    h = model.encode(torch.tensor([seq]))
    for t in range(len(seq)):
        prefix_scores = model.score(padded_batch([seq[: t + 1]], L=10))
        assert torch.allclose(prefix_scores, catalogue_scores(h[:, t], model.item_emb.weight), atol=1e-5)


@pytest.mark.parametrize("name", list(NEURAL))
def test_padding_invariance(name):
    model = NEURAL[name]().eval()
    history, other = [5, 2, 8, 8, 1], [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4]
    tight = model.score(padded_batch([history], L=5))
    loose = model.score(padded_batch([history, other], L=12))  # 7 more padding columns before history
    assert torch.allclose(tight[0, 1:], loose[0, 1:], atol=1e-5)


@pytest.mark.parametrize("name", ["gru4rec", "sasrec"])
def test_padding_invariance_of_the_loss(name):
    model = NEURAL[name]().eval()
    batch = padded_batch([[5, 2, 8, 8, 1]], L=5)
    batch.targets = torch.tensor([[2, 8, 8, 1, 7]])
    wide = padded_batch([[5, 2, 8, 8, 1]], L=9)
    wide.targets = torch.tensor([[0, 0, 0, 0, 2, 8, 8, 1, 7]])
    assert model.loss(batch)[0].item() == pytest.approx(model.loss(wide)[0].item(), abs=1e-5)


def test_sasrec_positions_from_the_end_give_the_latest_item_the_last_row():
    model = NEURAL["sasrec-end"]().eval()  # max_len 16
    seen = []
    model.pos_emb.register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    model.encode(torch.tensor([[5, 2, 8, 0, 0], [1, 2, 3, 4, 5]]))
    assert seen[0][0, :3].tolist() == [13, 14, 15] and seen[0][1].tolist() == [11, 12, 13, 14, 15]


def test_sasrec_truncates_to_max_len():
    model = NEURAL["sasrec"]().eval()  # max_len 16
    history = list(range(1, 21))
    assert torch.allclose(model.score(padded_batch([history], L=20)), model.score(padded_batch([history[-16:]], L=16)), atol=1e-5)


def test_sasrec_attention_output_dropout_can_be_left_out_as_in_the_reference_code():
    """attn_output_dropout=False: dropout only on the attention weights and around the feed-forward layer (the
    reference implementations); the same weights give the same outputs once dropout is off."""
    def model(flag):
        torch.manual_seed(0)
        return SASRec(N_ITEMS, SASRec.Config(d=16, max_len=16, block="reference", dropout=0.5, attn_output_dropout=flag), STATS)

    calls = {}
    batch = padded_batch([[1, 2, 3, 4, 5], [6, 7, 8]], L=6)
    for flag in (True, False):
        m = model(flag).train()
        calls[flag] = 0
        m.blocks[0].drop.register_forward_hook(lambda *_, f=flag: calls.__setitem__(f, calls[f] + 1))
        m.encode(torch.tensor([[1, 2, 3, 4, 5, 0], [6, 7, 8, 0, 0, 0]]))  # left-aligned, as loss() passes them
    assert calls == {True: 2, False: 1}  # per block forward: attention output and feed-forward, or feed-forward only
    assert torch.equal(model(True).eval().score(batch), model(False).eval().score(batch))


def test_sasrec_xavier_qkv_init_matches_multihead_attention_and_leaves_the_rest():
    torch.manual_seed(0)
    normal = SASRec(N_ITEMS, SASRec.Config(d=64, n_blocks=2), STATS)
    torch.manual_seed(0)
    xavier = SASRec(N_ITEMS, SASRec.Config(d=64, n_blocks=2, qkv_init="xavier"), STATS)
    reference = torch.nn.MultiheadAttention(64, 1).in_proj_weight  # (3d, d), xavier-uniform
    for a, b in zip(normal.blocks, xavier.blocks):
        assert a.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert b.qkv.weight.std().item() == pytest.approx(reference.std().item(), rel=0.05)
        assert b.qkv.weight.abs().max().item() <= (6 / (64 + 3 * 64)) ** 0.5
        assert torch.equal(a.proj.weight, b.proj.weight) and torch.count_nonzero(b.qkv.bias) == 0
    assert torch.equal(normal.item_emb.weight, xavier.item_emb.weight)
    with pytest.raises(ValueError, match="qkv_init"):
        SASRec.Config(qkv_init="kaiming")


def test_sasrec_layer_norm_epsilon():
    model = SASRec(N_ITEMS, SASRec.Config(d=16, ln_eps=1e-8), STATS)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * 2 + 1 and all(m.eps == 1e-8 for m in norms)
    assert all(m.eps == 1e-5 for m in NEURAL["sasrec"]().modules() if isinstance(m, torch.nn.LayerNorm))


def test_train_config_passes_the_gradient_clip_and_batching_through():
    from model.cli import train_config
    from model.training import TrainConfig

    assert train_config(1, 1, None, 8, "cpu", 0, None).grad_clip == 5.0
    assert train_config(1, 1, None, 8, "cpu", 0, None, grad_clip=0.0).grad_clip == 0.0
    assert train_config(1, 1, None, 8, "cpu", 0, None).batching == "bucket"
    assert train_config(1, 1, None, 8, "cpu", 0, None, batching="random").batching == "random"
    with pytest.raises(ValueError, match="batching"):
        TrainConfig(batching="sorted")


def test_target_loss_scale_weighs_each_target_alike():
    """loss_scale="target" multiplies a batch's mean loss by its targets over a random batch's average: where
    every batch holds that average (equal histories, batch size dividing the users) training is unchanged;
    with unequal histories it is not."""
    from model.training import TrainConfig, train

    def trained(seqs, loss_scale):
        data = make_data(seqs, N_ITEMS)
        torch.manual_seed(0)
        model = GRU4Rec(N_ITEMS, GRU4Rec.Config(d=8), fit_stats(data))
        train(model, data, fit_stats(data), TrainConfig(epochs=1, batch_size=2, device="cpu", progress=False, loss_scale=loss_scale))
        return model.item_emb.weight.detach().clone()

    equal = [[1, 2, 3, 4, 5, 6], [3, 4, 5, 6, 7, 8], [9, 8, 7, 6, 5, 4], [2, 4, 6, 8, 10, 12]]
    assert torch.equal(trained(equal, "batch"), trained(equal, "target"))
    unequal = [[1, 2, 3, 4], [3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [9, 8, 7, 6], [2, 4, 6, 8, 10, 12, 14, 16, 18]]
    assert not torch.allclose(trained(unequal, "batch"), trained(unequal, "target"))
    with pytest.raises(ValueError, match="loss_scale"):
        TrainConfig(loss_scale="sum")


def test_target_loss_scale_weighs_each_user_alike_for_a_per_user_loss():
    """DiffRec's loss is a mean over users, so loss_scale="target" weighs users, not targets: with every
    batch full (2 users of 4) training equals the plain batch mean even though the histories differ in
    length (weighing by targets would give the users with long histories more weight)."""
    from model.baselines.diffrec import DiffRec
    from model.training import TrainConfig, train

    def trained(loss_scale):
        data = make_data([[1, 2, 3, 4], [3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [9, 8, 7, 6], [2, 4, 6, 8, 10, 12, 14, 16, 18]], N_ITEMS)
        torch.manual_seed(0)
        model = DiffRec(N_ITEMS, DiffRec.Config(steps=5, emb_size=4, dims=(16,)), fit_stats(data))
        train(model, data, fit_stats(data), TrainConfig(epochs=2, batch_size=2, device="cpu", progress=False, loss_scale=loss_scale))
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert DiffRec.loss_unit == "user"
    assert torch.equal(trained("batch"), trained("target"))


def test_random_batching_mixes_lengths_and_ignores_the_budget():
    """bucket=False: consecutive batch_size users of one permutation (each user once per epoch), lengths
    mixed, no token budget; the default buckets similar lengths under the budget."""
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(1, N_ITEMS + 1, size=int(n))) for n in rng.integers(4, 60, size=50)]
    data = make_data(seqs, N_ITEMS)
    feats = FeatureView.build(data, fit_stats(data))
    random_batches = list(TrainBatches(data, feats, batch_size=8, token_budget=64, seed=1, bucket=False))
    assert [len(b.users) for b in random_batches] == [8] * 6 + [2]
    assert sorted(torch.cat([b.users for b in random_batches]).tolist()) == list(range(50))
    # lengths mixed: a batch spans short and long users (the budget of 64 tokens would forbid it)
    assert max(int(b.lengths.max() - b.lengths.min()) for b in random_batches) > 30
    assert max(b.items.numel() for b in random_batches) > 64
    bucketed = list(TrainBatches(data, feats, batch_size=8, token_budget=64, seed=1))
    assert all(b.items.numel() <= 64 or len(b.users) == 1 for b in bucketed)
    assert sorted(torch.cat([b.users for b in bucketed]).tolist()) == list(range(50))


# ---- registry -------------------------------------------------------------------------------------------
def test_registry():
    assert {"pop", "gru4rec", "sasrec"} <= set(registry.available())
    model = registry.build("sasrec", N_ITEMS, STATS, {"n_blocks": 1})
    assert isinstance(model, SASRec) and len(model.blocks) == 1 and model.max_len == 200
    assert registry.build("gru4rec", N_ITEMS, STATS).max_len is None
    assert isinstance(registry.build("pop", N_ITEMS, STATS), Pop)
    with pytest.raises(ValueError, match="unknown hyper-parameters"):
        registry.build("sasrec", N_ITEMS, STATS, {"n_layers": 3})


# ---- learning -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gru4rec", "sasrec"])
def test_overfits_successor_pattern(name):
    """Item i is always followed by i + 1 (cyclically): a few hundred steps must learn it exactly."""
    n = 12
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(24):
        start, length = rng.integers(n), rng.integers(5, 15)
        seqs.append([(start + k) % n + 1 for k in range(length)])
    data = make_data(seqs, n)
    stats = fit_stats(data)
    feats = FeatureView.build(data, stats)
    model = {"gru4rec": GRU4Rec, "sasrec": SASRec}[name]
    model = model(n, model.Config(d=32, dropout=0.0), stats)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    batches = TrainBatches(data, feats, batch_size=8, max_len=model.max_len)
    losses = []
    while len(losses) < 80:
        for batch in batches:
            loss, logs = model.loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(logs["ce"])
    assert losses[0] > 2.0 and np.mean(losses[-5:]) < 0.1

    model.eval()
    with torch.no_grad():
        for split in (data.split.valid, data.split.test):
            for batch, targets, _ in eval_batches(data, feats, split, batch_size=10, max_len=model.max_len):
                assert (model.score(batch).argmax(1).numpy() == targets).all()
