"""Resume and the workdir lock with scale's pieces: chunked epochs, several devices, dist workers."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import encode, planted_sentences
from w2v_cli import dataset, distributed, lock, train, params
from w2v_cli.cli import cli
from w2v_cli.config import Config
from w2v_cli.stream import EpochStream
from w2v_cli.errors import Interrupted, LockError, ResumeError

# 960 tokens; chunks of 200 tokens: 5 chunks an epoch, each sampled on its own
SETTINGS = dict(epochs=3, batch_size=160, embed_size=8, window=2, negatives=2, subsample=0.0,
                seed=7, log_interval=1, chunk_tokens=200)


def _prepare(wd):
    dataset.save(encode(planted_sentences(n_sentences=120), min_count=1), wd)
    ds = dataset.load(wd)  # read-only memory maps, as `w2v train` gets them
    assert not ds.ids.flags.writeable and not ds.offsets.flags.writeable
    return ds


def _interrupt_at(epoch, batch):
    def on_progress(p):
        if (p.epoch, p.batch) == (epoch, batch) and not p.epoch_done:
            os.kill(os.getpid(), signal.SIGINT)
    return on_progress


@pytest.mark.parametrize("device", ["cpu", "cpu:0,1"])
@pytest.mark.parametrize("sample_once", [False, True])
def test_resume_inside_a_chunked_epoch_gives_the_uninterrupted_parameters(tmp_path, device,
                                                                         sample_once):
    config = dict(SETTINGS, device=device, sample_once=sample_once)
    a, b = tmp_path / "a", tmp_path / "b"
    ds_a, ds_b = _prepare(a), _prepare(b)
    stream = EpochStream(ds_a, ds_a.vocab.counts, Config(**config), np.random.default_rng(0))
    assert stream.n_chunks == 5
    whole = train.train(Config(workdir=str(a), **config), ds_a)
    assert whole["device"] == ("cpu(0)" if device == "cpu" else "cpu(0),cpu(1)")

    with pytest.raises(Interrupted):
        train.train(Config(workdir=str(b), **config), ds_b, on_progress=_interrupt_at(2, 3))
    assert (b / "checkpoints" / "step-00001-00000003" / "state.json").is_file()
    resumed = train.train(Config(workdir=str(b), **config), ds_b, resume=True)

    ta, tb = (params.load_tables(wd, len(ds_a.vocab)) for wd in (a, b))
    assert np.array_equal(ta["center"], tb["center"])
    assert np.array_equal(ta["context"], tb["context"])
    assert [e["tokens"] for e in resumed["epochs"]] == [e["tokens"] for e in whole["epochs"]]
    assert [e["loss"] for e in resumed["epochs"]] == pytest.approx(
        [e["loss"] for e in whole["epochs"]], rel=1e-6)
    assert resumed["resumed"][0] == {"epoch": 1, "batch": 3, "notes": []}


def test_sample_once_draws_the_same_chunk_examples_every_epoch_and_after_a_resume():
    ds = encode(planted_sentences(n_sentences=120), min_count=1)
    config = Config(**dict(SETTINGS, sample_once=True, chunk_tokens=10 ** 6))  # one chunk

    def rows(rng, cache):
        stream = EpochStream(ds, ds.vocab.counts, config, rng, cache)
        return sorted((int(b.center[r]), tuple(b.items[r, :int(b.mask[r].sum())]))
                      for b in stream for r in range(b.center.shape[0]))

    cache: dict = {}
    first = rows(np.random.default_rng(1), cache)
    # a fresh process (empty cache) at another RNG state: the same examples, another order
    assert rows(np.random.default_rng(99), {}) == first
    assert rows(np.random.default_rng(5), cache) == first


def test_a_dist_run_refuses_resume_before_joining_the_parameter_server(tmp_path, monkeypatch):
    for v in ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT", "DMLC_NUM_SERVER",
              "DMLC_NUM_WORKER"):
        monkeypatch.delenv(v, raising=False)  # joining would fail with a UsageError instead
    ds = _prepare(tmp_path)
    with pytest.raises(ResumeError, match="--resume does not work with --kvstore dist_sync"):
        train.train(Config(workdir=str(tmp_path), kvstore="dist_sync", **SETTINGS), ds,
                    resume=True)


@pytest.mark.parametrize("rank", [0, 1])
def test_only_rank_0_of_a_dist_job_locks_the_workdir(tmp_path, monkeypatch, rank):
    ds = _prepare(tmp_path)
    held = {}

    def fake_worker(config):
        return distributed.Worker(rank, 2, kv=object(), kvstore=config.kvstore)

    class Probe:
        def __init__(self, *args):
            pass

        def train(self, resume, stop):
            # While this worker trains, can another process take the workdir lock?
            try:
                lock.acquire(tmp_path, "probe").release()
                held["locked"] = False
            except LockError:
                held["locked"] = True
            return {}

    monkeypatch.setattr(distributed, "make_worker", fake_worker)
    monkeypatch.setattr(train, "Run", Probe)
    train.train(Config(workdir=str(tmp_path), kvstore="dist_sync", **SETTINGS), ds)
    assert held == {"locked": rank == 0}
    lock.acquire(tmp_path, "after").release()  # rank 0 let it go


def test_cli_dist_workers_take_no_lock_but_a_local_train_does(tmp_path, monkeypatch):
    _prepare(tmp_path)
    for v in ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT", "DMLC_NUM_SERVER",
              "DMLC_NUM_WORKER"):
        monkeypatch.delenv(v, raising=False)
    runner = CliRunner()
    with lock.acquire(tmp_path, "another worker"):
        # a dist worker goes past the lock that another worker of the job holds (and then
        # stops here only because no launcher set up the parameter server)
        result = runner.invoke(cli, ["train", "--workdir", str(tmp_path), "--kvstore",
                                     "dist_sync"])
        assert result.exit_code == 2 and "w2v launch -n WORKERS" in result.output
        result = runner.invoke(cli, ["train", "--workdir", str(tmp_path)])
        assert result.exit_code == 8 and "is in use by another w2v process" in result.output


def test_resuming_with_other_chunks_is_refused(tmp_path):
    ds = _prepare(tmp_path)
    with pytest.raises(Interrupted):
        train.train(Config(workdir=str(tmp_path), device="cpu", **SETTINGS), ds,
                    on_progress=_interrupt_at(1, 2))
    other = dict(SETTINGS, chunk_tokens=300)
    with pytest.raises(ResumeError, match="--chunk-tokens is 300 but the checkpoint has 200"):
        train.train(Config(workdir=str(tmp_path), device="cpu", **other), ds, resume=True)
