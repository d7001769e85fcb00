"""--noise-group: groups of centers share their noise words; weights keep the chapter's loss."""

import numpy as np
import pytest

from w2v_cli import batches as B
from w2v_cli import dataset
from w2v_cli.backend import mxnet
from w2v_cli.config import Config
from w2v_cli.errors import UsageError
from w2v_cli.model import build_net, frontend, masked_loss, skip_gram, skip_gram_grouped
from w2v_cli.model import weighted_loss
from w2v_cli.train import check, train
from w2v_cli.vectors import Vectors

from conftest import planted_sentences

mx = mxnet()


def _contexts_batch(items, n_ctx):
    items = np.array(items, np.int32)
    mask = (np.arange(items.shape[1])[None, :] < np.array(n_ctx)[:, None]).astype(np.float32)
    return B.Batch(np.arange(1, len(items) + 1, dtype=np.int32)[:, None], items, mask,
                   mask.copy())


def test_weights_give_each_row_the_chapters_share_of_noise():
    # 3 rows in groups of 2: the last group is padded with one row of weight 0.
    b = _contexts_batch([[7, 8], [9, 0], [5, 6]], [2, 1, 2])
    noise = np.array([[4, 8, 4], [5, 3, 2]], np.int32)  # group 0: rows 0, 1; group 1: row 2, pad
    g = B.share_noise(b, noise, negatives=2)
    assert g.rows == 3 and g.pad == 1 and g.center.shape == (4, 1) and g.center[3, 0] == 0
    C, S, k = 2, 3, 2
    # row 0: 2 contexts, 4 noise words' worth spread over its 2 noise words that are not
    # its contexts (8 is one): weight (C + S) / (n (1 + k)) per context, times k n / ok
    f0 = (C + S) / (2 * (1 + k))
    np.testing.assert_allclose(g.mask[0], [f0, f0, f0 * 4 / 2, 0, f0 * 4 / 2])
    f1 = (C + S) / (1 * (1 + k))
    np.testing.assert_allclose(g.mask[1], [f1, 0, f1 * 2 / 3, f1 * 2 / 3, f1 * 2 / 3])
    f2 = (C + S) / (2 * (1 + k))  # 5 is its context
    np.testing.assert_allclose(g.mask[2], [f2, f2, 0, f2 * 4 / 2, f2 * 4 / 2])
    np.testing.assert_array_equal(g.mask[3], 0)
    np.testing.assert_array_equal(g.label, [[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0],
                                            [0, 0, 0, 0, 0]])


def test_one_row_per_group_with_its_own_noise_is_the_chapters_loss():
    # Every row has 2 contexts and, as its group, exactly its 2 * k noise words: the weighted
    # loss must equal the chapter's masked loss over contexts + noise, row by row.
    rng = np.random.default_rng(0)
    k, rows = 3, 4
    contexts = rng.integers(1, 10, (rows, 2)).astype(np.int32)
    noise = rng.integers(10, 20, (rows, 2 * k)).astype(np.int32)  # never a context
    b = B.share_noise(_contexts_batch(contexts, [2] * rows), noise, negatives=k)
    net = build_net(20, 4, mx.cpu())
    xp = mx.np
    grouped = weighted_loss(
        skip_gram_grouped(xp.array(b.center), xp.array(b.items), xp.array(noise), net[0], net[1]),
        xp.array(b.label), xp.array(b.mask)).asnumpy()
    items = np.concatenate([contexts, noise], axis=1)
    label = np.zeros(items.shape, np.float32)
    label[:, :2] = 1
    pred = skip_gram(xp.array(b.center), xp.array(items), net[0], net[1])
    chapter = masked_loss(pred.reshape(label.shape), xp.array(label),
                          xp.ones(label.shape)).asnumpy()
    np.testing.assert_allclose(grouped, chapter, rtol=1e-5)


@pytest.mark.parametrize("sparse", [False, True])
def test_grouped_scores_are_center_dot_context_then_center_dot_group_noise(sparse):
    center = np.array([[1], [2], [3], [4]], np.int32)
    items = np.array([[5, 6], [7, 0], [8, 9], [1, 2]], np.int32)
    noise = np.array([[3, 4, 5], [6, 7, 8]], np.int32)
    with frontend(sparse):
        net = build_net(10, 4, mx.cpu(), sparse)
        xp = mx.nd if sparse else mx.np
        pred = skip_gram_grouped(*(xp.array(x, dtype="int32") for x in (center, items, noise)),
                                 net[0], net[1]).asnumpy()
        v = net[0].weight.data().asnumpy()[center[:, 0]]
        u = net[1].weight.data().asnumpy()
    want_ctx = np.einsum("be,bce->bc", v, u[items])
    want_noise = np.einsum("be,bse->bs", v, u[np.repeat(noise, 2, axis=0)])
    np.testing.assert_allclose(pred, np.concatenate([want_ctx, want_noise], axis=1), rtol=1e-5)


def _planted_config(tmp_path, **kw):
    settings = dict(workdir=str(tmp_path), epochs=3, batch_size=64, embed_size=16, window=2,
                    negatives=3, subsample=0.0, lr=0.01, seed=1, device="cpu",
                    log_interval=10, noise_group=8, group_noise=6)
    return Config(**{**settings, **kw})


@pytest.mark.parametrize("bucket", [False, True])
def test_noise_groups_recover_planted_clusters(tmp_path, bucket):
    ds = dataset.encode(planted_sentences(), min_count=1)
    record = train(_planted_config(tmp_path, bucket=bucket), ds)
    losses = [e["loss"] for e in record["epochs"]]
    assert losses[-1] < losses[0] < 0.7
    assert record["epochs"][0]["centers"] == 2000 * 8  # padding rows are not counted
    vectors = Vectors.load(tmp_path)
    words = vectors.vocab.tokens[1:]
    hits = sum(vectors.most_similar(w, 1)[0][0][:2] == w[:2] for w in words)
    assert hits / len(words) >= 0.9, hits


def test_same_seed_same_noise_groups_and_vectors(tmp_path):
    ds = dataset.encode(planted_sentences(n_sentences=300), min_count=1)
    runs = [train(_planted_config(tmp_path / name, epochs=2), ds) for name in ("a", "b")]
    assert runs[0]["final"]["loss"] == runs[1]["final"]["loss"]
    tables = [Vectors.load(tmp_path / name).matrix for name in ("a", "b")]
    np.testing.assert_array_equal(*tables)


def test_noise_groups_refuse_several_devices_and_no_noise(tmp_path):
    with pytest.raises(UsageError, match="--noise-group works on one device"):
        check(Config(noise_group=8, device="cpu:0,1"))
    with pytest.raises(UsageError, match="--noise-group needs --negatives"):
        check(Config(noise_group=8, negatives=0))
