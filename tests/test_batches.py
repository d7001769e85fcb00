"""Groupings and objectives: a batch cut into parts of rows by length computes the padded
batch's loss, and any grouping works with any objective."""

import itertools

import numpy as np
import pytest

from w2v_cli import arrays, params
from w2v_cli import batches as B
from w2v_cli import train as T
from w2v_cli.backend import mxnet
from w2v_cli.config import Config
from w2v_cli.examples import Rows
from w2v_cli.model import build_net, masked_loss, skip_gram

from conftest import encode, planted_sentences

mx = mxnet()


def _rows(lengths, width, n_ctx=None, seed=0):
    """Rows of the given lengths; ids 1.. at real positions, 0 after."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, dtype=np.int64)
    n_ctx = lengths // 2 if n_ctx is None else np.asarray(n_ctx, dtype=np.int64)
    j = np.arange(width)[None, :]
    items = (rng.integers(1, 30, (len(lengths), width)) * (j < lengths[:, None])).astype(np.int32)
    center = (np.arange(len(lengths), dtype=np.int32) % 29 + 1)
    return Rows(center, items, n_ctx, lengths)


def _batch(rows, grouping, objective=None):
    return B.Layout(grouping, objective or B.OwnNegatives()).batch(rows, np.random.default_rng(0))


def test_trim_sorts_rows_by_length_and_cuts_where_least_is_padded():
    rows = _rows([6, 2, 4, 2], width=6, n_ctx=[3, 1, 2, 1])
    t = _batch(rows, B.Trimmed(2))
    # sorted lengths 2 2 | 4 6: 2*2 + 2*6 = 16 cells, against 3*4 + 6 = 18 for 2 2 4 | 6
    assert [ids.shape for ids, g in t.parts] == [(2, 2), (2, 6)]
    assert [g for _, g in t.parts] == [1, 1]
    assert t.center[:, 0].tolist() == [2, 4, 3, 1]  # rows 1, 3, 2, 0 (stable)
    np.testing.assert_array_equal(t.parts[0][0], rows.items[[1, 3], :2])
    np.testing.assert_array_equal(t.parts[1][0], rows.items[[2, 0], :6])
    np.testing.assert_allclose(t.weight, [.5, .5, .5, .5, .25, .25, .25, .25, 0, 0] + [1 / 6] * 6)
    np.testing.assert_array_equal(t.label, [1, 0, 1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0])
    # the distinct words, sorted, and where each part's ids are among them
    flat = np.concatenate([ids.ravel() for ids, _ in t.parts])
    assert t.words.tolist() == sorted(set(flat.tolist()))
    for (ids, _), slots in zip(t.parts, t.slots):
        np.testing.assert_array_equal(t.words[slots], ids)
    assert [(len(i), w) for i, w in B.Trimmed(1).split(rows.length)] == [(4, 6)]
    # one part per length
    assert [(len(i), w) for i, w in B.Trimmed(9).split(rows.length)] == [(2, 2), (1, 4), (1, 6)]


def test_loss_length_is_rounded_up_with_weight_0_positions():
    # 17 rows of length 1 in two parts (34 cells, so lengths go in steps of ceil(34 / 16) = 3):
    # 17 real positions, then one of weight 0 to make 18.
    rows = _rows([1] * 16 + [2], width=2, n_ctx=[1] * 17)
    t = _batch(rows, B.Trimmed(3))
    assert [ids.shape for ids, _ in t.parts] == [(16, 1), (1, 2)]
    assert t.weight.size == t.label.size == 18 * 1 + 0  # 18 = 16 + 2 rounded up to 3s
    np.testing.assert_array_equal(t.weight, [1] * 16 + [.5, .5])
    one = _batch(_rows([1] * 17, width=2, n_ctx=[1] * 17), B.Trimmed(3))
    assert one.words is None and one.weight.size == 17  # one part: no tail, no shared lookup


def test_cheapest_cuts_match_a_search_over_every_cut():
    rng = np.random.default_rng(3)
    for _ in range(40):
        length = np.sort(rng.choice([3, 6, 9, 12, 15, 30], rng.integers(1, 40)))
        ends = np.flatnonzero(np.diff(length)).tolist() + [length.size - 1]

        def cost(c, length=length):
            starts = [0] + [e + 1 for e in c[:-1]]
            return sum((e + 1 - s) * int(length[e]) for s, e in zip(starts, c))

        for parts in (1, 2, 3, 4):
            cuts = B.cheapest_cuts(length, ends, parts)
            assert cuts[-1] == length.size - 1 and len(cuts) <= parts
            best = min(cost(list(inner) + [ends[-1]])
                       for k in range(min(parts, len(ends)))
                       for inner in itertools.combinations(ends[:-1], k))
            assert cost(cuts) == best


def test_the_padded_batch_is_the_chapters_masked_loss():
    rows = _rows([5, 2, 6, 3], width=6, n_ctx=[2, 1, 3, 1])
    b = _batch(rows, B.Padded())
    net = build_net(30, 8, mx.cpu())
    loss = T.forward_backward(net, b, [mx.cpu()])[0].item()
    xp = mx.np
    pred = skip_gram(xp.array(rows.center[:, None]), xp.array(rows.items), net[0], net[1])
    chapter = masked_loss(pred.reshape(rows.items.shape), xp.array(rows.label),
                          xp.array(rows.mask)).asnumpy()
    assert loss == pytest.approx(chapter.sum(), rel=1e-6)


def _loss_and_grads(b, sparse, seed=7):
    with arrays.scope(sparse):
        mx.random.seed(seed)
        net = build_net(30, 8, [mx.cpu()], sparse_grad=sparse)
        loss = T.forward_backward(net, b, [mx.cpu()])[0]
        grads = [p.grad().asnumpy() if not sparse else p.grad().tostype("default").asnumpy()
                 for p in (net[0].weight, net[1].weight)]
        return float(loss.asnumpy()), grads


@pytest.mark.parametrize("sparse", [False, True])
def test_trimmed_batch_gives_the_padded_loss_and_gradients(sparse):
    rng = np.random.default_rng(1)
    n_ctx = rng.integers(1, 5, 50)
    rows = _rows(n_ctx * 3, width=12, n_ctx=n_ctx)
    padded_loss, padded_grads = _loss_and_grads(_batch(rows, B.Padded()), sparse)
    assert padded_loss > 0 and all(np.abs(g).max() > 0 for g in padded_grads)
    for parts in (1, 2, 3, 8):
        loss, grads = _loss_and_grads(_batch(rows, B.Trimmed(parts)), sparse)
        assert loss == pytest.approx(padded_loss, rel=1e-6)
        for g, p in zip(grads, padded_grads):
            np.testing.assert_allclose(g, p, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("sparse", [False, True])
def test_shared_negatives_work_with_either_grouping(sparse):
    # The same noise words for the same groups: trimmed into one part (rows of one length),
    # the trimmed and padded batches are the same numbers; in several parts each part's
    # groups draw their own noise, and the loss is the weighted sum over those groups.
    counts = np.array([0] + [10] * 29)
    rows = _rows([3] * 12, width=3, n_ctx=[3] * 12)
    objective = B.SharedNegatives(counts, group=4, size=5, negatives=2)
    padded, trimmed = (_batch(rows, g, objective) for g in (B.Padded(), B.Trimmed()))
    np.testing.assert_array_equal(padded.center, trimmed.center)
    np.testing.assert_array_equal(padded.parts[0][0], trimmed.parts[0][0])
    assert _loss_and_grads(padded, sparse)[0] == _loss_and_grads(trimmed, sparse)[0]
    mixed = _batch(_rows([2] * 5 + [3] * 6, width=3, n_ctx=[2] * 5 + [3] * 6), B.Trimmed(),
                   objective)
    # 5 rows of 2 contexts, then 6 of 3: each part in ceil(n / 4) = 2 groups of equal size
    assert [(ids.shape, g) for ids, g in mixed.parts] == [((2, 3 * 2 + 5), 3), ((2, 3 * 3 + 5), 3)]
    assert mixed.rows == 11 and mixed.center.shape == (12, 1)  # the first part's last group padded
    loss, grads = _loss_and_grads(mixed, sparse)
    assert np.isfinite(loss) and loss > 0 and np.abs(grads[1]).sum() > 0


@pytest.mark.parametrize("parts", [2, 3, 8])
def test_each_table_is_looked_up_once_a_step_whatever_the_parts(parts):
    # A sparse lookup's backward walks the whole table (MXNet's CPU kernel): the parts
    # gather their rows from one lookup of the batch's distinct words instead.
    b = _batch(_rows(np.arange(1, 13), width=12), B.Trimmed(parts))
    assert len(b.parts) == min(parts, 12)
    with arrays.scope(True):
        net = build_net(30, 8, [mx.cpu()], sparse_grad=True)
        calls = {0: [], 1: []}
        for k in calls:
            net[k].register_forward_hook(lambda block, args, out, k=k: calls[k].append(args))
        T.forward_backward(net, b, [mx.cpu()])
        assert [len(calls[0]), len(calls[1])] == [1, 1]
        assert calls[1][0][0].asnumpy().tolist() == b.words.tolist()
        # the context gradient's rows: the batch's distinct words, no others
        grad = net[1].weight.grad()
        assert grad.stype == "row_sparse"
        assert sorted(grad.indices.asnumpy().tolist()) == b.words.tolist()


def test_runs_trimmed_and_padded_train_the_same_vectors(tmp_path, monkeypatch):
    ds = encode(planted_sentences(), min_count=1)
    tables = {}
    for name, grouping in (("padded", B.Padded()), ("trimmed", B.Trimmed())):
        monkeypatch.setattr(T, "layout_for", lambda *a, g=grouping: B.Layout(g, B.OwnNegatives()))
        config = Config(workdir=str(tmp_path / name), epochs=2, batch_size=64, embed_size=16,
                        window=2, negatives=3, subsample=0.0, lr=0.01, seed=1, device="cpu")
        record = T.train(config, ds)
        assert record["config"]["sparse_grad"]
        tables[name] = params.load_tables(config.workdir_path, len(ds.vocab))
    for key in ("center", "context"):
        np.testing.assert_allclose(tables["trimmed"][key], tables["padded"][key], rtol=1e-4,
                                   atol=1e-5)


def test_the_layout_follows_the_objective_and_the_devices():
    counts = np.arange(10)
    one = B.layout_for(Config(), counts, 1)
    assert isinstance(one.grouping, B.Trimmed) and isinstance(one.objective, B.OwnNegatives)
    assert isinstance(B.layout_for(Config(), counts, 2).grouping, B.Padded)
    grouped = B.layout_for(Config(noise_group=8), counts, 1)
    assert isinstance(grouped.objective, B.SharedNegatives) and grouped.objective.group == 8
    # the other objectives: one padded part a batch (hs: three trimmed parts' gathers cost
    # more than the padding they save)
    for model, loss, objective in (("skipgram", "hs", B.SkipGramPaths),
                                   ("cbow", "hs", B.CbowPaths), ("cbow", "ns", B.CbowNegatives)):
        layout = B.layout_for(Config(model=model, loss=loss), counts, 1)
        assert isinstance(layout.grouping, B.Padded) and isinstance(layout.objective, objective)
