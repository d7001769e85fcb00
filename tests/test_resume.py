"""Interrupt and resume: the same parameters as an uninterrupted run, and clear refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import encode, planted_sentences
from w2v_cli import checkpoint, dataset, optstate, params, train
from w2v_cli.config import Config
from w2v_cli.errors import Interrupted, ResumeError

SETTINGS = dict(epochs=3, batch_size=160, embed_size=8, window=2, negatives=2, subsample=0.0,
                device="cpu", seed=7, log_interval=1, noise_group=0)  # the chapter's estimator


def _prepare(wd, n_sentences=120, seed=0):
    ds = encode(planted_sentences(n_sentences=n_sentences, seed=seed), min_count=1)
    dataset.save(ds, wd)
    return ds


def _tables(wd, ds):
    return params.load_tables(wd, len(ds.vocab))


def _interrupt_at(epoch, batch, signum=signal.SIGINT):
    def on_progress(p):
        if (p.epoch, p.batch) == (epoch, batch) and not p.epoch_done:
            os.kill(os.getpid(), signum)
    return on_progress


@pytest.mark.parametrize("sample_once", [False, True])
@pytest.mark.parametrize("where", [(2, 3), (2, 6)])  # inside epoch 2; its last batch (boundary)
def test_interrupted_and_resumed_run_ends_with_the_same_parameters(tmp_path, where, sample_once):
    config = dict(SETTINGS, sample_once=sample_once)
    a, b = tmp_path / "a", tmp_path / "b"
    ds = _prepare(a)
    _prepare(b)
    whole = train.train(Config(workdir=str(a), **config), ds)
    assert dataset.load(a).ids.size == 960 and whole["epochs"][1]["tokens"] == 960  # 6 batches

    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted) as e:
        train.train(Config(workdir=str(b), **config), ds, on_progress=_interrupt_at(*where))
    assert e.value.exit_code == 130
    if where == (2, 3):
        assert str(e.value) == (
            f"interrupted by SIGINT at epoch 2/3, batch 3/6; the checkpoint is saved in {b}. "
            f"Continue with: w2v train --resume --workdir {b}")
        assert (b / "checkpoints" / "step-00001-00000003" / "state.json").is_file()
    else:  # the signal came during the epoch's last step: stop at the epoch boundary
        assert str(e.value) == (
            f"interrupted by SIGINT at the end of epoch 2/3; the checkpoint is saved in {b}. "
            f"Continue with: w2v train --resume --workdir {b}")
        assert (b / "checkpoints" / "step-00002-00000000" / "state.json").is_file()
    assert signal.getsignal(signal.SIGINT) is handler  # the caller's handler is back

    resumed = train.train(Config(workdir=str(b), **config), ds, resume=True)
    ta, tb = _tables(a, ds), _tables(b, ds)
    assert np.array_equal(ta["center"], tb["center"])
    assert np.array_equal(ta["context"], tb["context"])
    assert [e["loss"] for e in resumed["epochs"]] == pytest.approx(
        [e["loss"] for e in whole["epochs"]], rel=1e-6)
    assert resumed["complete"] and resumed["resumed"][0]["epoch"] == where[0] - (where[1] < 6)


def test_sigterm_stops_with_exit_code_143_and_resume_extends_the_run(tmp_path):
    ds = _prepare(tmp_path)
    config = Config(workdir=str(tmp_path), **SETTINGS)
    with pytest.raises(Interrupted) as e:
        train.train(config, ds, on_progress=_interrupt_at(1, 2, signal.SIGTERM))
    assert e.value.exit_code == 143 and "interrupted by SIGTERM at epoch 1/3, batch 2/6" in str(e.value)
    config.epochs = 4  # more epochs than first asked for is allowed
    record = train.train(config, ds, resume=True)
    assert [e["epoch"] for e in record["epochs"]] == [1, 2, 3, 4]
    assert params.load_record(tmp_path)["complete"] is True


def test_resume_refuses_other_settings_and_another_dataset(tmp_path):
    ds = _prepare(tmp_path)
    train.train(Config(workdir=str(tmp_path), **dict(SETTINGS, epochs=1)), ds)
    before = (tmp_path / "model.params").read_bytes()
    changed = Config(workdir=str(tmp_path), **dict(SETTINGS, embed_size=9, lr=0.01))
    with pytest.raises(ResumeError) as e:
        train.train(changed, ds, resume=True)
    assert str(e.value) == (
        "cannot resume: --embed-size is 9 but the checkpoint has 8; --lr is 0.01 but the "
        "checkpoint has 0.002. Resume with the checkpoint's settings (leave those options out) "
        "or start a new run without --resume")
    grouped = Config(workdir=str(tmp_path), **dict(SETTINGS, noise_group=4, group_noise=3))
    with pytest.raises(ResumeError, match="--noise-group is 4 but the checkpoint has 0; "
                                          "--group-noise is 3 but the checkpoint has 20"):
        train.train(grouped, ds, resume=True)
    # without noise groups their size decides nothing: no difference to refuse
    ran = train.for_devices(Config(workdir=str(tmp_path), **SETTINGS), [train.mxnet().cpu()])
    checkpoint.check_resume({**ran.to_dict(), "group_noise": 3}, ran,
                            *[checkpoint.dataset_fingerprint(ds)] * 2)
    other = _prepare(tmp_path, n_sentences=100, seed=1)
    with pytest.raises(ResumeError, match=r"the dataset's vocabulary differs|number of tokens"):
        train.train(Config(workdir=str(tmp_path), **SETTINGS), other, resume=True)
    assert (tmp_path / "model.params").read_bytes() == before


def test_resume_without_checkpoint_and_with_a_corrupted_one(tmp_path, caplog):
    ds = _prepare(tmp_path)
    config = Config(workdir=str(tmp_path), **SETTINGS)
    with pytest.raises(ResumeError) as e:
        train.train(config, ds, resume=True)
    assert str(e.value) == (f"no complete checkpoint to resume in {tmp_path / 'checkpoints'}: "
                            "run `w2v train` without --resume to start a new run")
    config.epochs = 2
    train.train(config, ds)
    # flip one byte of the newest checkpoint's Adam state: resume falls back to the older one
    newest = tmp_path / "checkpoints" / "step-00002-00000000"
    states = bytearray((newest / "trainer.states").read_bytes())
    states[len(states) // 2] ^= 0xFF
    (newest / "trainer.states").write_bytes(bytes(states))
    config.epochs = 3
    with caplog.at_level("WARNING", logger="w2v_cli"):
        record = train.train(config, ds, resume=True)
    skipped = (f"skipped step-00002-00000000: {newest / 'trainer.states'} is missing or does "
               "not match its SHA-1")
    assert record["resumed"][0]["epoch"] == 1
    assert record["resumed"][0]["notes"] == [skipped]
    # and the user is told, as a note
    assert [r.getMessage() for r in caplog.records if r.name == "w2v_cli.checkpoint"] == [
        f"resuming from step-00001-00000000; {skipped}"]


def test_ctrl_c_on_the_real_command_says_how_to_resume(tmp_path):
    """`w2v train` in its own process: SIGINT -> exit 130 and a resume hint; --resume finishes
    with the parameters of an uninterrupted in-process run."""
    ds = _prepare(tmp_path / "cli")
    args = ["--epochs", "12", "--batch-size", "4096", "--embed-size", "8", "--window", "2",
            "--negatives", "2", "--subsample", "0", "--device", "cpu", "--seed", "7"]
    env = dict(os.environ, W2V_WORKDIR=str(tmp_path / "cli"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "w2v_cli", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline().startswith("epoch 1/12")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted by SIGINT at ") and "Traceback" not in err
    assert last.endswith(f"; the checkpoint is saved in {tmp_path / 'cli'}. Continue with: "
                         f"w2v train --resume --workdir {tmp_path / 'cli'}")
    done = subprocess.run([sys.executable, "-m", "w2v_cli", "train", "--resume"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    _prepare(tmp_path / "whole")
    train.train(Config(workdir=str(tmp_path / "whole"), epochs=12, batch_size=4096, embed_size=8,
                       window=2, negatives=2, subsample=0.0, device="cpu", seed=7), ds)
    a, b = _tables(tmp_path / "cli", ds), _tables(tmp_path / "whole", ds)
    assert np.array_equal(a["center"], b["center"]) and np.array_equal(a["context"], b["context"])


def test_adam_state_arrays_are_files_of_their_own_and_each_is_checked(tmp_path):
    ds = _prepare(tmp_path)
    config = Config(workdir=str(tmp_path), **{**SETTINGS, "epochs": 2})
    train.train(config, ds)
    newest = tmp_path / "checkpoints" / "step-00002-00000000"
    # adam's mean and variance for each of the two tables, outside the pickle
    arrays = sorted(p.name for p in newest.glob("state-*.npy"))
    assert arrays == ["state-0.npy", "state-1.npy", "state-2.npy", "state-3.npy"]
    assert all(np.load(newest / name).shape == (len(ds.vocab), 8) for name in arrays)
    assert (newest / "trainer.states").stat().st_size < 4096
    moment = np.load(newest / "state-3.npy")
    moment[0, 0] += 1.0
    np.save(newest / "state-3.npy", moment)
    config.epochs = 3
    record = train.train(config, ds, resume=True)
    assert record["resumed"][0]["notes"] == [
        f"skipped step-00002-00000000: {newest / 'state-3.npy'} is missing or does not "
        "match its SHA-1"]


def _whole_and_two_epochs(tmp_path):
    """A whole run in tmp_path/whole and its first two epochs in tmp_path/old: the old
    checkpoint to rewrite, the run to compare with. Returns (dataset, the old run's config)."""
    ds = _prepare(tmp_path / "whole")
    train.train(Config(workdir=str(tmp_path / "whole"), **SETTINGS), ds)
    _prepare(tmp_path / "old")
    config = Config(workdir=str(tmp_path / "old"), **{**SETTINGS, "epochs": 2})
    train.train(config, ds)
    return ds, config


def _resume_matches_the_whole_run(tmp_path, ds, config):
    """Resume the old run to 3 epochs: it must end with the whole run's tables exactly."""
    config.epochs = 3
    record = train.train(config, ds, resume=True)
    assert record["resumed"][0]["epoch"] == 2 and record["resumed"][0]["notes"] == []
    a, b = _tables(tmp_path / "old", ds), _tables(tmp_path / "whole", ds)
    assert np.array_equal(a["center"], b["center"]) and np.array_equal(a["context"], b["context"])


def test_a_version_1_checkpoint_with_the_arrays_inside_resumes_exactly(tmp_path):
    import json
    ds, config = _whole_and_two_epochs(tmp_path)
    # Rewrite the newest checkpoint as version 1 wrote it: trainer.save_states's one pickle.
    d = tmp_path / "old" / "checkpoints" / "step-00002-00000000"
    with open(d / "trainer.states", "rb") as f:
        states, optimizer = optstate._StatesIn(f, d).load()
    import pickle
    (d / "trainer.states").write_bytes(pickle.dumps((states, optimizer)))
    for p in d.glob("state-*.npy"):
        p.unlink()
    state = json.loads((d / "state.json").read_text())
    state["version"] = 1
    state["files"] = {name: checkpoint.sha1_of(d / name) for name in ("model.params",
                                                                        "trainer.states")}
    (d / "state.json").write_text(json.dumps(state))
    _resume_matches_the_whole_run(tmp_path, ds, config)


def _zipf_sentences(n_words=2000, n_sentences=2000, length=10, seed=0):
    """Sentences of words ``w{i}`` drawn with probability ~ 1/(i+1): most words are rare."""
    rng = np.random.default_rng(seed)
    p = 1 / np.arange(1, n_words + 1)
    ids = rng.choice(n_words, size=(n_sentences, length), p=p / p.sum())
    return [" ".join(f"w{i}" for i in row) for row in ids]


# A vocabulary of 1,781 words over 125 batches an epoch: most center rows sit idle across the
# stop, so the lazy-Adam catch-up (catchup.py) has rows behind when the checkpoint is written.
# Batches 30 and 31: the stop falls on a step that caught the next step's rows up ahead, and
# on one that did not.
@pytest.mark.parametrize("sparse_grad, noise_group, batch", [
    (True, 0, 30), (True, 0, 31), (True, 4, 30), (False, 0, 30)])
def test_resume_inside_an_epoch_with_rows_idle_across_the_stop_is_exact(tmp_path, sparse_grad,
                                                                       noise_group, batch):
    config = dict(SETTINGS, epochs=2, log_interval=10, sparse_grad=sparse_grad,
                  noise_group=noise_group, group_noise=3)
    ds = encode(_zipf_sentences(), min_count=1)
    a, b = tmp_path / "a", tmp_path / "b"
    for wd in (a, b):
        dataset.save(ds, wd)
    whole = train.train(Config(workdir=str(a), **config), ds)
    assert whole["epochs"][1]["batches"] == 125

    def stop(p):
        if (p.epoch, p.batch) == (2, batch) and not p.epoch_done:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted):
        train.train(Config(workdir=str(b), **dict(config, log_interval=1)), ds, on_progress=stop)
    # The vectors to query at the stop: every row caught up, and their checksum recorded.
    assert _tables(b, ds)["center"].shape == (len(ds.vocab), 8)
    resumed = train.train(Config(workdir=str(b), **config), ds, resume=True)
    ta, tb = _tables(a, ds), _tables(b, ds)
    assert np.array_equal(ta["center"], tb["center"])
    assert np.array_equal(ta["context"], tb["context"])
    assert [e["loss"] for e in resumed["epochs"]] == [e["loss"] for e in whole["epochs"]]
    assert resumed["resumed"][0]["batch"] == batch


def test_a_version_2_checkpoint_without_catch_up_positions_resumes_as_it_did(tmp_path):
    """Before version 3 a sparse run's checkpoint was caught up and had no catchup.npy: the
    positions are then taken from Adam's moments (every row touched is at the last step)."""
    import json
    ds, config = _whole_and_two_epochs(tmp_path)
    d = tmp_path / "old" / "checkpoints" / "step-00002-00000000"
    state = json.loads((d / "state.json").read_text())
    assert state["version"] == 3 and state["query_params"] is None  # an epoch's end: caught up
    assert np.load(d / checkpoint.CATCHUP_FILE).shape == (len(ds.vocab),)
    (d / checkpoint.CATCHUP_FILE).unlink()
    del state["files"][checkpoint.CATCHUP_FILE], state["query_params"]
    state["version"] = 2
    (d / "state.json").write_text(json.dumps(state))
    _resume_matches_the_whole_run(tmp_path, ds, config)


def _new_embedding_number() -> int:
    """N of a new nn.Embedding, named embedding<N> by Gluon's process-wide counter."""
    from mxnet.gluon import nn
    return int(nn.Embedding(1, 1).weight.name.split("_")[0][len("embedding"):])


def test_a_run_whose_table_names_sort_the_other_way_resumes_exactly(tmp_path):
    """Gluon names the tables by a counter over the whole process, and a Trainer given a
    ParameterDict sorts it by name: a run built as embedding9 / embedding10 (or 99 / 100),
    which sort the other way round, saves Adam's moments under the same indices as the run
    resuming it (embedding11 / 12) reads them."""
    from mxnet.gluon import nn
    ds = _prepare(tmp_path / "whole")
    train.train(Config(workdir=str(tmp_path / "whole"), **SETTINGS), ds)
    _prepare(tmp_path / "old")
    n = _new_embedding_number()
    first = next(t for t in (9, 99, 999, 9999) if t > n)
    for _ in range(first - n - 1):
        nn.Embedding(1, 1)
    config = Config(workdir=str(tmp_path / "old"), **{**SETTINGS, "epochs": 2})
    train.train(config, ds)
    assert _new_embedding_number() == first + 2  # its tables were embedding<first>, <first+1>
    _resume_matches_the_whole_run(tmp_path, ds, config)


def test_a_sparse_run_resumed_on_several_devices_is_told_to_use_one(tmp_path):
    """--sparse-grad needs one device, and a resumed run cannot switch to --dense-grad: the
    error says to resume on one device (not check()'s advice, --dense-grad)."""
    from click.testing import CliRunner

    from w2v_cli.cli import cli

    _prepare(tmp_path)
    common = ["--workdir", str(tmp_path), "--embed-size", "8", "--subsample", "0"]
    result = CliRunner().invoke(cli, ["train", "--epochs", "1", "--device", "cpu", *common])
    assert result.exit_code == 0, result.output
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    result = CliRunner().invoke(cli, ["train", "--resume", "--epochs", "2", "--device",
                                      "cpu:0,1", "--workdir", str(tmp_path)])
    assert result.exit_code == 2
    assert ("Error: this run trains with row-sparse gradients (--sparse-grad), which work on "
            "one device, not --device cpu:0,1: resume it on one device") in result.output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    result = CliRunner().invoke(cli, ["train", "--resume", "--epochs", "2", "--device",
                                      "cpu:0,1", "--sparse-grad", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and "resume it on one device" in result.output
    result = CliRunner().invoke(cli, ["train", "--resume", "--epochs", "2", "--device", "cpu",
                                      "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
