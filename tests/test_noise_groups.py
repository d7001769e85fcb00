"""--noise-group: groups of centers share their noise words; weights keep the chapter's loss."""

import numpy as np
import pytest

from w2v_cli import arrays
from w2v_cli import batches as B
from w2v_cli.backend import mxnet
from w2v_cli.config import Config, check
from w2v_cli.errors import UsageError
from w2v_cli.examples import Rows
from w2v_cli.model import build_net, group_scores, masked_loss, part_loss, skip_gram
from w2v_cli.train import forward_backward, train
from w2v_cli.vectors import Vectors

from conftest import encode, planted_sentences

mx = mxnet()


def _share(items, n_ctx, noise, negatives):
    items = np.array(items, np.int32)
    center = np.arange(1, len(items) + 1, dtype=np.int32)
    return B.share(center, items, np.array(n_ctx, np.int64), np.asarray(noise, np.int32),
                   negatives)


def test_weights_give_each_row_the_chapters_share_of_noise():
    # 3 rows in groups of 2: the last group is padded with one row of weight 0.
    noise = np.array([[4, 8, 4], [5, 3, 2]], np.int32)  # group 0: rows 0, 1; group 1: row 2, pad
    g = _share([[7, 8], [9, 0], [5, 6]], [2, 1, 2], noise, negatives=2)
    assert g.group == 2 and g.center.tolist() == [1, 2, 3, 0]
    # each group's words: its rows' 2 context slots each, then its 3 noise words
    np.testing.assert_array_equal(g.words, [[7, 8, 9, 0, 4, 8, 4], [5, 6, 0, 0, 5, 3, 2]])
    k = 2
    f0, f1 = 1 / (2 * (1 + k)), 1 / (1 * (1 + k))  # a position of a row of 2 and of 1 contexts
    # group 0, against center 0 (row 0: 8 is one of its contexts, so 2 noise words count
    # for its 2 * k) and center 1 (row 1: 1 context, k noise words' worth over 3)
    np.testing.assert_allclose(g.weight[0, :, 0], [f0, f0, 0, 0, f0 * 2, 0, f0 * 2])
    np.testing.assert_allclose(g.weight[0, :, 1], [0, 0, f1, 0, f1 * 2 / 3, f1 * 2 / 3,
                                                   f1 * 2 / 3])
    np.testing.assert_allclose(g.weight[1, :, 0], [f0, f0, 0, 0, 0, f0 * 2, f0 * 2])  # 5 clashes
    np.testing.assert_array_equal(g.weight[1, :, 1], 0)  # the padding row
    np.testing.assert_array_equal(g.label[0].T, [[1, 1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(g.label[1].T, [[1, 1, 0, 0, 0, 0, 0], [0] * 7])


def test_one_row_per_group_with_its_own_noise_is_the_chapters_loss():
    # Every row has 2 contexts and, as its group, exactly its 2 * k noise words: the weighted
    # loss of each group must equal the chapter's masked loss of its row.
    rng = np.random.default_rng(0)
    k, rows = 3, 4
    contexts = rng.integers(1, 10, (rows, 2)).astype(np.int32)
    noise = rng.integers(10, 20, (rows, 2 * k)).astype(np.int32)  # never a context
    part = _share(contexts, [2] * rows, noise, negatives=k)
    b = B.join([part], rows)
    net = build_net(20, 4, mx.cpu())
    xp = mx.np
    center, words, weight, label = (xp.array(x) for x in (b.center, b.parts[0][0], b.weight,
                                                          b.label))
    summed = part_loss(net, 1)(center, words, weight, label).item()
    items = np.concatenate([contexts, noise], axis=1)
    label = np.zeros(items.shape, np.float32)
    label[:, :2] = 1
    pred = skip_gram(xp.array(b.center), xp.array(items), net[0], net[1])
    chapter = masked_loss(pred.reshape(label.shape), xp.array(label),
                          xp.ones(label.shape)).asnumpy()
    np.testing.assert_allclose(summed, chapter.sum(), rtol=1e-5)


@pytest.mark.parametrize("sparse", [False, True])
def test_grouped_scores_are_each_word_of_a_group_dot_each_center_of_it(sparse):
    center = np.array([[1], [2], [3], [4]], np.int32)
    words = np.array([[5, 6, 7], [8, 9, 1]], np.int32)  # 2 groups of 2 centers
    with arrays.scope(sparse):
        net = build_net(10, 4, mx.cpu(), sparse)
        xp = arrays.module()
        pred = group_scores(net[1](xp.array(words, dtype="int32")),
                            net[0](xp.array(center, dtype="int32")), 2, 4).asnumpy()
        v = net[0].weight.data().asnumpy()[center[:, 0]].reshape(2, 2, 4)
        u = net[1].weight.data().asnumpy()
    np.testing.assert_allclose(pred, np.einsum("gwe,gce->gwc", u[words], v), rtol=1e-5)


@pytest.mark.parametrize("sparse", [False, True])
def test_the_hybridized_part_loss_is_the_operator_by_operator_one(sparse):
    # Training calls part_loss, one cached graph; it must give the loss and the gradients
    # of both tables that the same blocks give run operator by operator.
    rng = np.random.default_rng(3)
    part = _share(rng.integers(1, 30, (6, 3)), [3, 2, 3, 1, 3, 2],
                  rng.integers(1, 30, (2, 4)), negatives=2)
    b = B.join([part], 6)
    results = []
    with arrays.scope(sparse):
        xp = arrays.module()
        net = build_net(30, 5, mx.cpu(), sparse)
        lent = [xp.array(x, dtype=x.dtype) for x in (b.center, b.parts[0][0], b.weight, b.label)]
        bce = mx.gluon.loss.SigmoidBCELoss()

        def imperative(c, w, m, y):
            pred = group_scores(net[1](w), net[0](c), 3, 5).reshape((-1,))
            return bce(pred, y, m).sum()

        for step in (part_loss(net, 3), imperative):
            with mx.autograd.record():
                loss = step(*lent)
            loss.backward()
            grads = [p.grad().tostype("default") if sparse else p.grad() for p in
                     (net[0].weight, net[1].weight)]
            results.append([loss.asnumpy()] + [g.asnumpy() for g in grads])
        assert part_loss(net, 3)._cached_op is not None  # it ran as a graph
    for hybrid, operators in zip(*results):
        np.testing.assert_allclose(hybrid, operators, rtol=1e-5, atol=1e-7)
    assert np.abs(results[0][2]).sum() > 0  # the context table got a gradient


def _planted_config(tmp_path, **kw):
    settings = dict(workdir=str(tmp_path), epochs=3, batch_size=64, embed_size=16, window=2,
                    negatives=3, subsample=0.0, lr=0.01, seed=1, device="cpu",
                    log_interval=10, noise_group=8, group_noise=6)
    return Config(**{**settings, **kw})


@pytest.mark.parametrize("bucket", [False, True])
def test_noise_groups_recover_planted_clusters(tmp_path, bucket):
    ds = encode(planted_sentences(), min_count=1)
    record = train(_planted_config(tmp_path, bucket=bucket), ds)
    losses = [e["loss"] for e in record["epochs"]]
    assert losses[-1] < losses[0] < 0.7
    assert record["epochs"][0]["tokens"] == 2000 * 8  # padding rows are not counted
    vectors = Vectors.load(tmp_path)
    words = vectors.vocab.tokens[1:]
    hits = sum(vectors.most_similar(w, 1)[0][0][:2] == w[:2] for w in words)
    assert hits / len(words) >= 0.9, hits


def test_same_seed_same_noise_groups_and_vectors(tmp_path):
    ds = encode(planted_sentences(n_sentences=300), min_count=1)
    runs = [train(_planted_config(tmp_path / name, epochs=2), ds) for name in ("a", "b")]
    assert runs[0]["final"]["loss"] == runs[1]["final"]["loss"]
    tables = [Vectors.load(tmp_path / name).matrix for name in ("a", "b")]
    np.testing.assert_array_equal(*tables)


def test_noise_groups_refuse_no_noise(tmp_path):
    check(Config(noise_group=8, device="cpu:0,1", sparse_grad=False))  # split by groups
    with pytest.raises(UsageError, match="--noise-group needs --negatives"):
        check(Config(noise_group=8, negatives=0))


def test_trimmed_batches_train_on_one_device_only():
    rows = Rows(np.array([1, 2, 3], np.int32), np.array([[7, 8], [9, 0], [5, 6]], np.int32),
                np.array([2, 1, 2]), np.array([2, 1, 2]))
    trimmed = B.Layout(B.Trimmed(2), B.OwnNegatives()).batch(rows)
    assert len(trimmed.parts) == 2
    net = build_net(10, 4, [mx.cpu(0), mx.cpu(1)])
    with pytest.raises(ValueError, match="trains on one device"):
        forward_backward(net, trimmed, [mx.cpu(0), mx.cpu(1)])
