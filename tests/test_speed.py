"""The speed paths compute what the plain paths compute: chunks, prefetch, sparse gradients."""

from __future__ import annotations

import numpy as np
import pytest

from types import SimpleNamespace

from w2v_cli import params
from w2v_cli import stream as B
from w2v_cli.config import Config, resolved
from w2v_cli.examples import draw_examples
from w2v_cli.train import train

from conftest import encode, planted_sentences


def _corpus(n_sentences=300, seed=0):
    return encode(planted_sentences(n_sentences=n_sentences, seed=seed), min_count=1)


def _stream(ds, config, rng, cache=None):
    return B.EpochStream(ds, ds.vocab.counts, config, rng, cache)


def _epochs(ds, config, seed, n_epochs, ahead, depth=1):
    """Every epoch's (start state, end state, batches) through one B.Epochs."""
    rng = np.random.default_rng(seed)
    out = []
    epochs = B.Epochs(lambda: _stream(ds, config, rng), n_epochs, ahead=ahead, depth=depth)
    for stream, batch_iter in epochs:
        got = list(batch_iter)
        out.append((stream.start_state, stream.end_state, got))
    return out


def _prefetch_threads():
    import threading
    return [t for t in threading.enumerate() if t.name == "w2v-prefetch"]


def _same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for name in ("center", "items", "n_ctx", "length"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name))


def test_chunk_bounds_cut_whole_sentences():
    offsets = np.array([0, 3, 5, 9, 10, 14])
    assert B.chunk_bounds(offsets, 100).tolist() == [0, 5]
    # targets 0, 4, 8 and 12 tokens: the first sentence starting at or after each.
    assert B.chunk_bounds(offsets, 4).tolist() == [0, 2, 3, 5]
    assert B.chunk_bounds(offsets, 1).tolist() == [0, 1, 2, 3, 4, 5]


def test_one_chunk_is_the_whole_corpus_draw_then_shuffle():
    ds = _corpus()
    config = resolved(Config(chunk_tokens=10 ** 9))
    (chunk,) = _stream(ds, config, np.random.default_rng(3)).chunks()
    rng = np.random.default_rng(3)
    start = rng.bit_generator.state
    ex = draw_examples(ds.ids, ds.offsets, ds.vocab.counts, config, rng)
    order = rng.permutation(len(ex))
    np.testing.assert_array_equal(chunk.examples.items, ex.items)
    np.testing.assert_array_equal(chunk.order, order)
    assert chunk.start_state == start and chunk.end_state == rng.bit_generator.state


def test_chunks_cover_every_sentence_once_without_subsampling():
    ds = _corpus()
    config = Config(chunk_tokens=500, subsample=0, batch_size=64)
    assert _stream(ds, config, np.random.default_rng(0)).n_chunks > 1
    epochs = _epochs(ds, config, 0, 2, ahead=True)
    for _, _, got in epochs:
        centers = np.concatenate([b.center for b in got])
        np.testing.assert_array_equal(np.sort(centers), np.sort(ds.ids))  # all sentences >= 2
    assert not np.array_equal(epochs[0][2][0].center, epochs[1][2][0].center)


def test_sample_once_reuses_examples_and_reshuffles():
    ds = _corpus()
    config = resolved(Config(chunk_tokens=700, sample_once=True, batch_size=64))
    assert _stream(ds, config, np.random.default_rng(0)).n_chunks > 1
    (_, _, one), (_, _, two) = _epochs(ds, config, 0, 2, ahead=True)

    def rows(got):
        return sorted((int(b.center[r]), tuple(b.items[r, :int(b.mask[r].sum())]))
                      for b in got for r in range(b.center.shape[0]))

    assert rows(one) == rows(two)
    assert not np.array_equal(one[0].center, two[0].center)


@pytest.mark.parametrize("bucket", [False, True])
def test_prefetch_yields_exactly_the_synchronous_batches(bucket):
    ds = _corpus()
    config = resolved(Config(chunk_tokens=400, batch_size=64, bucket=bucket))
    plain = _epochs(ds, config, 7, 3, ahead=False)
    for depth in (1, 4):
        ahead = _epochs(ds, config, 7, 3, ahead=True, depth=depth)
        for (s1, e1, b1), (s2, e2, b2) in zip(plain, ahead):
            # the RNG states the checkpoints save: those of each epoch's start and end,
            # not wherever the producer thread has got to
            assert s1 == s2 and e1 == e2
            _same_batches(b1, b2)
    # each epoch starts where the previous ended, and that is where one stream alone ends
    assert [p[0] for p in plain[1:]] == [p[1] for p in plain[:-1]]
    rng = np.random.default_rng(7)
    list(_stream(ds, config, rng))
    assert plain[0][1] == rng.bit_generator.state


def test_bucket_batches_hold_one_row_length_and_every_center_once():
    ds = _corpus()
    config = Config(chunk_tokens=2000, batch_size=16, bucket=True, subsample=0)
    assert _stream(ds, config, None).n_chunks > 1
    got = list(_stream(ds, config, np.random.default_rng(2)))
    centers = np.sort(np.concatenate([b.center for b in got]))
    np.testing.assert_array_equal(centers, np.sort(ds.ids))
    # a full batch is cut from a length-sorted chunk: at most two lengths meet in one, and
    # most batches have no padding at all
    lengths = [set(b.mask.sum(axis=1).tolist()) for b in got[:-1]]
    assert all(len(x) <= 2 for x in lengths)
    assert sum(len(x) == 1 for x in lengths) >= len(lengths) // 2
    assert sum(b.mask.size - b.mask.sum() for b in got[:-1]) < 0.05 * sum(
        b.mask.size for b in got[:-1])


def test_prefetch_raises_the_producers_error_and_stops_early():
    def failing():
        yield 1
        raise ValueError("boom")

    it = B.Prefetch(failing())
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

    it = B.Prefetch(endless(), depth=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # joins the thread: nothing more is produced afterwards
    n = len(produced)
    assert n <= 3 + 2 + 1
    assert len(produced) == n


def test_prefetch_stops_waiting_when_asked():
    import threading

    release = threading.Event()

    def slow():
        yield 1
        release.wait(30)  # the second item is not ready until the test says so
        yield 2

    asked = []
    it = B.Prefetch(slow(), should_stop=lambda: asked.append(1) or len(asked) >= 3)
    assert next(it) == 1
    with pytest.raises(B.StopWaiting):
        next(it)  # returns without waiting for the item being produced
    assert len(asked) == 3  # asked while waiting, until it said stop
    assert not release.is_set()
    release.set()


def test_a_stop_while_the_first_chunk_is_sampled_ends_the_run_at_once(tmp_path, monkeypatch):
    """Ctrl-C before any batch is ready (a large chunk being sampled): exit 130 now, not
    after the chunk, and nothing written as a checkpoint."""
    from w2v_cli import dataset, interrupt
    from w2v_cli.errors import Interrupted

    import threading

    ds = _corpus()
    dataset.save(ds, tmp_path)
    seen = threading.Event()

    class Flag(interrupt.StopFlag):
        def is_set(self):
            if self.signum is not None:
                seen.set()
            return super().is_set()

    stop = Flag()
    real = B.EpochStream._draw

    def slow_draw(self, c, probs):
        stop.set()  # the signal arrives while this chunk is drawn...
        assert seen.wait(10)  # ...and the draw lasts until the trainer has seen it
        return real(self, c, probs)
    monkeypatch.setattr(B.EpochStream, "_draw", slow_draw)
    config = Config(workdir=str(tmp_path), embed_size=8, epochs=1, device="cpu")
    with pytest.raises(Interrupted, match="before the first step: nothing was trained") as e:
        train(config, ds, stop=stop)
    assert e.value.exit_code == 130
    assert not list(tmp_path.glob("checkpoints/*/state.json"))


@pytest.mark.parametrize("at, where", [(3, "epoch 2/2, batch 2/"), (0, "the end of epoch 1/2")])
def test_a_stop_while_waiting_checkpoints_what_stands_and_resumes_exactly(tmp_path, monkeypatch,
                                                                         at, where):
    """Ctrl-C while the trainer waits for the sampler, inside epoch 2 (batch 2 trained, the
    third drawn as the next step's) or before its first batch: the run stops there, and
    resuming gives the uninterrupted run's tables."""
    from w2v_cli import dataset, interrupt
    from w2v_cli import train as train_mod
    from w2v_cli.errors import Interrupted

    ds = _corpus()
    settings = dict(embed_size=8, epochs=2, batch_size=64, device="cpu", seed=3, subsample=0.0)
    stop, real = interrupt.StopFlag(), train_mod.layout_for

    def layout_for(*args, **kwargs):
        layout = real(*args, **kwargs)
        batches = layout.epoch

        def epoch(e, rows):  # the sampler "takes long" before epoch 2's batch ``at``
            for n, b in enumerate(batches(e, rows)):
                if (e, n) == (2, at):
                    stop.set()
                    raise B.StopWaiting
                yield b
        layout.epoch = epoch
        return layout
    tables = {}
    for name in ("whole", "cut"):
        wd = tmp_path / name
        dataset.save(ds, wd)
        config = Config(workdir=str(wd), **settings)
        if name == "cut":
            with monkeypatch.context() as m:
                m.setattr(train_mod, "layout_for", layout_for)
                with pytest.raises(Interrupted, match=f"at {where}") as e:
                    train(config, ds, stop=stop)
            assert e.value.exit_code == 130
            train(config, ds, resume=True)
        else:
            train(config, ds)
        tables[name] = params.load_tables(wd, len(ds.vocab))
    for table in ("center", "context"):
        assert np.array_equal(tables["whole"][table], tables["cut"][table])


def _train(tmp_path, name, ds, **kw):
    config = Config(workdir=str(tmp_path / name), embed_size=8, epochs=2, seed=5,
                    device="cpu", **kw)
    record = train(config, ds)
    return record, params.load_tables(config.workdir_path, len(ds.vocab))


def test_same_seed_same_vectors(tmp_path):
    # Sampling runs ahead in a thread; the batches are the same as drawn in line
    # (test_prefetch_yields_exactly_the_synchronous_batches), so two runs match exactly.
    ds = _corpus(200)
    r1, t1 = _train(tmp_path, "a", ds, batch_size=64)
    r2, t2 = _train(tmp_path, "b", ds, batch_size=64)
    for key in ("center", "context"):
        np.testing.assert_array_equal(t1[key], t2[key])
    assert r1["final"]["loss"] == r2["final"]["loss"]


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
    from w2v_cli.arrays import scope
    from w2v_cli.backend import mxnet
    from w2v_cli.model import build_net, skip_gram

    mx = mxnet()
    for sparse in (False, True):
        with scope(sparse):
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
            seen.append(params.load_tables(config.workdir_path, len(ds.vocab))["center"])

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


@pytest.mark.parametrize("noise_group", [0, 4])
def test_sparse_run_resumed_inside_an_epoch_gives_the_uninterrupted_parameters(tmp_path,
                                                                            noise_group):
    # Several chunks an epoch, so with prefetch the producer is a chunk (or an epoch) ahead
    # when the checkpoint is written: it must save the epoch's starting RNG state.
    import os
    import signal

    from w2v_cli import dataset
    from w2v_cli.errors import Interrupted

    settings = dict(epochs=3, batch_size=160, embed_size=8, window=2, negatives=2,
                    subsample=0.0, seed=7, log_interval=1, chunk_tokens=200, device="cpu",
                    sparse_grad=True, noise_group=noise_group,
                    group_noise=3)
    runs = {}
    for name in ("whole", "cut"):
        dataset.save(encode(planted_sentences(n_sentences=120), min_count=1),
                     tmp_path / name)
        runs[name] = (Config(workdir=str(tmp_path / name), **settings),
                      dataset.load(tmp_path / name))
    whole = train(*runs["whole"])

    def interrupt(p):
        if (p.epoch, p.batch) == (2, 3) and not p.epoch_done:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted):
        train(*runs["cut"], on_progress=interrupt)
    assert not _prefetch_threads()  # the interrupt closed the stream, and so its thread
    assert (tmp_path / "cut" / "checkpoints" / "step-00001-00000003").is_dir()
    resumed = train(*runs["cut"], resume=True)
    vocab_size = len(runs["whole"][1].vocab)
    ta, tb = (params.load_tables(tmp_path / n, vocab_size) for n in ("whole", "cut"))
    for key in ("center", "context"):
        np.testing.assert_array_equal(ta[key], tb[key])
    assert [e["loss"] for e in resumed["epochs"]] == pytest.approx(
        [e["loss"] for e in whole["epochs"]], rel=1e-6)
    assert resumed["resumed"][0]["batch"] == 3


def test_sparse_grad_refuses_several_devices_not_a_parameter_server(tmp_path):
    from click.testing import CliRunner

    from w2v_cli import dataset
    from w2v_cli.cli import cli
    from w2v_cli.errors import UsageError
    from w2v_cli.config import check

    with pytest.raises(UsageError, match="--sparse-grad works on one device, not --device "
                                         "cpu:0,1"):
        check(Config(sparse_grad=True, device="cpu:0,1"))
    check(Config(sparse_grad=True, kvstore="dist_sync"))  # row-sparse tables on the servers
    check(Config(sparse_grad=False, device="cpu:0,1"))
    dataset.save(_corpus(50), tmp_path)
    result = CliRunner().invoke(cli, ["train", "--sparse-grad", "--device", "cpu:0,1",
                                      "--workdir", str(tmp_path)])
    assert result.exit_code != 0
    assert "Error: --sparse-grad works on one device, not --device cpu:0,1" in result.output
    assert not (tmp_path / "model.params").exists()


def test_a_producer_error_reaches_the_trainer_through_the_thread():
    # A dist worker's shard with no pair to train on: the producer raises while drawing.
    from w2v_cli.errors import DataError

    vocab = encode(["a b c"], min_count=1).vocab
    ids, offsets = np.array([1, 2, 3], dtype=np.int32), np.arange(4, dtype=np.int64)
    config = Config(batch_size=4, subsample=0)
    part = SimpleNamespace(ids=ids, offsets=offsets)
    epochs = B.Epochs(lambda: B.EpochStream(part, vocab.counts, config,
                                            np.random.default_rng(0), steps=2),
                      1, ahead=True)
    with pytest.raises(DataError, match="shard yields no training pairs"):
        for _, batch_iter in epochs:
            list(batch_iter)
    epochs.close()
    assert not _prefetch_threads()


def test_a_fresh_run_draws_while_mxnet_is_imported_and_trains_as_if_it_had_not(
        tmp_path, monkeypatch):
    """train() starts a fresh run's sampler before resolving the devices (which imports
    MXNet in a new process); the run then trains exactly as a Run that starts its own."""
    from w2v_cli import interrupt
    from w2v_cli import train as T

    ds = _corpus(200)
    seen = []
    resolve = T.resolve_devices

    def resolve_devices(spec):
        seen.append(len(_prefetch_threads()))
        return resolve(spec)

    monkeypatch.setattr(T, "resolve_devices", resolve_devices)
    early, t_early = _train(tmp_path, "early", ds, batch_size=64)
    assert seen == [1]  # drawing already

    ctxs = resolve("cpu")
    config = T.for_devices(resolved(Config(workdir=str(tmp_path / "own"), embed_size=8,
                                           epochs=2, seed=5, device="cpu", batch_size=64)), ctxs)
    own = T.Run(config, ds, ctxs, T.Local()).train(False, interrupt.StopFlag())
    t_own = params.load_tables(config.workdir_path, len(ds.vocab))
    for key in ("center", "context"):
        np.testing.assert_array_equal(t_early[key], t_own[key])
    assert early["final"]["loss"] == own["final"]["loss"]
    assert not _prefetch_threads()


def test_a_device_error_stops_the_early_sampler_and_writes_nothing(tmp_path, monkeypatch):
    from w2v_cli import dataset
    from w2v_cli import train as T
    from w2v_cli.errors import BackendError

    ds = _corpus(200)
    wd = tmp_path / "w"
    dataset.save(ds, wd)
    before = sorted(p.name for p in wd.iterdir())

    def no_device(spec):
        raise BackendError("no such device")

    monkeypatch.setattr(T, "resolve_devices", no_device)
    with pytest.raises(BackendError, match="no such device"):
        train(Config(workdir=str(wd), embed_size=8, epochs=2, device="cpu"), ds)
    assert not _prefetch_threads()
    assert sorted(p.name for p in wd.iterdir()) == before
