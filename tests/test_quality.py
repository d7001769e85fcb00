"""Quality while training: scores after every epoch, early stop, the best epoch kept."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import encode, planted_sentences
from w2v_cli import checkpoint, dataset, evaluate, params, plots, quality, train
from w2v_cli.cli import cli
from w2v_cli.config import Config, check
from w2v_cli.errors import Interrupted, UsageError
from w2v_cli.fileio import sha1_of
from w2v_cli.vectors import Vectors

SETTINGS = dict(batch_size=160, embed_size=8, window=2, negatives=2, subsample=0.0,
                device="cpu", seed=7, log_interval=2)
ARGS = ["--batch-size", "160", "--embed-size", "8", "--window", "2", "--negatives", "2",
        "--subsample", "0", "--device", "cpu", "--seed", "7"]


def _prepare(wd):
    ds = encode(planted_sentences(n_sentences=120), min_count=1)
    dataset.save(ds, wd)
    return ds


@pytest.fixture
def sets(tmp_path):
    """A similarity file over the planted words (same cluster: similar) and an analogy file."""
    sim = tmp_path / "planted-sim.txt"
    sim.write_text("".join(f"c{c}w{w} c{c}w{w + 1} 9\nc{c}w{w} c{(c + 1) % 4}w{w} 1\n"
                           for c in range(4) for w in range(0, 8, 2)) + "nowhere word 5\n",
                   encoding="utf-8")
    ana = tmp_path / "planted-ana.txt"
    ana.write_text(": pairs\nc0w0 c0w1 c1w0 c1w1\nc0w2 c0w3 c2w2 c2w3\nC3W0 c3w1 c1w4 c1w5\n",
                   encoding="utf-8")
    return str(sim), str(ana)


def _cli(wd, *args):
    result = CliRunner().invoke(cli, list(args), env={"W2V_WORKDIR": str(wd)})
    assert result.exit_code == 0, result.output
    return result


def _rows(wd):
    return [json.loads(line) for line in (wd / quality.METRICS_FILE).read_text().splitlines()]


def _scripted(monkeypatch, rhos):
    """Make every epoch's score of the first similarity set the next of ``rhos``; returns the
    list of the center tables scored, one per epoch."""
    seen, rhos = [], iter(rhos)

    def score(vectors, similarity=(), analogy=(), method="add", fold_case=True):
        seen.append(vectors.matrix.copy())
        return {"which": "center", "similarity": [
            {"file": p.path, "rho": next(rhos), "pairs": 2, "skipped": 0, "total": 2}
            for p in similarity], "analogy": []}
    monkeypatch.setattr(evaluate, "score", score)
    return seen


def test_early_stop_stops_at_the_right_epoch_and_keeps_the_best_epochs_vectors(
        tmp_path, sets, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    ds = _prepare(a)
    _prepare(b)
    scored = _scripted(monkeypatch, [0.1, 0.3, 0.3, 0.2, 0.9, 0.9])  # best at 2; 3, 4 flat
    record = train.train(Config(workdir=str(a), epochs=6, eval_similarity=(sets[0],),
                                early_stop=2, **SETTINGS), ds)
    assert [e["epoch"] for e in record["epochs"]] == [1, 2, 3, 4] and len(scored) == 4
    q = record["quality"]
    assert q["stopped"] == {"epoch": 4, "flat": 2}
    assert q["best"] == {"epoch": 2, "score": 0.3} and q["kept"] == {"epoch": 2, "why": "best"}
    assert record["complete"] and record["final"]["loss"] == record["epochs"][-1]["loss"]

    # model.params holds epoch 2's parameters: those of the same run stopped after epoch 2
    # (nothing depends on the number of epochs), and its center table is the one scored.
    train.train(Config(workdir=str(b), epochs=2, **SETTINGS), ds)
    kept, two = params.load_tables(a, len(ds.vocab)), params.load_tables(b, len(ds.vocab))
    assert np.array_equal(kept["center"], two["center"])
    assert np.array_equal(kept["context"], two["context"])
    assert np.array_equal(kept["center"], scored[1])
    assert sha1_of(a / "model.params") == sha1_of(b / "model.params") == \
        params.load_record(a)["params_sha1"]
    on_disk = params.load_record(a)
    assert on_disk["complete"] and on_disk["quality"]["kept"]["epoch"] == 2
    assert [r["epoch"] for r in _rows(a)] == [1, 2, 3, 4]
    # The latest checkpoint is still the last epoch trained: a resume goes on from there.
    assert checkpoint.latest(a)[0].name == "step-00004-00000000"
    assert checkpoint.unfinished(a) is None  # a new `w2v train` needs no --restart

    result = _cli(a, "similar", "c0w0", "-k", "3", "--json")
    assert len(json.loads(result.stdout.splitlines()[0])["neighbors"]) == 3


def test_keep_last_and_no_early_stop_train_every_epoch(tmp_path, sets, monkeypatch):
    ds = _prepare(tmp_path)
    _scripted(monkeypatch, [0.5, 0.1, 0.1])
    record = train.train(Config(workdir=str(tmp_path), epochs=3, eval_similarity=(sets[0],),
                                **SETTINGS), ds)
    assert len(record["epochs"]) == 3 and "stopped" not in record["quality"]
    assert record["quality"]["kept"] == {"epoch": 3, "why": "last"}
    assert not (tmp_path / quality.BEST_FILE).exists()
    assert sha1_of(tmp_path / "model.params") == \
        sha1_of(tmp_path / "checkpoints" / "step-00003-00000000" / "model.params")


def test_each_metrics_row_equals_w2v_evaluate_on_that_epochs_vectors(tmp_path, sets):
    sim, ana = sets
    whole = tmp_path / "whole"
    _prepare(whole)
    result = _cli(whole, "train", *ARGS, "--epochs", "3", "--eval-similarity", sim,
                  "--eval-analogy", ana)
    assert "epoch 2/3  planted-sim.txt: Spearman rho " in result.stderr
    assert "epoch 2/3  planted-ana.txt: analogy accuracy " in result.stderr
    rows = _rows(whole)
    assert [(r["epoch"], r["step"]) for r in rows] == [(1, 6), (2, 12), (3, 18)]
    losses = [e["loss"] for e in params.load_record(whole)["epochs"]]
    assert [r["loss"] for r in rows] == losses
    for k in (1, 2, 3):  # a run of the same seed stopped after epoch k (3: this run)
        wd = whole if k == 3 else tmp_path / f"upto{k}"
        if k < 3:
            _prepare(wd)
            _cli(wd, "train", *ARGS, "--epochs", str(k))
        scores = json.loads(_cli(wd, "evaluate", "--json", "--similarity", sim,
                                 "--analogy", ana).stdout)
        row = rows[k - 1]
        assert row["similarity"] == {sim: scores["similarity"][0]}
        assert row["analogy"] == {ana: scores["analogy"][0]}
        assert row["scores"] == {sim: scores["similarity"][0]["rho"],
                                 ana: scores["analogy"][0]["overall"]["accuracy"]}
        assert row["eval_seconds"] >= 0 and row["train_seconds"] > 0
    # Scoring changes nothing trained: epoch 2's checkpoint is the 2-epoch run's result.
    a = params.read_params(whole / "checkpoints" / "step-00002-00000000" / "model.params")
    b = params.read_params(tmp_path / "upto2" / "model.params")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def _snapshot(wd):
    return {p.relative_to(wd): (p.stat().st_mtime_ns, sha1_of(p))
            for p in sorted(wd.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("which", ["similarity", "analogy"])
def test_a_bad_eval_file_is_refused_before_training_with_nothing_changed(tmp_path, sets, which):
    wd = tmp_path / "work"
    _prepare(wd)
    _cli(wd, "train", *ARGS, "--epochs", "1")
    before = _snapshot(wd)
    bad = tmp_path / "bad.txt"
    bad.write_text("a b 1\na b c\n" if which == "similarity" else ": s\na b c d\na b c\n")
    option = "--eval-similarity" if which == "similarity" else "--eval-analogy"
    result = CliRunner().invoke(cli, ["train", *ARGS, "--epochs", "2", option, str(bad)],
                                env={"W2V_WORKDIR": str(wd)})
    assert result.exit_code == 3, result.output
    expected = "expected `word1 word2 score`, got 'a b c'" if which == "similarity" else \
        "expected 4 words `a b c d`, got 'a b c'"
    line = 2 if which == "similarity" else 3
    assert result.stderr.strip() == f"Error: {bad}:{line}: {expected}"
    assert _snapshot(wd) == before
    # The same on --resume, which reads the sets the run was started with too.
    result = CliRunner().invoke(cli, ["train", "--resume", "--epochs", "2", option, str(bad)],
                                env={"W2V_WORKDIR": str(wd)})
    assert result.exit_code == 3 and _snapshot(wd) == before


@pytest.mark.parametrize("args, message", [
    (["--early-stop", "2"], "--early-stop needs a score to follow: give --eval-similarity "
                            "FILE or --eval-analogy FILE"),
    (["--keep", "best"], "--keep best needs a score to follow: give --eval-similarity FILE "
                         "or --eval-analogy FILE"),
])
def test_early_stop_and_keep_best_need_an_eval_set(tmp_path, args, message):
    wd = tmp_path / "work"
    _prepare(wd)
    before = _snapshot(wd)
    result = CliRunner().invoke(cli, ["train", *ARGS, *args], env={"W2V_WORKDIR": str(wd)})
    assert result.exit_code == 2 and result.stderr.strip() == f"Error: {message}"
    assert _snapshot(wd) == before


@pytest.mark.parametrize("which, args, what", [
    ("similarity", ["--early-stop", "1"], "--early-stop follows {f}, which has not 2 pairs"),
    ("analogy", ["--keep", "best"], "--keep best follows {f}, which has not a question"),
])
def test_following_a_set_with_nothing_in_the_vocabulary_is_refused(tmp_path, sets, which,
                                                                  args, what):
    wd = tmp_path / "work"
    _prepare(wd)
    _cli(wd, "train", *ARGS, "--epochs", "1")
    before = _snapshot(wd)
    foreign = tmp_path / "foreign.txt"  # one usable pair is not enough for a rho
    foreign.write_text("c0w0 c0w1 9\nnowhere word 5\n" if which == "similarity"
                       else ": s\nc0w0 c0w1 c1w0 elsewhere\n")
    option = "--eval-similarity" if which == "similarity" else "--eval-analogy"
    result = CliRunner().invoke(cli, ["train", *ARGS, "--epochs", "2", option, str(foreign),
                                      *args], env={"W2V_WORKDIR": str(wd)})
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: " + what.format(f=foreign))
    assert _snapshot(wd) == before
    # followed second, after a set that fits, it is only scored
    result = CliRunner().invoke(cli, ["train", *ARGS, "--epochs", "1", option, sets[0 if which
                                      == "similarity" else 1], option, str(foreign), *args],
                                env={"W2V_WORKDIR": str(wd)})
    assert result.exit_code == 0, result.output


def test_the_settings_live_in_config_and_round_trip_but_are_not_model_settings(sets):
    config = Config(eval_similarity=(sets[0],), eval_analogy=(sets[1],), early_stop=3,
                    keep="last")
    assert Config.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for name in ("eval_similarity", "eval_analogy", "early_stop", "keep"):
        assert name not in checkpoint.MODEL_SETTINGS
    assert quality.keep_of(Config(early_stop=1)) == "best"
    assert quality.keep_of(Config()) == "last"
    with pytest.raises(UsageError, match="given twice"):
        check(Config(eval_similarity=(sets[0],), eval_analogy=(sets[0],)))
    with pytest.raises(UsageError, match="work on one machine"):
        check(Config(eval_similarity=(sets[0],), kvstore="dist_sync"))


def test_interrupted_and_resumed_run_writes_the_same_rows(tmp_path, sets, monkeypatch):
    """metrics.jsonl after an interrupt and a resume: the rows of an uninterrupted run (but
    the seconds), none twice; the early stop counts across the resume."""
    a, b = tmp_path / "a", tmp_path / "b"
    ds = _prepare(a)
    _prepare(b)
    config = dict(SETTINGS, epochs=4, eval_similarity=(sets[0],), eval_analogy=(sets[1],))
    train.train(Config(workdir=str(a), **config), ds)

    def interrupt(p):
        if (p.epoch, p.batch) == (3, 4) and not p.epoch_done:
            os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(Interrupted):
        train.train(Config(workdir=str(b), **config), ds, on_progress=interrupt)
    assert [r["epoch"] for r in _rows(b)] == [1, 2]
    train.train(Config(workdir=str(b), **config), ds, resume=True)

    def timeless(rows):
        return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]
    assert timeless(_rows(b)) == timeless(_rows(a))
    assert params.load_record(b)["quality"]["rows"] == _rows(b)


def test_resuming_an_early_stopped_run_goes_on_from_its_last_epoch(tmp_path, sets, monkeypatch):
    ds = _prepare(tmp_path)
    config = dict(SETTINGS, epochs=8, eval_similarity=(sets[0],), early_stop=1)
    _scripted(monkeypatch, [0.5, 0.4])
    first = train.train(Config(workdir=str(tmp_path), **config), ds)
    assert first["quality"]["stopped"]["epoch"] == 2 and first["quality"]["kept"]["epoch"] == 1
    _scripted(monkeypatch, [0.6, 0.6])  # epoch 3 improves on epoch 1, epoch 4 does not
    again = train.train(Config(workdir=str(tmp_path), **dict(config, early_stop=1)), ds,
                        resume=True)
    assert [e["epoch"] for e in again["epochs"]] == [1, 2, 3, 4]
    assert again["quality"]["stopped"]["epoch"] == 4
    assert again["quality"]["kept"] == {"epoch": 3, "why": "best"}
    assert [r["epoch"] for r in _rows(tmp_path)] == [1, 2, 3, 4]
    assert np.array_equal(params.load_tables(tmp_path, len(ds.vocab))["center"],
                          Vectors.load(tmp_path).matrix)


def test_loss_plot_draws_the_scores_in_a_second_panel(tmp_path):
    pytest.importorskip("matplotlib")
    path = plots.loss_curve([[0.5, 0.7], [1.0, 0.6], [1.5, 0.5], [2.0, 0.45]],
                            tmp_path / "loss.png", epochs=2,
                            scores={"ws.tsv": [(1, 0.2), (2, 0.3)]}, marked=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert quality.curves({"quality": {"rows": [
        {"epoch": 1, "scores": {"/x/ws.tsv": 0.2, "q.txt": None}},
        {"epoch": 2, "scores": {"/x/ws.tsv": 0.3, "q.txt": 0.1}}]}}) == \
        {"ws.tsv": [(1, 0.2), (2, 0.3)], "q.txt": [(2, 0.1)]}
