"""The bench's arithmetic and table on made-up runs: mean and spread, ratios, formatting,
and scoring through `w2v evaluate --vectors`. No training."""

from __future__ import annotations

import argparse
import json
import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "bench", Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _run(tool, epochs, seed, wall, ws, sl, an, used=(217, 211, 1488)):
    values = {"wordsim353": ws, "simlex999_dev": sl, "analogy_dev": an}
    totals = {"wordsim353": 353, "simlex999_dev": 518, "analogy_dev": 9770}
    return {"tool": tool, "epochs": epochs, "seed": seed, "wall": wall,
            "scores": {name: {"value": values[name], "used": u, "total": totals[name]}
                       for name, u in zip(values, used)}}


def _results(runs, cores=None):
    out = {"runs": runs, "versions": {"gensim": "4.3.3"}, "prepare": {"wall": 0.5},
           "machine": {"cpus": 2, "load_before": 0.25, "load_after": 1.5},
           "bench_seconds": 123.4}
    if cores:
        out["cores"] = cores
    return out


def test_summarize_gives_mean_min_max():
    s = bench.summarize([0.3, 0.1, 0.2])
    assert s == {"mean": pytest.approx(0.2), "min": 0.1, "max": 0.3, "n": 3}


def test_a_cell_is_mean_then_min_and_max_or_the_figure_alone():
    assert bench.cell(bench.summarize([0.3, 0.1, 0.2]), 3) == "0.200 [0.100, 0.300]"
    assert bench.cell(bench.summarize([-0.01, 0.02]), 3) == "0.005 [-0.010, 0.020]"
    assert bench.cell(bench.summarize([2.25]), 1) == "2.2"


def test_summary_rows_group_seeds_by_tool_and_epochs():
    runs = [_run("w2v", 5, 0, 30.0, 0.3, 0.1, 2.0), _run("gensim", 5, 0, 4.0, 0.1, 0.1, 2.0),
            _run("w2v", 5, 1, 20.0, 0.2, 0.2, 3.0), _run("gensim", 5, 1, 2.0, 0.2, 0.3, 4.0)]
    rows = bench.summary_rows(runs)
    assert [(r["tool"], r["epochs"], r["seeds"]) for r in rows] == [("w2v", 5, [0, 1]),
                                                                     ("gensim", 5, [0, 1])]
    assert rows[0]["wall"]["mean"] == 25.0 and rows[1]["wall"]["mean"] == 3.0
    assert rows[0]["analogy_dev"] == {"mean": 2.5, "min": 2.0, "max": 3.0, "n": 2}
    assert rows[1]["simlex999_dev"]["mean"] == pytest.approx(0.2)


def test_a_metric_with_no_value_in_some_seed_is_not_averaged():
    rows = bench.summary_rows([_run("w2v", 1, 0, 1.0, None, 0.1, 0.0),
                               _run("w2v", 1, 1, 1.0, 0.2, 0.1, 0.0)])
    assert rows[0]["wordsim353"] is None


def test_ratio_is_w2v_mean_wall_over_gensims_at_equal_epochs():
    runs = [_run("w2v", 5, 0, 30.0, 0, 0, 0), _run("gensim", 5, 0, 4.0, 0, 0, 0),
            _run("w2v", 5, 1, 20.0, 0, 0, 0), _run("gensim", 5, 1, 2.0, 0, 0, 0),
            _run("w2v", 15, 0, 90.0, 0, 0, 0), _run("gensim", 15, 0, 10.0, 0, 0, 0),
            _run("w2v", 7, 0, 9.0, 0, 0, 0)]  # no gensim run at 7 epochs: no ratio
    got = bench.ratios(bench.summary_rows(runs))
    assert got == [{"epochs": 5, "w2v": 25.0, "gensim": 3.0, "ratio": pytest.approx(25 / 3)},
                   {"epochs": 15, "w2v": 90.0, "gensim": 10.0, "ratio": 9.0}]


def test_the_markdown_table_exactly():
    runs = [_run("w2v", 5, 0, 30.0, 0.31, 0.12, 2.0), _run("gensim", 5, 0, 4.0, 0.14, 0.14, 2.25),
            _run("w2v", 5, 1, 20.0, 0.29, 0.16, 3.0), _run("gensim", 5, 1, 2.0, 0.12, 0.12, 2.75)]
    text = bench.markdown(_results(runs, cores={"1": 20.0, "2": 12.5}))
    assert text.splitlines() == [
        "### Equal passes on PTB: mean [min, max] over 2 seeds",
        "",
        "| run | epochs | wall s | WordSim-353 rho | SimLex-999 dev rho | analogy dev % |",
        "|---|---:|---:|---:|---:|---:|",
        "| w2v --lr 0.002 | 5 | 25.0 [20.0, 30.0] | 0.300 [0.290, 0.310] "
        "| 0.140 [0.120, 0.160] | 2.5 [2.0, 3.0] |",
        "| gensim 4.3.3 | 5 | 3.0 [2.0, 4.0] | 0.130 [0.120, 0.140] "
        "| 0.130 [0.120, 0.140] | 2.5 [2.2, 2.8] |",
        "",
        "| epochs | w2v wall s | gensim wall s | w2v/gensim |",
        "|---:|---:|---:|---:|",
        "| 5 | 25.0 | 3.0 | 8.33x |",
        "",
        "wall: the whole process, spawn to exit (w2v train on the prepared workdir; gensim "
        "reading the zip, vocabulary and training, its vector save subtracted)",
        "items scored: WordSim-353 217/353, SimLex-999 dev 211/518, analogy dev 1488/9770",
        "w2v prepare (once, shared by every w2v run): 0.50 s",
        "w2v train --epochs 1 on 1 core (taskset -c 0): 20.0 s; on 2 cores (taskset -c 0,1): "
        "12.5 s; speed-up 1.60x",
        "2 CPUs, load average 0.2 before and 1.5 after; bench 123 s",
    ]


def test_the_targets_at_15_epochs_compare_means_with_gensims():
    runs = [_run("w2v", 15, 0, 40.0, 0.3, 0.18, 3.0), _run("gensim", 15, 0, 21.0, 0.3, 0.21, 3.5),
            _run("w2v", 15, 1, 44.0, 0.3, 0.16, 4.0), _run("gensim", 15, 1, 19.0, 0.3, 0.19, 3.5)]
    checks = bench.targets(bench.summary_rows(runs))
    # wall 42 / 20 = 2.1x; SimLex 0.17 against 0.20 - 0.02; analogies 3.5 against 3.5 - 0.3
    assert [(c["what"], c["met"]) for c in checks] == [
        ("wall", False), ("simlex999_dev", False), ("analogy_dev", True)]
    assert checks[0]["w2v"] == pytest.approx(2.1)
    assert checks[1]["bound"] == pytest.approx(0.18) and checks[2]["bound"] == pytest.approx(3.2)
    line = next(x for x in bench.markdown(_results(runs)).splitlines()
                if x.startswith("targets"))
    assert line == ("targets at 15 epochs (means over the seeds): wall 2.10x gensim's (at most "
                    "2x): NOT met; SimLex-999 dev 0.170 against gensim's 0.200 - 0.02 = 0.180: "
                    "NOT met; analogy dev 3.5 against gensim's 3.5 - 0.3 points = 3.2: met")


def test_no_targets_line_without_both_tools_at_15_epochs():
    runs = [_run("w2v", 15, 0, 40.0, 0.3, 0.18, 3.0), _run("gensim", 5, 0, 9.0, 0.3, 0.2, 3.5)]
    assert bench.targets(bench.summary_rows(runs)) == []
    assert not any(x.startswith("targets") for x in bench.markdown(_results(runs)).splitlines())


def test_the_scoring_cost_line():
    results = _results([_run("w2v", 1, 0, 16.0, 0.1, 0.02, 0.1)])
    results["eval_cost"] = {"eval_seconds": [0.12, 0.1], "train_seconds": [8.0, 10.0]}
    line = next(x for x in bench.markdown(results).splitlines() if x.startswith("scoring"))
    assert line == ("scoring after each epoch (--eval-similarity x2, --eval-analogy): 0.12 s, "
                    "0.10 s against epochs of 8.0 s, 10.0 s (1.5% at most)")


def test_one_seed_prints_no_spread_and_a_vocabulary_mismatch_shows():
    runs = [_run("w2v", 1, 0, 16.0, 0.1, 0.02, 0.1),
            _run("gensim", 1, 0, 2.9, 0.05, 0.04, 0.1, used=(216, 211, 1488))]
    lines = bench.markdown(_results(runs)).splitlines()
    assert lines[0] == "### Equal passes on PTB: 1 seed, no spread"
    assert lines[4] == "| w2v --lr 0.002 | 1 | 16.0 | 0.100 | 0.020 | 0.1 |"
    assert "WordSim-353 216/353 or 217/353," in next(x for x in lines if x.startswith("items"))
    assert not any("taskset" in x for x in lines)  # no cores line when it was not run


def test_epoch_lists_parse_from_text():
    assert bench._epochs("5,15") == [5, 15]
    assert bench._epochs("1") == [1]


def test_scores_come_from_w2v_evaluate_on_another_tools_file(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("3 2\nking 1 0\nqueen 0.8 0.6\napple 0 1\n", encoding="utf-8")
    (tmp_path / "dev").mkdir()
    # cosines king-queen 0.8, king-apple 0, queen-apple 0.6; human 9, 5, 1 -> rho 0.5
    (tmp_path / "wordsim353.tsv").write_text(
        "King\tQueen\t9\nking\tapple\t5\nqueen\tapple\t1\nking\tpear\t3\n", encoding="utf-8")
    (tmp_path / "dev" / "simlex999-dev.txt").write_text("king queen 9\nqueen apple 1\n",
                                                         encoding="utf-8")
    (tmp_path / "dev" / "questions-words-dev.txt").write_text(
        ": s\nking queen king queen\nking pear king queen\n", encoding="utf-8")
    bench.check_test_sets(tmp_path)
    got = bench.score(tmp_path, ["--vectors", str(path)])
    assert got["wordsim353"] == {"value": pytest.approx(0.5), "used": 3, "total": 4}
    assert got["simlex999_dev"] == {"value": pytest.approx(1.0), "used": 2, "total": 2}
    # one question in the vocabulary; its answer excludes the query words, so it is wrong
    assert got["analogy_dev"] == {"value": 0.0, "used": 1, "total": 2}


def test_missing_test_sets_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="wordsim353.tsv"):
        bench.check_test_sets(tmp_path)


def test_the_objectives_table_exactly():
    gensim = next(p for m, loss, p in bench.OBJECTIVES if (m, loss) == ("cbow", "hs"))
    w2v_tool, gensim_tool = bench.objective_tools("cbow", "hs", gensim)
    assert (w2v_tool, gensim_tool) == ("w2v --model cbow --loss hs",
                                       "gensim sg=0 hs=1 negative=0 sample=0.001")
    runs = [_run(w2v_tool, 5, 0, 12.34, 0.2, 0.1, 1.25), _run(w2v_tool, 5, 1, 14.0, 0.3, 0.2, 2.0),
            _run(gensim_tool, 5, 0, 3.0, 0.15, 0.05, 0.5), _run(gensim_tool, 5, 1, 3.0, 0.15, 0.07,
                                                                  0.7),
            _run(w2v_tool, 15, 0, 40.0, 0.3, 0.2, 3.0), _run(gensim_tool, 15, 0, 9.0, 0.2, 0.1, 1.0)]
    runs[2]["scores"]["wordsim353"]["value"] = None
    lines = bench.objectives_table(runs)
    assert lines[-2:] == [
        "| cbow | hs | 5 | 2 | 13.2 [12.3, 14.0] | 0.250 [0.200, 0.300] | 0.150 [0.100, 0.200] "
        "| 1.6 [1.2, 2.0] | 3.0 [3.0, 3.0] | n/a | 0.060 [0.050, 0.070] | 0.6 [0.5, 0.7] |",
        "| cbow | hs | 15 | 1 | 40.0 | 0.300 | 0.200 | 3.0 | 9.0 | 0.200 | 0.100 | 1.0 |"]
    assert [m for m, _, _ in bench.OBJECTIVES] == ["skipgram", "skipgram", "cbow", "cbow"]


def test_the_objectives_plan_reads_epochs_and_seeds():
    assert bench._plan("5x3,15") == [(5, 3), (15, 1)]
    assert bench._plan("") == []
    with pytest.raises(argparse.ArgumentTypeError):
        bench._plan("5x0")


def test_a_recipe_row_is_labelled_by_its_options_with_its_own_ratio():
    runs = [_run("w2v", 15, 0, 120.0, 0.3, 0.15, 3.0), _run("gensim", 15, 0, 20.0, 0.36, 0.2, 3.6),
            _run("w2v --noise-group 8 --bucket", 15, 0, 60.0, 0.36, 0.21, 3.5)]
    lines = bench.markdown(_results(runs)).splitlines()
    assert "| w2v --noise-group 8 --bucket | 15 | 60.0 | 0.360 | 0.210 | 3.5 |" in lines
    assert "w2v --noise-group 8 --bucket: 3.00x gensim's wall time at 15 epochs" in lines
    assert "| 15 | 120.0 | 20.0 | 6.00x |" in lines  # the defaults' ratio as before


def test_tokens_a_pass_by_each_tools_formula(tmp_path, monkeypatch):
    """kept counts 64, 16, 16, 4 (f = .64, .16, .16, .04; id 0, <unk>, left out): w2v keeps
    sqrt(t / f), gensim (sqrt(f / s) + 1) * s / f, each at most 1, worked out by hand."""
    from w2v_cli import config

    (tmp_path / "vocab.json").write_text(json.dumps({"counts": [7, 64, 16, 16, 4]}))
    monkeypatch.setitem(config.SUBSAMPLE, "ns", 0.01)  # 8 + 4 + 4 + 2
    monkeypatch.setitem(config.SUBSAMPLE, "hs", 0.04)  # 16 + 8 + 8 + 4
    monkeypatch.setitem(bench.GENSIM, "sample", 0.01)  # 9 + 5 + 5 + 3
    monkeypatch.setattr(bench, "OBJECTIVES", [("skipgram", "hs", {"sample": 0.04})])  # 20 + 12 + 12 + 4
    got = bench.tokens_a_pass(tmp_path)
    assert got == pytest.approx({"w2v --loss ns": 18, "w2v --loss hs": 36,
                                 "gensim sample=0.01": 22, "gensim sample=0.04": 48})
