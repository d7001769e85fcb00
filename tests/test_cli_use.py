"""The query, evaluation, export and plot commands at the user's boundary, with exact output.

The model is written by hand (tests/planted_vectors.py) so every neighbour and score is known.
"""

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from planted_vectors import MATRIX, TOKENS, planted_vocab, write_model

from w2v_cli.cli import cli

NEW_COMMANDS = ["similar", "analogy", "evaluate", "export", "info", "plot"]


@pytest.fixture
def model(workdir):
    # the context table is the center one with the fruit axis doubled, to tell --which apart
    context = MATRIX * np.array([1, 1, 1, 2, 1], dtype=np.float32)
    write_model(workdir, planted_vocab(), MATRIX, context)
    return workdir


def run(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input)


@pytest.mark.parametrize("command", NEW_COMMANDS)
def test_help_of_each_new_command(command):
    result = run(command, "--help")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: cli {command} [OPTIONS]")


def test_similar_one_word(model):
    result = run("similar", "king", "-k", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("cosine sim=0.816: prince\n"
                             "cosine sim=0.707: man\n"
                             "cosine sim=0.500: queen\n")


def test_similar_several_words_get_headers(model):
    result = run("similar", "king", "apple", "-k", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("king:\ncosine sim=0.816: prince\ncosine sim=0.707: man\n"
                             "\n"
                             "apple:\ncosine sim=0.894: pear\ncosine sim=0.000: king\n")


def test_similar_json_one_object_per_query(model):
    result = run("similar", "queen", "woman", "-k", "1", "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [
        {"query": "queen", "neighbors": [{"word": "princess", "score": 0.816497}]},
        {"query": "woman", "neighbors": [{"word": "queen", "score": 0.707107}]},
    ]


def test_similar_reads_stdin_and_goes_on_after_an_unknown_word(model):
    result = run("similar", "-k", "1", "--json", input="king\nkingg\n\napple\nzz\n")
    assert result.exit_code == 2  # the unknown word's exit code, once every query is answered
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"query": "king", "neighbors": [{"word": "prince", "score": 0.816497}]},
        {"query": "kingg",
         "error": "'kingg' is not in the vocabulary (8 words); close matches: king"},
        {"query": "apple", "neighbors": [{"word": "pear", "score": 0.894427}]},
        {"query": "zz", "error": "'zz' is not in the vocabulary (8 words)"},
    ]


def test_similar_text_errors_go_to_stderr(model):
    result = run("similar", "-k", "1", input="kingg\nqueen\n")
    assert result.exit_code == 2
    assert result.stdout == "queen:\ncosine sim=0.816: princess\n"
    assert result.stderr == ("Error: 'kingg' is not in the vocabulary (8 words); "
                             "close matches: king\n")


def test_stdin_is_read_as_utf8_and_a_bad_byte_shows_as_a_replacement(model):
    """Words arrive as bytes: UTF-8 whatever the locale, an invalid byte shown as U+FFFD
    (not Python's surrogate escape '\\udcff')."""
    result = CliRunner().invoke(cli, ["similar", "-k", "1"], input=b"kin\xffg\nqueen\n")
    assert result.exit_code == 2
    assert result.stdout == "queen:\ncosine sim=0.816: princess\n"
    assert result.stderr == ("Error: 'kin\ufffdg' is not in the vocabulary (8 words); "
                             "close matches: king\n")


def test_similar_which_context_uses_the_other_table(model):
    # in the context table pear is (0, 0, 0, 2, 0.5): closer to apple than in the center one
    assert run("similar", "apple", "-k", "1").stdout == "cosine sim=0.894: pear\n"
    result = run("similar", "apple", "-k", "1", "--which", "context")
    assert result.stdout == "cosine sim=0.970: pear\n"


def test_analogy_planted_answer_comes_first(model):
    result = run("analogy", "man", "king", "woman", "-k", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("cosine sim=0.959: queen\n"
                             "cosine sim=0.783: princess\n"
                             "cosine sim=0.190: prince\n")


def test_analogy_cosmul_and_several_triples(model):
    result = run("analogy", "man", "king", "woman", "woman", "queen", "man", "-k", "2",
                 "--method", "mul")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("man : king :: woman : ?\n"
                             "3cosmul=1.278: queen\n3cosmul=1.108: princess\n"
                             "\n"
                             "woman : queen :: man : ?\n"
                             "3cosmul=1.278: king\n3cosmul=1.108: prince\n")


def test_analogy_stdin_json(model):
    result = run("analogy", "-k", "1", "--json", input="man king woman\nman king\n")
    assert result.exit_code == 2
    # cos(queen, unit(king - man + woman)) = (1/2 + 1/sqrt 2) / sqrt(3 - sqrt 2) = 0.958569
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"query": ["man", "king", "woman"], "method": "add",
         "answers": [{"word": "queen", "score": pytest.approx(0.958569, abs=1e-6)}]},
        {"query": ["man", "king"], "error": "an analogy needs 3 words A B C, got 2: 'man king'"},
    ]


def test_analogy_words_must_come_in_threes(model):
    result = run("analogy", "man", "king")
    assert result.exit_code == 2
    assert "Error: give the words in threes (A B C ...), got 2" in result.stderr


def test_evaluate_text_and_json(model, tmp_path):
    sim = tmp_path / "sim.tsv"
    sim.write_text("king prince 9\nking man 7\nking queen 7\nking apple 1\nman woman 3\n"
                   "king xyzzy 5\n")
    questions = tmp_path / "q.txt"
    questions.write_text(": royal\nman king woman queen\nman king xyzzy queen\n"
                         ": fruit\napple pear king queen\n")
    result = run("evaluate", "--similarity", str(sim), "--analogy", str(questions))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{sim}: Spearman rho 0.947 over 5 pairs (1 of 6 skipped: out of vocabulary)",
        f"{questions}: analogy accuracy (3CosAdd)",
        "  royal    100.0%      1/1      coverage 1/2",
        "  fruit      0.0%      0/1      coverage 1/1",
        "  overall   50.0%      1/2      coverage 2/3",
    ]
    out = json.loads(run("evaluate", "--similarity", str(sim), "--json").stdout)
    assert out["similarity"][0]["rho"] == pytest.approx(18 / 19)
    assert out["analogy"] == []


def test_evaluate_needs_a_file(model, tmp_path):
    result = run("evaluate")
    assert result.exit_code == 2
    assert "Error: give at least one --similarity FILE or --analogy FILE" in result.stderr
    result = run("evaluate", "--similarity", str(tmp_path / "missing.tsv"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_export_npy_keeps_rows_and_words_aligned(model, tmp_path):
    out = tmp_path / "vec.npy"
    result = run("export", "--format", "npy", "-o", str(out))
    assert result.exit_code == 0, result.output
    vocab_file = tmp_path / "vec.vocab.txt"
    assert result.stdout == f"8 words x 5 (center vectors) -> {out}, {vocab_file}\n"
    assert np.array_equal(np.load(out), MATRIX[1:])
    assert vocab_file.read_text().splitlines() == TOKENS[1:]


def test_export_sum_adds_the_tables(model, tmp_path):
    out = tmp_path / "vec.txt"
    assert run("export", "--which", "sum", "-o", str(out)).exit_code == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "8 5"
    assert lines[7] == "apple 0 0 0 3 0"  # center 1 + context 2 on the fruit axis


def test_info_on_a_trained_planted_corpus(planted_corpus, workdir, monkeypatch):
    assert run("prepare", "--corpus", str(planted_corpus), "--min-count", "1").exit_code == 0
    result = run("train", "--epochs", "2", "--subsample", "0", "--batch-size", "256",
                 "--embed-size", "8", "--log-interval", "10", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"loss curve -> {workdir / 'loss.png'}" in result.stderr
    assert (workdir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((workdir / "run.json").read_text())
    fractions = [f for f, _ in record["curve"]]
    assert fractions == sorted(fractions) and fractions[-1] == 2.0 and 1.0 in fractions
    assert [loss for f, loss in record["curve"] if f in (1.0, 2.0)] == \
        pytest.approx([e["loss"] for e in record["epochs"]])

    result = run("info")
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["corpus"] == f"1 file(s): {planted_corpus.resolve()}"
    assert lines["dataset"] == "2000 sentences, 16000 tokens (16000 kept)"
    assert lines["vocabulary"] == "33 words (min count 1)"
    assert lines["epochs"] == "2 of 2 done (complete)"
    assert lines["device"] == "cpu(0)"
    # what the defaults resolved to is shown: noise groups (with their size) in batches of
    # one row length, sparse gradients
    assert lines["settings"].endswith("bucket True, sparse-grad True")
    assert "noise-group 8, group-noise 20," in lines["settings"]
    assert "min-count" not in lines["settings"]  # the train config's is not prepare's
    assert lines["loss"].startswith("1: ") and "  2: " in lines["loss"]
    summary = json.loads(run("info", "--json").stdout)
    assert summary["run"]["epochs"][1]["epoch"] == 2
    assert set(summary["files"]) == {"vocab.json", "ids.npy", "offsets.npy", "model.params",
                                      "run.json", "loss.png"}
    assert summary["problems"] == [] and "problem" not in lines

    # without matplotlib training still succeeds and says the plot was skipped
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = run("train", "--epochs", "1", "--subsample", "0", "--embed-size", "8")
    assert result.exit_code == 0, result.output
    assert "loss plot skipped: plotting needs matplotlib" in result.stderr


def test_info_before_training(planted_corpus, workdir):
    assert run("prepare", "--corpus", str(planted_corpus), "--min-count", "1").exit_code == 0
    result = run("info")
    assert result.exit_code == 0, result.output
    assert "model       not trained yet (run `w2v train`)" in result.stdout
    assert run("info", "--workdir", str(workdir / "nothing")).stderr == (
        f"Error: no prepared dataset in {workdir / 'nothing'}: run `w2v prepare` first\n")


def test_info_names_what_the_other_commands_would_refuse(planted_corpus, workdir):
    assert run("prepare", "--corpus", str(planted_corpus), "--min-count", "1").exit_code == 0
    result = run("train", "--epochs", "1", "--embed-size", "8", "--device", "cpu")
    assert result.exit_code == 0, result.output
    # prepared again with another vocabulary: the model no longer fits it
    assert run("prepare", "--corpus", str(planted_corpus), "--min-count", "1",
               "--max-vocab", "20").exit_code == 0
    (workdir / "offsets.npy").unlink()
    summary = json.loads(run("info", "--json").stdout)
    assert summary["problems"] == [
        "offsets.npy is missing: run `w2v prepare` again",
        "the model was trained on another vocabulary than vocab.json holds now (was `w2v "
        "prepare` run again?): run `w2v train`"]
    result = run("info")
    assert result.exit_code == 0
    assert [line.split(None, 1)[1] for line in result.stdout.splitlines()
            if line.startswith("problem ")] == summary["problems"]


def test_info_names_arrays_too_short_for_what_the_json_says(planted_corpus, workdir):
    assert run("prepare", "--corpus", str(planted_corpus), "--min-count", "1").exit_code == 0
    assert run("train", "--epochs", "1", "--embed-size", "8", "--device", "cpu").exit_code == 0
    vocab = json.loads((workdir / "vocab.json").read_text())
    V, kept = len(vocab["tokens"]), vocab["stats"]["kept_tokens"]
    for name in ("ids.npy", "model.params"):
        with open(workdir / name, "r+b") as f:
            f.truncate(1000)
    assert json.loads(run("info", "--json").stdout)["problems"] == [
        f"ids.npy is 1000 bytes, too short to hold {4 * kept} bytes of data: it is damaged, "
        "run `w2v prepare` again",
        f"model.params is 1000 bytes, too short for two {V} x 8 tables: it is damaged, run "
        "`w2v train` again"]


@pytest.mark.parametrize("center,context,error", [
    (MATRIX, MATRIX[:, :3], "the tables' shapes differ: center (9, 5), context (9, 3)"),
    (MATRIX.astype(np.float64), MATRIX, "the center table's dtype is float64, expected float32"),
    (MATRIX, MATRIX.astype(np.float16), "the context table's dtype is float16, expected float32"),
])
def test_tables_of_another_shape_or_dtype_are_refused(workdir, tmp_path, center, context, error):
    from w2v_cli.backend import mxnet

    write_model(workdir, planted_vocab(), MATRIX)  # then the tables are replaced
    nd = mxnet().nd
    nd.save(str(workdir / "model.params"), {"0.weight": nd.array(center, dtype=center.dtype),
                                            "1.weight": nd.array(context, dtype=context.dtype)})
    for args in (["similar", "king"], ["export", "--which", "sum", "-o", str(tmp_path / "out")]):
        result = run(*args)
        assert result.exit_code == 5
        assert result.stderr == (f"Error: {workdir / 'model.params'}: {error}; the file is "
                                 "damaged or not from `w2v train` (re-run `w2v train`)\n")
    assert not (tmp_path / "out").exists()


GOOD_RUN = {"config": {"epochs": 2}, "device": "cpu(0)", "complete": False, "dataset": {},
            "epochs": [{"epoch": 1, "loss": 0.5, "seconds": 2.0, "tokens": 100}]}


@pytest.mark.parametrize("field,value,done,shown", [
    ("dataset", 5, "1 of 2", "an object"), ("config", None, "1 of 1", "an object"),
    *[("epochs", v, "? of 2", "a list of objects, each with an epoch and numbers for loss, "
       "seconds and tokens") for v in (None, [5], [{"epoch": 1, "loss": "NaN"}],
                                       [{"epoch": 1, "loss": 0.5, "seconds": "2"}])],
])
def test_info_shows_a_malformed_run_field_as_a_problem(workdir, field, value, done, shown):
    from w2v_cli import params

    planted_vocab().save(workdir / "vocab.json")
    params.save_record(workdir, {**GOOD_RUN, field: value})
    problems = [f'{workdir / "run.json"}: "{field}" is not {shown}; it is left out',
                "ids.npy is missing: run `w2v prepare` again",
                "offsets.npy is missing: run `w2v prepare` again",
                "model.params is missing: run `w2v train`"]
    result = run("info")
    assert result.exit_code == 0, result.output
    lines = [(name, text.strip()) for name, _, text in
             (line.partition(" ") for line in result.stdout.splitlines())]
    assert dict(lines)["epochs"] == f"{done} done (incomplete)"
    assert [text for name, text in lines if name == "problem"] == problems
    result = run("info", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert field not in summary["run"] and summary["problems"] == problems


def test_plot_writes_a_labelled_png(model, tmp_path):
    out = tmp_path / "map.png"
    result = run("plot", "king", "apple", "-k", "2", "-o", str(out))
    assert result.exit_code == 0, result.output
    # king's neighbours prince, man; apple's pear and king (already drawn)
    assert result.stdout == f"5 words -> {out}\n"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_format_follows_the_suffix_and_an_unknown_one_is_refused(model, tmp_path):
    for name, magic in (("map.svg", b"<?xml"), ("map.PDF", b"%PDF-"), ("map", b"\x89PNG"),
                        (".svg", b"<?xml")):  # a dot-file's name is its suffix
        result = run("plot", "king", "-k", "2", "-o", str(tmp_path / name))
        assert result.exit_code == 0, result.output
        assert (tmp_path / name).read_bytes().startswith(magic), name
    result = run("plot", "king", "-o", str(tmp_path / "map.jpg"))
    assert result.exit_code == 2
    assert result.stderr == (f"Error: --output {tmp_path / 'map.jpg'}: a plot is written as "
                             "PNG, SVG or PDF, chosen by the suffix (.png, .svg, .pdf); .jpg "
                             "is none of them\n")
    assert not (tmp_path / "map.jpg").exists()
    assert run("plot", "king", "-o", str(tmp_path / "map.svg.")).exit_code == 2


def test_plot_without_matplotlib_says_what_to_install(model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = run("plot", "king", "-o", str(tmp_path / "map.png"))
    assert result.exit_code == 7
    assert "Error: plotting needs matplotlib" in result.stderr
    assert "pip install 'w2v[plot]'" in result.stderr
    assert not (tmp_path / "map.png").exists()


def test_export_tsv_writes_the_projector_pair(model, tmp_path):
    result = run("export", "--format", "tsv", "-o", str(tmp_path / "proj"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "proj" / "metadata.tsv").read_text().splitlines() == TOKENS[1:]
    vectors = np.loadtxt(tmp_path / "proj" / "vectors.tsv", delimiter="\t", dtype=np.float32)
    np.testing.assert_array_equal(vectors, MATRIX[1:])
