"""A `train` that cannot run, fails or diverges leaves the finished run's files as they were.

Each test snapshots the working directory (every file, by SHA-1) before the command and
checks it byte for byte afterwards; a finished run must still resume and answer queries.
"""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import encode, planted_sentences
from w2v_cli import fileio, sampling, stream
from w2v_cli import train as train_mod
from w2v_cli.cli import cli
from w2v_cli.config import Config
from w2v_cli.dataset import Dataset
from w2v_cli.errors import DataError

SMALL = ["--epochs", "1", "--batch-size", "256", "--embed-size", "8", "--window", "2",
         "--negatives", "2", "--subsample", "0", "--device", "cpu"]


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> SHA-1 of every file under ``root`` (hidden and temporary ones too)."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run(*args, code: int):
    result = CliRunner().invoke(cli, list(map(str, args)))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def error_line(result) -> str:
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.fixture
def trained(workdir, tmp_path) -> Path:
    corpus = tmp_path / "small.txt"
    corpus.write_text("\n".join(planted_sentences(n_sentences=200)) + "\n", encoding="utf-8")
    run("prepare", "--corpus", corpus, "--min-count", "1", code=0)
    run("train", *SMALL, code=0)
    return workdir


def still_resumes(workdir: Path) -> None:
    run("train", *SMALL, "--resume", "--epochs", "2", code=0)
    assert json.loads((workdir / "run.json").read_text())["complete"] is True


# ------------------------------------------------------------- options that cannot train

@pytest.mark.parametrize("args, says", [
    # sizes that do not fit in memory: refused before anything is allocated or deleted
    (["--window", "1000000"], "--window"),
    # (noise groups draw noise per group, not per context: the chapter's estimator explodes)
    (["--negatives", "1000000", "--noise-group", "0"], "--negatives"),
    (["--negatives", "100000000", "--model", "cbow"], "--negatives"),  # per center
    (["--group-noise", "100000000"], "--group-noise"),
    (["--embed-size", "10000000"], "--embed-size"),
    # values no run can use
    (["--subsample", "nan"], "--subsample"),
    (["--subsample", "inf"], "--subsample"),
    (["--lr", "inf"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--seed", "-1"], "--seed"),
    (["--chunk-tokens", "1"], "--chunk-tokens"),  # pieces too short for any window
])
def test_a_train_that_cannot_run_changes_nothing(trained, args, says):
    before = snapshot(trained)
    result = run("train", *SMALL, *args, code=2)
    assert says in error_line(result)
    assert snapshot(trained) == before
    still_resumes(trained)


@pytest.mark.parametrize("args", [["launch", "-n", "1", "--timeout", "nan", "--", "true"],
                                  ["launch", "-n", "1", "--timeout", "inf", "--", "true"]])
def test_float_options_reject_nan_and_inf(args):
    result = run(*args, code=2)
    assert "--timeout" in error_line(result)


def test_memory_check_names_what_does_not_fit(workdir, trained):
    result = run("train", *SMALL, "--window", "1000000", code=2)
    line = error_line(result)
    assert "of memory" in line and "available" in line


# ------------------------------------------------------------- failures during a new run

def test_a_run_failing_before_its_first_checkpoint_keeps_the_previous_run(trained,
                                                                          monkeypatch):
    before = snapshot(trained)
    calls = []

    def fail_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise DataError("planted failure")
        return real(*args, **kwargs)
    real = train_mod.forward_backward
    with monkeypatch.context() as m:
        m.setattr(train_mod, "forward_backward", fail_on_third)
        result = run("train", *SMALL, "--seed", "7", code=3)
    assert error_line(result) == "Error: planted failure"
    assert snapshot(trained) == before
    still_resumes(trained)


def test_unwritable_checkpoints_leave_the_previous_ones_unchanged(trained, monkeypatch):
    before = snapshot(trained)
    real = fileio.tempfile.mkdtemp

    def refuse_under_checkpoints(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).name == "checkpoints":
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*args, dir=dir, **kwargs)
    with monkeypatch.context() as m:
        m.setattr(fileio.tempfile, "mkdtemp", refuse_under_checkpoints)
        result = run("train", *SMALL, "--seed", "7", code=9)
    assert error_line(result) == (
        f"Error: cannot write {trained / 'checkpoints' / 'step-00001-00000000'}: Permission "
        "denied (the previous step-00001-00000000, if any, is unchanged)")
    assert snapshot(trained) == before
    still_resumes(trained)


def test_a_new_run_replaces_every_checkpoint_of_the_old_one(trained):
    run("train", *SMALL, "--epochs", "3", code=0)
    old = sorted(p.name for p in (trained / "checkpoints").iterdir())
    assert old == ["step-00002-00000000", "step-00003-00000000"]
    run("train", *SMALL, "--seed", "3", code=0)  # one epoch: its name sorts before the old ones
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == ["step-00001-00000000"]
    state = json.loads((trained / "checkpoints" / "step-00001-00000000" / "state.json")
                       .read_text())
    assert state["config"]["seed"] == 3
    run("train", *SMALL, "--seed", "3", "--resume", "--epochs", "2", code=0)


# ------------------------------------------------------------- divergence

def test_a_diverging_run_stops_with_an_error_and_keeps_the_last_good_model(trained):
    before = snapshot(trained)
    result = run("train", *SMALL, "--lr", "1e30", code=12)
    line = error_line(result)
    assert "not finite" in line and "--lr" in line
    assert snapshot(trained) == before
    still_resumes(trained)
    run("similar", "c0w1", "-k", "3", code=0)


def test_one_step_of_a_huge_lr_is_divergence_even_with_a_finite_loss(trained):
    # One batch an epoch: the only loss read is the one before the update, which is finite,
    # but the update leaves rows of ~1e30, whose cosines overflow float32.
    before = snapshot(trained)
    result = run("train", *SMALL, "--batch-size", "100000", "--lr", "1e30", code=12)
    assert "not finite" in error_line(result)
    assert snapshot(trained) == before


def test_vectors_with_non_finite_values_are_refused(trained):
    from w2v_cli.backend import mxnet

    mx = mxnet()
    path = trained / "model.params"
    params = mx.nd.load(str(path))
    for key in params:  # both tables
        table = params[key].asnumpy()
        table[3, 0] = np.nan
        params[key] = mx.nd.array(table)
    mx.nd.save(str(path), params)
    record = json.loads((trained / "run.json").read_text())
    record["params_sha1"] = fileio.sha1_of(path)
    (trained / "run.json").write_text(json.dumps(record))
    for which in ("center", "context"):
        result = run("similar", "c0w1", "--which", which, code=5)
        assert "not finite" in error_line(result)
        assert "-inf" not in result.output


# ------------------------------------------------------------- long sentences

def test_sentences_longer_than_a_chunk_are_cut_at_chunk_multiples():
    offsets = np.array([0, 3, 25, 27, 30, 41], dtype=np.int64)
    # 3..25 (22 tokens) is cut at 5, 10, 15, 20; 30..41 (11) at 35 and 40; the others fit
    got = sampling.cut_long_sentences(offsets, 5)
    assert got.tolist() == [0, 3, 5, 10, 15, 20, 25, 27, 30, 35, 40, 41]
    # short sentences that straddle a multiple are not cut
    assert sampling.cut_long_sentences(np.array([0, 4, 8]), 5).tolist() == [0, 4, 8]
    assert sampling.cut_long_sentences(np.array([0]), 5).tolist() == [0]


def test_an_epoch_of_one_long_line_is_sampled_in_chunks_of_chunk_tokens():
    rng = np.random.default_rng(0)
    line = " ".join(f"w{i}" for i in rng.integers(0, 50, size=10_000))
    ds: Dataset = encode([line], min_count=1)
    config = Config(chunk_tokens=1000, batch_size=64, window=2, negatives=2, subsample=0)
    epoch = stream.EpochStream(ds, ds.vocab.counts, config, np.random.default_rng(0))
    sizes = np.diff(np.asarray(epoch.offsets)[epoch.bounds])
    assert sizes.max() <= config.chunk_tokens and sizes.sum() == ds.ids.size
    assert sum(len(rows) for rows in epoch) > 9_000
