"""The speed paths compute what the plain paths compute: chunks, prefetch, sparse gradients."""

from __future__ import annotations

import numpy as np
import pytest

from w2v_cli import batches as B
from w2v_cli import checkpoint
from w2v_cli.config import Config
from w2v_cli.dataset import encode
from w2v_cli.train import train

from conftest import planted_sentences


def _corpus(n_sentences=300, seed=0):
    return encode(planted_sentences(n_sentences=n_sentences, seed=seed), min_count=1)


def _same_chunks(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x.epoch, x.index, x.count) == (y.epoch, y.index, y.count)
        for name in ("centers", "items", "n_ctx", "length"):
            np.testing.assert_array_equal(getattr(x.examples, name), getattr(y.examples, name))
        np.testing.assert_array_equal(x.order, y.order)


def test_chunk_bounds_cut_whole_sentences():
    offsets = np.array([0, 3, 5, 9, 10, 14])
    assert B.chunk_bounds(offsets, 100) == [(0, 5)]
    # targets 4 and 8 tokens: the first sentence starting at or after each.
    assert B.chunk_bounds(offsets, 4) == [(0, 2), (2, 3), (3, 5)]
    assert B.chunk_bounds(offsets, 1) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]


def test_one_chunk_is_the_whole_corpus_draw_then_shuffle():
    ds = _corpus()
    config = Config(chunk_tokens=10 ** 9)
    (chunk,) = B.epoch_chunks(ds.ids, ds.offsets, ds.vocab.counts, config,
                              np.random.default_rng(3), epochs=1)
    rng = np.random.default_rng(3)
    ex = B.draw_examples(ds.ids, ds.offsets, ds.vocab.counts, config, rng)
    order = rng.permutation(len(ex))
    np.testing.assert_array_equal(chunk.examples.items, ex.items)
    np.testing.assert_array_equal(chunk.order, order)


def test_chunks_cover_every_sentence_once_without_subsampling():
    ds = _corpus()
    config = Config(chunk_tokens=500, subsample=0)
    chunks = list(B.epoch_chunks(ds.ids, ds.offsets, ds.vocab.counts, config,
                                 np.random.default_rng(0), epochs=2))
    per_epoch = len(B.chunk_bounds(ds.offsets, 500))
    assert per_epoch > 1 and len(chunks) == 2 * per_epoch
    for epoch in (1, 2):
        centers = np.concatenate([c.examples.centers for c in chunks if c.epoch == epoch])
        np.testing.assert_array_equal(np.sort(centers), np.sort(ds.ids))  # all sentences >= 2


def test_sample_once_reuses_examples_and_reshuffles():
    ds = _corpus()
    config = Config(chunk_tokens=700, sample_once=True)
    chunks = list(B.epoch_chunks(ds.ids, ds.offsets, ds.vocab.counts, config,
                                 np.random.default_rng(0), epochs=2))
    half = len(chunks) // 2
    for a, b in zip(chunks[:half], chunks[half:]):
        assert a.examples is b.examples
        assert not np.array_equal(a.order, b.order)


def test_prefetch_yields_exactly_the_synchronous_chunks():
    ds = _corpus()
    config = Config(chunk_tokens=400)

    def stream():
        return B.epoch_chunks(ds.ids, ds.offsets, ds.vocab.counts, config,
                              np.random.default_rng(7), epochs=3)

    _same_chunks(list(B.prefetch(stream(), depth=1)), list(stream()))
    _same_chunks(list(B.prefetch(stream(), depth=4)), list(stream()))


def test_prefetch_raises_the_producers_error_and_stops_early():
    def failing():
        yield 1
        raise ValueError("boom")

    it = B.prefetch(failing())
    assert next(it) == 1
    with pytest.raises(ValueError, match="boom"):
        next(it)

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    it = B.prefetch(endless(), depth=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # joins the thread: nothing more is produced afterwards
    n = len(produced)
    assert n <= 3 + 2 + 1
    assert len(produced) == n


def _train(tmp_path, name, ds, **kw):
    config = Config(workdir=str(tmp_path / name), embed_size=8, epochs=2, seed=5,
                    device="cpu", **kw)
    record = train(config, ds)
    return record, checkpoint.load_tables(config.workdir_path, len(ds.vocab))


def test_same_seed_same_vectors_with_prefetch_and_without(tmp_path):
    ds = _corpus(200)
    r1, t1 = _train(tmp_path, "a", ds, batch_size=64)
    r2, t2 = _train(tmp_path, "b", ds, batch_size=64)
    r3, t3 = _train(tmp_path, "c", ds, batch_size=64, prefetch=False)
    for key in ("center", "context"):
        np.testing.assert_array_equal(t1[key], t2[key])
        np.testing.assert_array_equal(t1[key], t3[key])
    assert r1["final"]["loss"] == r3["final"]["loss"]


def test_sparse_and_dense_gradients_agree_when_every_row_is_touched(tmp_path):
    # Four words, one batch per epoch: every word is a center and an item in every step, so
    # lazy adam (rows touched) and dense adam (all rows) make the same updates.
    sentences = ["a b c d", "b c d a", "c d a b", "d a b c"] * 10
    ds = encode(sentences, min_count=1)
    kw = dict(batch_size=1000, subsample=0, window=2, negatives=1, lr=0.05)
    rs, ts = _train(tmp_path, "sparse", ds, sparse_grad=True, **kw)
    rd, td = _train(tmp_path, "dense", ds, sparse_grad=False, **kw)
    for key in ("center", "context"):
        assert not np.allclose(ts[key][1:], 0)
        np.testing.assert_allclose(ts[key], td[key], rtol=1e-4, atol=1e-6)
    for es, ed in zip(rs["epochs"], rd["epochs"]):
        assert es["loss"] == pytest.approx(ed["loss"], rel=1e-5)


def test_skip_gram_scores_are_center_dot_item():
    from w2v_cli.backend import mxnet
    from w2v_cli.model import build_net, frontend, skip_gram

    mx = mxnet()
    for sparse in (False, True):
        with frontend(sparse):
            net = build_net(10, 4, mx.cpu(), sparse)
            xp = mx.nd if sparse else mx.np
            center = np.array([[1], [2]], dtype=np.int32)
            items = np.array([[3, 4, 0], [5, 1, 2]], dtype=np.int32)
            pred = skip_gram(xp.array(center, dtype="int32"), xp.array(items, dtype="int32"),
                             net[0], net[1]).asnumpy()
            v = net[0].weight.data().asnumpy()
            u = net[1].weight.data().asnumpy()
        want = np.einsum("be,ble->bl", v[center[:, 0]], u[items])
        np.testing.assert_allclose(pred.reshape(2, 3), want, rtol=1e-5)


def test_sparse_run_survives_a_callback_that_reads_the_checkpoint(tmp_path):
    # Loading tables calls backend.mxnet(), which turns numpy mode on; the sparse run must
    # keep its own front end around its steps regardless.
    ds = _corpus(100)
    config = Config(workdir=str(tmp_path / "w"), embed_size=8, epochs=2, batch_size=64,
                    device="cpu", sparse_grad=True)
    seen = []

    def on_progress(p):
        if p.epoch_done:
            seen.append(checkpoint.load_tables(config.workdir_path, len(ds.vocab))["center"])

    record = train(config, ds, on_progress)
    assert [e["epoch"] for e in record["epochs"]] == [1, 2] and len(seen) == 2
    assert not np.array_equal(seen[0], seen[1])


def test_bucketed_order_is_a_permutation_with_one_length_per_full_batch():
    rng = np.random.default_rng(0)
    length = rng.integers(1, 6, size=1003) * 6
    order = B.bucketed_order(length, 100, rng)
    np.testing.assert_array_equal(np.sort(order), np.arange(1003))
    full = length[order[:1000]].reshape(10, 100)
    # each full batch is cut from a length-sorted sequence: at most two lengths meet in one
    assert all(len(set(row)) <= 2 for row in full)
    assert sum(len(set(row)) == 1 for row in full) >= 6
    assert not np.all(np.diff(full[:, 0]) >= 0)  # the batches were shuffled


def test_an_error_mid_training_stops_the_prefetch_thread(tmp_path):
    import threading

    ds = _corpus(200)
    config = Config(workdir=str(tmp_path / "w"), embed_size=8, epochs=3, batch_size=64,
                    device="cpu", chunk_tokens=300)

    def on_progress(p):
        if p.epoch_done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, ds, on_progress)
    assert not [t for t in threading.enumerate() if t.name == "w2v-prefetch"]
