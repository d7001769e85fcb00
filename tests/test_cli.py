import json

import pytest
from click.testing import CliRunner

from w2v_cli.cli import cli

COMMANDS = ["prepare", "train", "similar"]


def run(*args, **kw):
    result = CliRunner().invoke(cli, list(args), **kw)
    return result


@pytest.mark.parametrize("command", [None] + COMMANDS)
def test_help_shows_every_default(command):
    result = run(*([command] if command else []), "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # undo Click's line wrapping
    if command == "train":
        for phrase in ("--epochs INTEGER RANGE Passes over the corpus. [default: 5; x>=1]",
                       "--lr FLOAT RANGE Learning rate: adam's, or sgd's per (context, "
                           "center) pair at the start. [default: (0.002 with adam, 0.05 with "
                           "sgd); x>0]",
                           "--optimizer [adam|sgd] adam (the chapter's)",
                       "[default: 512; x>=1]", "[default: 100; x>=1]", "[default: resample]",
                       "--seed INTEGER", "[default: auto]", "[default: w2v-work]"):
            assert phrase in text
    if command == "prepare":
        assert "[default: 10; x>=1]" in text and "[env W2V_DATA_DIR]" in text
    if command == "similar":
        assert "[default: 10; x>=1]" in text
    if command is None:
        for c in COMMANDS:
            assert f" {c} " in text


def test_prepare_train_similar_chain_through_the_default_workdir(planted_corpus, workdir):
    result = run("prepare", "--corpus", str(planted_corpus), "--min-count", "1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("2000 sentences, 16000 tokens (16000 kept), vocabulary of 33")
    assert {"vocab.json", "ids.npy", "offsets.npy"} <= {p.name for p in workdir.iterdir()}

    result = run("train", "--epochs", "2", "--batch-size", "64", "--embed-size", "16",
                 "--window", "2", "--subsample", "0", "--lr", "0.01", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("loss 0.") and result.stdout.rstrip().endswith("on cpu(0)")
    assert "epoch 2/2" in result.stderr  # progress goes to stderr, the result to stdout
    record = json.loads((workdir / "run.json").read_text())
    assert record["config"]["epochs"] == 2 and len(record["epochs"]) == 2

    result = run("similar", "c1w3", "-k", "3")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert line.startswith("cosine sim=0.") and line.split(": ")[1].startswith("c1w")


def test_every_path_can_be_overridden(planted_corpus, tmp_path):
    wd = tmp_path / "elsewhere"
    assert run("prepare", "--corpus", str(planted_corpus), "--min-count", "1",
               "--workdir", str(wd)).exit_code == 0
    assert (wd / "vocab.json").is_file()


def test_unknown_word_names_close_matches(planted_corpus, workdir):
    run("prepare", "--corpus", str(planted_corpus), "--min-count", "1")
    run("train", "--epochs", "1", "--embed-size", "8", "--device", "cpu", "--subsample", "0")
    result = run("similar", "c1w33")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: 'c1w33' is not in the vocabulary (32 words); "
                                    "close matches: c1w3")


def test_similar_without_a_model_says_to_train(planted_corpus, workdir):
    run("prepare", "--corpus", str(planted_corpus), "--min-count", "1")
    result = run("similar", "c1w3")
    assert result.exit_code == 5
    assert "run `w2v train` first" in result.stderr


def test_train_without_prepare_says_to_prepare(workdir):
    result = run("train", "--epochs", "1")
    assert result.exit_code == 3
    assert result.stderr == f"Error: no vocabulary at {workdir}/vocab.json: run `w2v prepare` first\n"


@pytest.mark.parametrize("args", [["train", "--epochs", "0"], ["train", "--lr", "0"],
                                  ["train", "--window", "0"], ["train", "--batch-size", "0"],
                                  ["similar", "chip", "-k", "0"]])
def test_out_of_range_options_are_rejected_before_any_work(args, workdir):
    result = run(*args)
    assert result.exit_code == 2
    assert "Invalid value" in result.stderr
    assert not workdir.exists()


@pytest.mark.parametrize("args,shown", [(["--lr", "1e308"], "1e+308"),
                                        (["--lr", "1e-320"], "1e-320"),
                                        (["--optimizer", "sgd", "--lr", "1e39"], "1e+39"),
                                        (["--lr", "1.2e-38"], "1.2e-38")])
def test_lr_outside_float32_is_a_usage_error_before_training(args, shown, planted_corpus,
                                                            workdir):
    run("prepare", "--corpus", str(planted_corpus), "--min-count", "1")
    result = run("train", "--epochs", "1", "--device", "cpu", *args)
    assert result.exit_code == 2
    assert result.stderr == (f"Error: --lr must be between 1.175e-34 and 3.403e+38, got {shown}: "
                             "MXNet takes rates as normal float32 numbers, and a run lowers the "
                             "rate to as little as 1e-4 of --lr\n")
    assert not (workdir / "run.json").exists()


def test_prepare_offline_without_archive_says_where_to_put_it(tmp_path, workdir, monkeypatch):
    import w2v_cli.corpus as corpus
    monkeypatch.setattr(corpus, "PTB_URL", "http://127.0.0.1:9/ptb.zip")  # nothing listens
    result = run("prepare", "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 4
    assert "put the archive from http://127.0.0.1:9/ptb.zip" in result.stderr
    assert f"at {tmp_path / 'data' / 'ptb.zip'}" in result.stderr
    assert not (tmp_path / "data" / "ptb.zip").exists()


def test_missing_mxnet_gives_install_instructions(monkeypatch, planted_corpus, workdir):
    import builtins
    import importlib

    real_import = importlib.import_module

    def no_mxnet(name, *a, **k):
        if name == "mxnet":
            raise ImportError("No module named 'mxnet'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", no_mxnet)
    assert builtins  # the CLI itself imports fine without MXNet
    run("prepare", "--corpus", str(planted_corpus), "--min-count", "1")
    result = run("train", "--epochs", "1")
    assert result.exit_code == 6
    assert "MXNet cannot be imported" in result.stderr
    assert "pip install 'mxnet==1.9.1' 'numpy<1.24'" in result.stderr


def test_a_note_after_mxnet_is_loaded_prints_once():
    # MXNet's set_np logs through logging.info, which configures the root logger; w2v's
    # notes would then show twice, the second time as "WARNING:w2v_cli...".
    import subprocess
    import sys

    code = ("import logging; from w2v_cli import backend; backend.mxnet(); "
            "print(logging.getLogger().handlers)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out == "[]\n"
