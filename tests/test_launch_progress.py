"""Progress a long job's logs can show: lines every few seconds without a terminal, each
naming its worker, and the launcher's summary of tokens/sec per worker and in total."""

from __future__ import annotations

import sys

from w2v_cli import launch
from w2v_cli.cli import _train_progress
from w2v_cli.meter import Progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_without_a_terminal_progress_is_a_line_every_interval(capsys):
    clock = Clock()
    report = _train_progress(False, every=10.0, clock=clock)

    def at(t, batch, done=False):
        clock.now = 100.0 + t
        report(Progress(1, 5, batch, 1600, 0.52, 41000.0, epoch_done=done, batch_size=512,
                        worker=(1, 2)))
        return capsys.readouterr().err

    assert at(5, 100) == ""  # within the first 10 s: nothing
    assert at(10, 300) == ("worker 1/2: epoch 1/5  batch 300/1600  loss 0.5200  "
                           "41,000 tokens/sec  ETA 16 s\n")
    assert at(19, 400) == ""  # 9 s after the last line
    assert at(20, 500).startswith("worker 1/2: epoch 1/5  batch 500/1600")
    # an epoch's end is always a line, without the terminal's spaces or carriage return
    assert at(21, 1600, done=True) == ("worker 1/2: epoch 1/5  batch 1600/1600  loss 0.5200  "
                                       "41,000 tokens/sec\n")


def test_on_a_terminal_progress_redraws_one_line(capsys):
    report = _train_progress(True, clock=Clock())
    report(Progress(2, 5, 3, 10, 1.0, 5.0, batch_size=1))
    assert capsys.readouterr().err == "\repoch 2/5  batch 3/10  loss 1.0000  5 tokens/sec  ETA 1 s"
    report(Progress(2, 5, 10, 10, 1.0, 5.0, epoch_done=True))
    assert capsys.readouterr().err.startswith("\repoch 2/5  batch 10/10")


def test_worker_result_lines_and_the_summary():
    line = "worker 1/2 (4400 tokens): loss 1.234, 12571.3 tokens/sec on cpu(0)"
    assert launch.worker_result(line) == {"rank": 1, "num_workers": 2, "tokens": 4400,
                                          "loss": 1.234, "tokens_per_sec": 12571.3}
    assert launch.worker_result("worker 1/2: epoch 1/5  batch 3/9  loss 1  5 tokens/sec") is None
    results = [{"rank": 0, "tokens_per_sec": 12000.4}, {"rank": 1, "tokens_per_sec": 12571.3}]
    assert launch.summary(results) == "tokens/sec: worker 0 12,000, worker 1 12,571; total 24,572"


def test_without_a_log_dir_worker_output_passes_through_and_is_summed(capfd):
    say = "print('progress'); print('worker {0}/2 (10 tokens): loss 0.5, {1} tokens/sec on cpu(0)')"
    nodes = [launch.Node("worker", 0, [sys.executable, "-c", say.format(1, 300.5)]),
             launch.Node("worker", 1, [sys.executable, "-c", say.format(0, 200.0)])]
    results = launch.run(nodes, timeout=30)
    assert [(r["rank"], r["tokens_per_sec"]) for r in results] == [(0, 200.0), (1, 300.5)]
    out = capfd.readouterr().out
    assert out.count("progress\n") == 2 and "worker 1/2 (10 tokens)" in out
