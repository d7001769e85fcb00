"""--trim-parts: a batch cut into parts of rows by length computes the padded batch's loss."""

import itertools

import numpy as np
import pytest

from w2v_cli import batches as B
from w2v_cli import checkpoint, dataset
from w2v_cli.backend import mxnet
from w2v_cli.config import Config
from w2v_cli.errors import UsageError
from w2v_cli.model import build_net, frontend
from w2v_cli.train import check, forward_backward, train

from conftest import planted_sentences

mx = mxnet()


def _padded(lengths, width, n_ctx=None, seed=0):
    """A padded Batch with rows of the given lengths; ids 1.. at real positions, 0 after."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    n_ctx = lengths // 2 if n_ctx is None else np.asarray(n_ctx)
    j = np.arange(width)[None, :]
    mask = (j < lengths[:, None]).astype(np.float32)
    items = (rng.integers(1, 30, (len(lengths), width)) * mask).astype(np.int32)
    label = (j < n_ctx[:, None]).astype(np.float32)
    center = (np.arange(len(lengths), dtype=np.int32) % 29 + 1)[:, None]
    return B.Batch(center, items, mask, label)


def test_trim_sorts_rows_by_length_and_cuts_where_least_is_padded():
    b = _padded([6, 2, 4, 2], width=6, n_ctx=[3, 1, 2, 1])
    t = B.trim(b, parts=2)
    # sorted lengths 2 2 | 4 6: 2*2 + 2*6 = 16 cells, against 3*4 + 6 = 18 for 2 2 4 | 6
    assert t.widths == ((2, 2), (2, 6))
    assert t.center[:, 0].tolist() == [2, 4, 3, 1]  # rows 1, 3, 2, 0 (stable)
    np.testing.assert_array_equal(
        t.items, np.concatenate([b.items[[1, 3], :2].ravel(), b.items[[2, 0], :6].ravel()]))
    np.testing.assert_allclose(t.mask, [.5, .5, .5, .5, .25, .25, .25, .25, 0, 0] + [1 / 6] * 6)
    np.testing.assert_array_equal(t.label, [1, 0, 1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0])
    parts = B.parts_of(t)
    assert [p.shape for p in parts] == [(2, 2), (2, 6)]
    # the distinct words, sorted, and where each item is among them
    assert t.words.tolist() == sorted(set(t.items.tolist()))
    np.testing.assert_array_equal(t.words[t.slots], t.items)
    assert [p.tolist() for p in B.parts_of(t, t.slots)] == \
        [t.slots[:4].reshape(2, 2).tolist(), t.slots[4:].reshape(2, 6).tolist()]
    assert B.trim(b, parts=1).widths == ((4, 6),)
    assert B.trim(b, parts=9).widths == ((2, 2), (1, 4), (1, 6))  # one part per length


def test_loss_length_is_rounded_up_with_weight_0_positions():
    # 17 rows of width 2 (34 cells, so lengths go in steps of ceil(34 / 16) = 3), each row
    # of length 1: 17 real positions, then one of weight 0 to make 18.
    b = _padded([1] * 17, width=2, n_ctx=[1] * 17)
    t = B.trim(b, parts=3)
    assert t.widths == ((17, 1),) and t.items.size == 17
    assert t.mask.size == t.label.size == 18
    np.testing.assert_array_equal(t.mask, [1] * 17 + [0])
    np.testing.assert_array_equal(t.label, [1] * 17 + [0])


def test_cheapest_cuts_match_a_search_over_every_cut():
    rng = np.random.default_rng(3)
    for _ in range(40):
        length = np.sort(rng.choice([3, 6, 9, 12, 15, 30], rng.integers(1, 40)))
        ends = np.flatnonzero(np.diff(length)).tolist() + [length.size - 1]
        def cost(c, length=length):
            starts = [0] + [e + 1 for e in c[:-1]]
            return sum((e + 1 - s) * int(length[e]) for s, e in zip(starts, c))

        for parts in (1, 2, 3, 4):
            cuts = B._cheapest_cuts(length, ends, parts)
            assert cuts[-1] == length.size - 1 and len(cuts) <= parts
            best = min(cost(list(inner) + [ends[-1]])
                       for k in range(min(parts, len(ends)))
                       for inner in itertools.combinations(ends[:-1], k))
            assert cost(cuts) == best


@pytest.mark.parametrize("sparse", [False, True])
def test_trimmed_batch_gives_the_padded_loss_and_gradients(sparse):
    rng = np.random.default_rng(1)
    n_ctx = rng.integers(1, 5, 50)
    b = _padded(n_ctx * 3, width=12, n_ctx=n_ctx)
    results = []
    for parts in (0, 1, 2, 3, 8):
        with frontend(sparse):
            mx.random.seed(7)
            net = build_net(30, 8, [mx.cpu()], sparse_grad=sparse)
            loss = forward_backward(net, B.trim(b, parts) if parts else b, [mx.cpu()])[0]
            grads = [p.grad().asnumpy() if not sparse else p.grad().tostype("default").asnumpy()
                     for p in (net[0].weight, net[1].weight)]
            results.append((float(loss.asnumpy()), grads))
    padded_loss, padded_grads = results[0]
    assert padded_loss > 0 and all(np.abs(g).max() > 0 for g in padded_grads)
    for loss, grads in results[1:]:
        assert loss == pytest.approx(padded_loss, rel=1e-6)
        for g, p in zip(grads, padded_grads):
            np.testing.assert_allclose(g, p, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("parts", [1, 3, 8])
def test_each_table_is_looked_up_once_a_step_whatever_the_parts(parts):
    # A sparse lookup's backward walks the whole table (MXNet's CPU kernel): the parts
    # gather their rows from one lookup of the batch's distinct words instead.
    b = B.trim(_padded(np.arange(1, 13), width=12), parts)
    assert len(b.widths) == min(parts, 12)
    with frontend(True):
        net = build_net(30, 8, [mx.cpu()], sparse_grad=True)
        calls = {0: [], 1: []}
        for k in calls:
            net[k].register_forward_hook(lambda block, args, out, k=k: calls[k].append(args))
        forward_backward(net, b, [mx.cpu()])
        assert [len(calls[0]), len(calls[1])] == [1, 1]
        assert calls[1][0][0].asnumpy().tolist() == b.words.tolist()
        # the context gradient's rows: the batch's distinct words, no others
        grad = net[1].weight.grad()
        assert grad.stype == "row_sparse"
        assert sorted(grad.indices.asnumpy().tolist()) == b.words.tolist()


def test_runs_trimmed_and_padded_train_the_same_vectors(tmp_path):
    ds = dataset.encode(planted_sentences(), min_count=1)
    tables = {}
    for parts in (1, 3):
        config = Config(workdir=str(tmp_path / str(parts)), epochs=2, batch_size=64,
                        embed_size=16, window=2, negatives=3, subsample=0.0, lr=0.01, seed=1,
                        device="cpu", trim_parts=parts)
        record = train(config, ds)
        assert record["config"]["trim_parts"] == parts and record["config"]["sparse_grad"]
        tables[parts] = checkpoint.load_tables(config.workdir_path, len(ds.vocab))
    for key in ("center", "context"):
        np.testing.assert_allclose(tables[3][key], tables[1][key], rtol=1e-4, atol=1e-5)


def test_trim_parts_refused_where_it_cannot_apply(tmp_path):
    with pytest.raises(UsageError, match="at least 1"):
        check(Config(trim_parts=0))
    with pytest.raises(UsageError, match="noise-group"):
        check(Config(trim_parts=3, noise_group=4))
    with pytest.raises(UsageError, match="one device"):
        check(Config(trim_parts=3, device="cpu:0,1"))
