"""Several devices on one machine: each batch split across contexts gives one device's result."""

import numpy as np
import pytest

from w2v_cli import params, train
from w2v_cli.backend import devices, mxnet
from w2v_cli.batches import (CbowNegatives, CbowPaths, Layout, OwnNegatives, Padded,
                              SharedNegatives, SkipGramPaths)
from w2v_cli.examples import Rows
from w2v_cli.config import Config
from w2v_cli.errors import BackendError, UsageError
from w2v_cli.model import build_net

from conftest import encode, planted_sentences


def test_device_lists():
    mx = mxnet()
    assert devices("cpu:0,1,2") == [mx.cpu(0), mx.cpu(1), mx.cpu(2)]
    assert devices("cpu") == [mx.cpu()]
    with pytest.raises(UsageError, match="twice"):
        devices("cpu:1,1")
    with pytest.raises(UsageError):
        devices("tpu:0,1")
    if mx.context.num_gpus() < 2:
        with pytest.raises(BackendError, match="GPU"):
            devices("gpu:0,1")


COUNTS = np.array([0] + list(range(40, 21, -1)))  # 20 ids, distinct counts: a Huffman tree


def _objectives():
    return {"own negatives": OwnNegatives(),
            "noise groups of 2": SharedNegatives(COUNTS, 2, 3, 2),
            "skip-gram paths": SkipGramPaths(COUNTS),
            "cbow negatives": CbowNegatives(COUNTS, 2),
            "cbow paths": CbowPaths(COUNTS)}


@pytest.mark.parametrize("name", list(_objectives()))
def test_split_batch_gives_the_whole_batch_gradient(name):
    """Every one-part layout, split by groups over 2 and 7 devices (7: more devices than
    groups, so some take a zero-weighted one), gives one device's loss and gradients of both
    tables."""
    mx = mxnet()
    rng = np.random.default_rng(0)
    n_ctx = np.array([2, 1, 2, 2, 1])
    rows = Rows(rng.integers(1, 20, 5).astype(np.int32),
                rng.integers(1, 20, (5, 6)).astype(np.int32), n_ctx, 3 * n_ctx)
    b = Layout(Padded(), _objectives()[name]).batch(rows, np.random.default_rng(1))
    assert b.words is None  # one part
    grads, totals = [], []
    for ctxs in ([mx.cpu(0)], [mx.cpu(0), mx.cpu(1)], [mx.cpu(i) for i in range(7)]):
        mx.random.seed(1)
        net = build_net(20, 4, ctxs)
        losses = train.forward_backward(net, b, ctxs)
        assert len(losses) == len(ctxs)
        totals.append(sum(float(x) for x in losses))
        grads.append([sum(net[t].weight.grad(c).asnumpy() for c in ctxs) for t in (0, 1)])
    for total, (g0, g1) in zip(totals[1:], grads[1:]):
        assert total == pytest.approx(totals[0], rel=1e-6)
        np.testing.assert_allclose(g0, grads[0][0], atol=1e-6)
        np.testing.assert_allclose(g1, grads[0][1], atol=1e-6)
    assert np.abs(grads[0][0]).sum() > 0 and np.abs(grads[0][1]).sum() > 0


def test_training_on_three_cpu_contexts_matches_one(tmp_path):
    ds = encode(planted_sentences(n_sentences=300), min_count=1)  # 2400 centers
    results = {}
    for spec in ("cpu", "cpu:0,1,2"):
        # 2400 = 2 * 1199 + 2: the last batch has fewer rows than devices
        config = Config(workdir=str(tmp_path / spec), device=spec, epochs=2, batch_size=1199,
                        embed_size=8, window=2, negatives=2, subsample=0, lr=0.05,
                        sparse_grad=False, noise_group=0)  # as several devices train: dense,
                        # each context with its own noise words
        record = train.train(config, ds)
        tables = params.load_tables(config.workdir_path, len(ds.vocab))
        results[spec] = ([e["loss"] for e in record["epochs"]], tables, record)
    (loss1, t1, _), (loss3, t3, r3) = results["cpu"], results["cpu:0,1,2"]
    assert r3["device"] == "cpu(0),cpu(1),cpu(2)"
    assert [e["tokens"] for e in r3["epochs"]] == [2400, 2400]
    np.testing.assert_allclose(loss3, loss1, rtol=1e-5)
    assert loss1[1] < loss1[0]
    for name in ("center", "context"):
        np.testing.assert_allclose(t3[name], t1[name], atol=1e-5)


@pytest.mark.parametrize("settings", [
    dict(noise_group=None),  # skip-gram's default noise groups, in buckets
    dict(model="cbow", loss="hs"),
    dict(loss="hs"),  # plain SGD with the inner nodes' cap
], ids=["noise-groups", "cbow-hs", "skipgram-hs-sgd"])
def test_every_objective_trains_on_three_cpu_contexts_as_on_one(tmp_path, settings):
    ds = encode(planted_sentences(n_sentences=300), min_count=1)
    results = {}
    for spec in ("cpu", "cpu:0,1,2"):
        config = Config(workdir=str(tmp_path / spec), device=spec, epochs=2, batch_size=301,
                        embed_size=8, window=2, subsample=0, sparse_grad=False, **settings)
        record = train.train(config, ds)
        tables = params.load_tables(config.workdir_path, len(ds.vocab))
        results[spec] = ([e["loss"] for e in record["epochs"]], tables, record["config"])
    (loss1, t1, c1), (loss3, t3, c3) = results["cpu"], results["cpu:0,1,2"]
    assert c3 == {**c1, "workdir": c3["workdir"], "device": "cpu:0,1,2"}  # the same defaults
    np.testing.assert_allclose(loss3, loss1, rtol=1e-5)
    assert loss1[1] < loss1[0]
    for name in ("center", "context"):
        np.testing.assert_allclose(t3[name], t1[name], atol=1e-5)
