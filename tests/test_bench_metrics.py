"""The benchmark's WordSim-353 arithmetic: ranks with ties, Spearman, coverage."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location(
    "bench", Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_ranks_average_ties():
    np.testing.assert_array_equal(bench.ranks(np.array([10.0, 20.0, 20.0, 5.0, 20.0])),
                                  [2.0, 4.0, 4.0, 1.0, 4.0])
    np.testing.assert_array_equal(bench.ranks(np.array([3.0, 1.0, 2.0])), [3.0, 1.0, 2.0])


def test_spearman_exact_values():
    assert bench.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert bench.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1, 2, 3) vs (1.5, 1.5, 3): Pearson of the ranks is sqrt(3)/2
    assert bench.spearman([1, 2, 3], [5, 5, 9]) == pytest.approx(np.sqrt(3) / 2)


def test_wordsim_skips_pairs_out_of_vocabulary(tmp_path):
    path = tmp_path / "ws.tsv"
    path.write_text("# comment\nWord 1\tWord 2\tHuman (mean)\na\tb\t9\na\tc\t5\nb\tc\t1\n"
                    "a\tzzz\t3\n", encoding="utf-8")
    rows = bench.read_wordsim(path)
    assert len(rows) == 4
    unit = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    out = bench.wordsim({"a": 0, "b": 1, "c": 2}, unit, rows)
    # cosines: ab 0.8, ac 0.0, bc 0.6; human 9, 5, 1 -> ranks (3, 1, 2) vs (3, 2, 1)
    assert out["pairs"] == 3 and out["coverage"] == 0.75
    assert out["spearman"] == pytest.approx(0.5)


def test_time_to_quality_is_the_first_report_reaching_the_target():
    points = [[0.5, 0.02], [1.0, 0.15], [1.5, 0.12], [2.0, 0.30]]
    assert bench.time_to(points, 0.15) == 1.0
    assert bench.time_to(points, 0.2) == 2.0
    assert bench.time_to(points, 0.31) is None


def test_a_job_timed_several_times_lists_its_runs():
    assert bench._runs({"seconds": 0.31, "runs": [0.31, 0.29, 0.44]}) == \
        " (median of 0.31, 0.29, 0.44)"
    assert bench._runs({"seconds": 0.31}) == ""


def test_each_large_vocabulary_line_is_divided_by_its_own_ptb_run():
    def run(steps, vocab=6_719):
        return {"last_epoch_steps_per_sec": steps, "vocab": vocab, "peak_rss_mb": 100.0}

    r = {"machine": {"cpus": 2, "load_before": 0.5, "load_after": 1.0},
         "prepare": {"seconds": 0.3, "tokens": 10, "vocab": 5, "peak_rss_mb": 70.0},
         "w2v": {}, "scaling": [], "bench_seconds": 1.0,
         "big_vocab_reference": run(60.0), "big_vocab_ptb_words": run(40.0, 1_000_000),
         "big_vocab": run(20.0, 1_000_000),
         "big_vocab_fast_reference": run(180.0),
         "big_vocab_fast_ptb_words": run(120.0, 1_000_000)}
    lines = [x for x in bench.table(r).splitlines() if "vocabulary 1,000,000" in x]
    assert [x.split(": ", 1)[0].strip() for x in lines] == [
        "vocabulary 1,000,000, PTB's words", "vocabulary 1,000,000, Zipf corpus",
        "vocabulary 1,000,000, PTB's words, --noise-group 8 --bucket"]
    assert [x.split("PTB/this ")[1].split("x")[0] for x in lines] == ["1.50", "3.00", "1.50"]
    assert "(PTB 180.0)" in lines[2]
    del r["big_vocab_fast_reference"]  # a results file from before the fast line
    assert len([x for x in bench.table(r).splitlines() if "vocabulary 1,000,000" in x]) == 2
