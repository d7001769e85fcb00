import dataclasses
import json

import numpy as np
import pytest

from w2v_cli import params
from w2v_cli.backend import mxnet
from w2v_cli.config import Config
from w2v_cli.errors import ModelError, UsageError
from w2v_cli.model import build_net, masked_loss, skip_gram
from w2v_cli.train import for_devices, train
from w2v_cli.vectors import Vectors

from conftest import encode, planted_sentences

mx = mxnet()
mnp, npx = mx.np, mx.npx


def test_masked_loss_matches_the_chapter_example():
    pred = mnp.array([[1.1, -2.2, 3.3, -4.4]] * 2)
    label = mnp.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    mask = mnp.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert np.allclose(masked_loss(pred, label, mask).asnumpy(), [0.9352, 1.8462], atol=1e-4)


def test_embedding_and_skip_gram_shapes_match_the_chapter():
    net = build_net(20, 4, mx.cpu())
    assert net[0](mnp.array([[1, 2, 3], [4, 5, 6]])).shape == (2, 3, 4)
    out = skip_gram(mnp.ones((2, 1)), mnp.ones((2, 4)), net[0], net[1])
    assert out.shape == (2, 1, 4)
    # it is the dot product of each center vector with each item vector
    v = net[0].weight.data().asnumpy()[1]
    u = net[1].weight.data().asnumpy()[1]
    assert np.allclose(out.asnumpy(), np.full((2, 1, 4), v @ u), atol=1e-6)


def _planted_dataset():
    return encode(planted_sentences(), min_count=1)


def _config(tmp_path, **kw):
    base = dict(workdir=str(tmp_path), epochs=3, batch_size=64, embed_size=16, window=2,
                negatives=3, subsample=0.0, lr=0.01, seed=1, device="cpu", log_interval=10)
    base.update(kw)
    return Config(**base)


def test_training_recovers_planted_clusters_and_the_loss_falls(tmp_path):
    ds = _planted_dataset()
    events = []
    record = train(_config(tmp_path), ds, on_progress=events.append)
    losses = [e["loss"] for e in record["epochs"]]
    assert losses[-1] < losses[0] < 0.7  # below log(2): better than chance from epoch 1
    assert any(not e.epoch_done for e in events) and events[-1].epoch_done
    vectors = Vectors.load(tmp_path)
    words = vectors.vocab.tokens[1:]
    hits = sum(vectors.most_similar(w, 1)[0][0][:2] == w[:2] for w in words)
    assert hits / len(words) >= 0.9, hits


def test_same_seed_gives_the_same_vectors_and_another_seed_does_not(tmp_path):
    ds = _planted_dataset()
    tables = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        train(_config(tmp_path / name, epochs=1, seed=seed), ds)
        tables.append(params.load_tables(tmp_path / name, len(ds.vocab))["center"])
    assert np.array_equal(tables[0], tables[1])
    assert not np.allclose(tables[0], tables[2])


def test_params_and_run_record_round_trip(tmp_path):
    ds = _planted_dataset()
    cfg = _config(tmp_path, epochs=2, sample_once=True)
    record = train(cfg, ds)
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["format"] == "w2v-run" and saved["complete"] is True
    # the run saves what it chose for the defaults: adam for skip-gram with negative
    # sampling, on one CPU device sparse gradients, and noise groups in batches of one row
    # length
    ran = dataclasses.replace(cfg, optimizer="adam", sparse_grad=True, noise_group=8,
                              bucket=True)
    assert saved["config"] == ran.to_dict() and Config.from_dict(saved["config"]) == ran
    assert [e["epoch"] for e in saved["epochs"]] == [1, 2]
    assert saved["final"] == record["final"] and saved["device"] == "cpu(0)"
    net = build_net(len(ds.vocab), 16, mx.cpu())
    net.load_parameters(str(tmp_path / "model.params"), ctx=mx.cpu())
    tables = params.load_tables(tmp_path, len(ds.vocab))
    assert np.allclose(net[0].weight.data().asnumpy(), tables["center"])
    assert np.allclose(net[1].weight.data().asnumpy(), tables["context"])


def test_defaults_decided_for_the_devices_sparse_on_one_cpu_device():
    one, two = [mx.cpu()], [mx.cpu(0), mx.cpu(1)]

    def decided(devices, **kw):
        return for_devices(Config(**kw), devices).sparse_grad

    assert decided(one) is True
    assert decided(two) is False
    assert decided(one, kvstore="dist_sync") is True  # row-sparse tables on the servers
    assert decided([mx.gpu(0)], kvstore="dist_sync") is False
    assert decided(one, sparse_grad=False) is False
    assert decided(one, sparse_grad=True) is True
    assert decided(one, noise_group=4) is True

    def grouping(devices, **kw):
        c = for_devices(Config(**kw), devices)
        return c.noise_group, c.bucket

    # noise groups in batches of one row length where they apply, hs in buckets too, else
    # the chapter's batches; several devices split by groups: the same defaults
    assert grouping(one) == (8, True)
    assert grouping(two) == (8, True)
    assert grouping(two, loss="hs") == (0, True)
    assert grouping(one, kvstore="dist_sync") == (8, True)  # a worker trains on one device
    assert grouping([mx.gpu(0)], kvstore="dist_sync") == (8, True)
    assert grouping(one, model="cbow") == (0, False)
    assert grouping(one, loss="hs") == (0, True)  # nothing left to pad but the paths
    assert grouping(one, model="cbow", loss="hs") == (0, True)
    assert grouping(one, loss="hs", bucket=False) == (0, False)
    assert grouping(one, noise_group=0) == (0, False)
    assert grouping(one, noise_group=0, bucket=True) == (0, True)
    assert grouping(one, bucket=False) == (8, False)
    assert grouping(one, noise_group=4) == (4, True)


def test_params_from_another_vocabulary_are_refused(tmp_path):
    ds = _planted_dataset()
    train(_config(tmp_path, epochs=1), ds)
    with pytest.raises(ModelError, match="different run"):
        params.load_tables(tmp_path, len(ds.vocab) + 1)


def test_vectors_nearest_excludes_query_and_unk_and_checks_k():
    from w2v_cli.vocab import Vocab
    vocab = Vocab(["<unk>", "a", "b", "c"], np.array([0, 3, 2, 1]))
    m = np.array([[1, 0], [1, 0], [0.9, 0.1], [-1, 0]], dtype=np.float32)
    v = Vectors(vocab, m)
    assert [t for t, _ in v.most_similar("a", 2)] == ["b", "c"]
    assert v.most_similar("a", 1)[0][1] == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    with pytest.raises(UsageError, match="between 1 and 2"):
        v.most_similar("a", 3)
    with pytest.raises(UsageError, match="close matches: a"):
        v.most_similar("aa", 1)


def test_train_refuses_bad_settings(tmp_path):
    for bad in (dict(epochs=0), dict(lr=0.0), dict(window=0), dict(batch_size=0)):
        with pytest.raises(UsageError):
            train(_config(tmp_path, **bad), _planted_dataset())


def test_resume_settings_come_from_the_checkpoint_with_the_given_options_on_top(tmp_path):
    from w2v_cli.train import settings_for

    train(_config(tmp_path, epochs=1, embed_size=12), _planted_dataset())
    asked = Config(workdir=str(tmp_path), epochs=4)  # defaults elsewhere: embed_size 100
    config = settings_for(asked, {"epochs": 4}, resume=True)
    assert (config.epochs, config.embed_size, config.window) == (4, 12, 2)
    # a fresh run on a complete one needs nothing; the settings are the ones asked
    assert settings_for(asked, {"epochs": 4}) == asked


@pytest.mark.parametrize("sparse", [False, True])
def test_progress_reports_training_time_without_its_own_and_the_current_table(tmp_path, sparse):
    import time
    ds = _planted_dataset()
    seen = []

    def slow(p):
        if not p.epoch_done:
            seen.append((p.batch, p.batches, p.center()))
            time.sleep(0.2)  # a slow callback: not training time

    start = time.perf_counter()
    record = train(_config(tmp_path, epochs=1, sparse_grad=sparse), ds, on_progress=slow)
    wall = time.perf_counter() - start
    assert len(seen) >= 3
    assert record["epochs"][0]["seconds"] < wall - 0.2 * len(seen) + 0.05
    tables = [table for _, _, table in seen]
    assert tables[0].shape == (len(ds.vocab), 16) and tables[0].dtype == np.float32
    assert not np.array_equal(tables[0], tables[1])  # it is read anew at each report
    batch, batches, last = seen[-1]
    assert batch == batches  # the report after the last step holds the trained table
    np.testing.assert_array_equal(last, Vectors.load(tmp_path).matrix)
