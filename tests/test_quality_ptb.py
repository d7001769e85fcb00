"""The quality bar: the PTB demo training (5 epochs, default settings) must give usable vectors.

The chapter's code reaches WordSim-353 rho 0.24 on PTB and gensim 0.14; we demand above 0.15.
"""

import json

import pytest
from click.testing import CliRunner

from w2v_cli.cli import cli

pytestmark = pytest.mark.ptb


def test_wordsim_rho_above_the_bar(trained_ptb_workdir, wordsim_path):
    result = CliRunner().invoke(cli, ["evaluate", "--similarity", str(wordsim_path), "--json",
                                      "--workdir", str(trained_ptb_workdir)])
    assert result.exit_code == 0, result.output
    sim = json.loads(result.stdout)["similarity"][0]
    assert sim["pairs"] > 150  # most of WordSim-353 is out of PTB's 6.7k-word vocabulary
    assert sim["rho"] > 0.15, sim


def test_chip_is_near_intel_or_microprocessor(trained_ptb_workdir):
    result = CliRunner().invoke(cli, ["similar", "chip", "-k", "10", "--json",
                                      "--workdir", str(trained_ptb_workdir)])
    assert result.exit_code == 0, result.output
    neighbours = [n["word"] for n in json.loads(result.stdout)["neighbors"]]
    assert {"intel", "microprocessor"} & set(neighbours), neighbours


def test_the_demo_run_wrote_its_loss_curve(trained_ptb_workdir):
    record = json.loads((trained_ptb_workdir / "run.json").read_text())
    epoch_ends = [loss for f, loss in record["curve"] if f == int(f)]
    assert epoch_ends == pytest.approx([e["loss"] for e in record["epochs"]])
    assert epoch_ends == sorted(epoch_ends, reverse=True)  # each epoch ends lower
    assert (trained_ptb_workdir / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluation_agrees_with_gensim_on_the_trained_vectors(trained_ptb_workdir, wordsim_path,
                                                             tmp_path):
    """Our Spearman and analogy accuracy equal gensim's on the same (exported) PTB vectors,
    on WordSim-353 and on the Google analogy set that gensim ships as test data."""
    models = pytest.importorskip("gensim.models")
    questions = pytest.importorskip("gensim.test.utils").datapath("questions-words.txt")
    runner = CliRunner()
    wd = ["--workdir", str(trained_ptb_workdir)]
    out = tmp_path / "ptb.bin"
    assert runner.invoke(cli, ["export", "--format", "word2vec-binary", "-o", str(out), *wd]) \
        .exit_code == 0
    result = runner.invoke(cli, ["evaluate", "--similarity", str(wordsim_path),
                                 "--analogy", questions, "--json", *wd])
    assert result.exit_code == 0, result.output
    ours = json.loads(result.stdout)

    kv = models.KeyedVectors.load_word2vec_format(str(out), binary=True)
    _, spearman, oov_percent = kv.evaluate_word_pairs(str(wordsim_path))
    sim = ours["similarity"][0]
    assert sim["rho"] == pytest.approx(spearman[0], abs=1e-4)
    assert 100 * sim["skipped"] / sim["total"] == pytest.approx(oov_percent)
    _, sections = kv.evaluate_word_analogies(questions)
    theirs = {s["section"]: (len(s["correct"]), len(s["correct"]) + len(s["incorrect"]))
              for s in sections}
    total = theirs.pop("Total accuracy")
    assert {s["section"]: (s["correct"], s["questions"]) for s in ours["analogy"][0]["sections"]
            if s["questions"]} == theirs
    assert (ours["analogy"][0]["overall"]["correct"],
            ours["analogy"][0]["overall"]["questions"]) == total
