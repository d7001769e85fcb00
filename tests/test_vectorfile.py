"""`--vectors FILE`: word2vec text and binary files read without MXNet, answering as the workdir.

The same vectors asked through the workdir and through a file (ours, gensim's, hand-written)
must give the same words in the same order and scores within 1e-6.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from planted_vectors import write_model

from w2v_cli import export, vectorfile
from w2v_cli.cli import cli
from w2v_cli.errors import DataError
from w2v_cli.evaluate import score
from w2v_cli.vectors import Vectors
from w2v_cli.vocab import Vocab

ODD = ["café", "日本語", "a#b", "#", "don't", "!?", "<s>", "x" * 300, "naïve-ωμέγα", "<unk>x"]


def odd_vocab(n_plain=40) -> Vocab:
    tokens = ["<unk>"] + [f"w{i}" for i in range(n_plain)] + ODD
    return Vocab(tokens, np.arange(len(tokens))[::-1].copy())


def odd_matrix(vocab: Vocab, dim=8, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(len(vocab), dim)) * 10.0 ** rng.integers(-3, 2, size=(1, dim))
            ).astype(np.float32)


def run(*args):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def odd_model(workdir):
    vocab = odd_vocab()
    write_model(workdir, vocab, odd_matrix(vocab), odd_matrix(vocab, seed=1))
    return workdir


@pytest.fixture
def eval_files(tmp_path):
    sim = tmp_path / "sim.txt"
    sim.write_text("w1 w2 3\nw3 café 1\n日本語 a#b 7\nw5 w9 2.5\nw0 # 9\nw7 xyzzy 4\n"
                   "CAFÉ w11 5\n", encoding="utf-8")
    q = tmp_path / "q.txt"
    q.write_text(": one\nw1 w2 w3 w4\ncafé 日本語 a#b #\n: two\nw5 w6 w7 w8\nw9 w10 xyzzy w11\n"
                 "don't !? <s> w12\n", encoding="utf-8")
    return sim, q


def answers(*args):
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_same_hits(a, b, key):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert [h["word"] for h in x[key]] == [h["word"] for h in y[key]]
        np.testing.assert_allclose([h["score"] for h in x[key]], [h["score"] for h in y[key]],
                                   rtol=0, atol=1e-6)


@pytest.mark.parametrize("fmt", ["word2vec", "word2vec-binary"])
def test_our_export_answers_as_the_workdir(odd_model, eval_files, tmp_path, fmt):
    path = tmp_path / "v.out"
    assert run("export", "--format", fmt, "-o", str(path), "--which", "sum").exit_code == 0
    words = ["w0", "café", "a#b", "x" * 300, "w39"]
    assert_same_hits(answers("similar", *words, "-k", "7", "--which", "sum"),
                     answers("similar", *words, "-k", "7", "--vectors", str(path)), "neighbors")
    triples = ["w1", "w2", "w3", "café", "日本語", "#", "don't", "!?", "<s>"]
    for method in ("add", "mul"):
        assert_same_hits(
            answers("analogy", *triples, "-k", "5", "--method", method, "--which", "sum"),
            answers("analogy", *triples, "-k", "5", "--method", method, "--vectors", str(path)),
            "answers")
    sim, q = map(str, eval_files)
    ours = answers("evaluate", "--similarity", sim, "--analogy", q, "--which", "sum")[0]
    theirs = answers("evaluate", "--similarity", sim, "--analogy", q, "--vectors", str(path))[0]
    assert ours.pop("which") == "sum" and theirs.pop("vectors") == str(path)
    assert ours["analogy"] == theirs["analogy"]
    assert ours["similarity"][0].pop("rho") == pytest.approx(theirs["similarity"][0].pop("rho"),
                                                             abs=1e-6)
    assert ours == theirs


def test_a_file_has_no_unk_row_so_row_0_is_an_answer(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("3 2\nfirst 1 0\nsecond 0.9 0.1\nthird 0 1\n")
    v = vectorfile.load(path)
    assert v.first == 0 and v.n_words == 3
    assert [w for w, _ in v.most_similar("second", 2)] == ["first", "third"]
    assert v.find("first") == 0 and v.find("nope") == -1
    assert [w for w, _ in v.analogy("third", "second", "third", 1)] == ["first"]


def hand_binary(words, matrix, newline=True) -> bytes:
    out = [f"{len(words)} {matrix.shape[1]}\n".encode()]
    for w, row in zip(words, matrix.astype("<f4")):
        out += [w.encode(), b" ", row.tobytes(), b"\n" if newline else b""]
    return b"".join(out)


@pytest.mark.parametrize("newline", [True, False])
def test_hand_written_binary_with_odd_words(tmp_path, newline):
    matrix = odd_matrix(odd_vocab(0))[1:]
    path = tmp_path / "v.bin"
    path.write_bytes(hand_binary(ODD, matrix, newline))
    for fmt in ("auto", "word2vec-binary"):
        v = vectorfile.load(path, fmt)
        assert v.tokens == ODD
        np.testing.assert_array_equal(v.matrix, matrix)


def test_hand_written_text_as_the_c_tool_writes_it(tmp_path):
    # the C tool ends each value with a space; tabs and a CRLF line end are read too
    path = tmp_path / "v.txt"
    path.write_bytes("4 3\na#b 1 2 3 \n日本語\t-1.5e-3 0 4\r\n!? 0 0 1 \n<unk> 1 1 1\n"
                     .encode())
    v = vectorfile.load(path)
    assert v.tokens == ["a#b", "日本語", "!?", "<unk>"]
    np.testing.assert_array_equal(
        v.matrix, np.array([[1, 2, 3], [-1.5e-3, 0, 4], [0, 0, 1], [1, 1, 1]], np.float32))
    assert v.source == {"vectors": str(path)}


def test_a_pipe_is_read_whole(tmp_path):
    # `--vectors <(zcat v.txt.gz)` or /dev/stdin: a FIFO has no size to map
    import os
    import threading

    path = tmp_path / "v.fifo"
    os.mkfifo(path)
    writer = threading.Thread(target=lambda: path.write_bytes(b"2 2\nx 1 0\ny 0 1\n"))
    writer.start()
    v = vectorfile.load(path)
    writer.join()
    assert v.tokens == ["x", "y"]
    np.testing.assert_array_equal(v.matrix, np.eye(2, dtype=np.float32))


@pytest.mark.parametrize("binary", [False, True])
def test_gensim_files_read_identically(tmp_path, binary):
    models = pytest.importorskip("gensim.models")
    matrix = odd_matrix(odd_vocab(30))[1:]
    words = [f"w{i}" for i in range(30)] + ODD
    kv = models.KeyedVectors(vector_size=matrix.shape[1])
    kv.add_vectors(words, matrix)
    path = tmp_path / "g.bin"
    kv.save_word2vec_format(str(path), binary=binary)
    v = vectorfile.load(path)
    assert v.tokens == words
    np.testing.assert_array_equal(v.matrix, matrix)
    assert [(w, pytest.approx(s, abs=1e-6)) for w, s in kv.most_similar("café", topn=5)] \
        == v.most_similar("café", 5)
    # and gensim reads back what we convert its file to
    out = tmp_path / "ours.bin"
    export.export(v, "word2vec-binary" if binary else "word2vec", out)
    again = models.KeyedVectors.load_word2vec_format(str(out), binary=binary)
    assert again.index_to_key == words
    np.testing.assert_array_equal(again.vectors, matrix)


def test_export_converts_text_to_binary(tmp_path):
    vocab = odd_vocab()
    v = Vectors(vocab, odd_matrix(vocab))
    text, binary = tmp_path / "v.txt", tmp_path / "v.bin"
    export.export(v, "word2vec", text)
    result = run("export", "--vectors", str(text), "--format", "word2vec-binary", "-o",
                 str(tmp_path / "converted.bin"))
    assert result.exit_code == 0, result.output
    assert f"{len(vocab) - 1} words x 8 (from {text})" in result.stdout
    export.export(v, "word2vec-binary", binary)
    assert (tmp_path / "converted.bin").read_bytes() == binary.read_bytes()


def test_which_does_not_apply_to_a_file(odd_model, tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("1 2\na 1 2\n")
    result = run("similar", "a", "--vectors", str(path), "--which", "context")
    assert result.exit_code == 2
    assert "--which chooses a workdir's table; it does not apply to --vectors" in result.stderr


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"a 1 2\n", "the first line must be `count dim`"),
    (b"2 3 4\nx 1 2 3\n", "the first line must be `count dim`"),
    (b"2 3\nx 1 2 3\ny 1 2\n", "row 2: expected a word and 3 values, got 2 values"),
    (b"2 3\nx 1 2 3\ny 1 2 oops\n", "row 2: a value is not a number"),
    (b"3 3\nx 1.5 2.5 3.5\ny 1.5 2.5 3.5\n",
     "the header says 3 words but the file ends after 2"),
    (b"1 3\nx 1 2 3\ny 1 2 3\n", "text after the 1 rows the header announces"),
    (b"2 3\nx 1 2 3\nx 4 5 6\n", "the word 'x' appears twice, in rows 1 and 2"),
    (b"2 3\nx 1 2 3\ny 1 nan 3\n", "row 2 ('y') holds a NaN or infinite value"),
    (b"1 3\n\xe9t\xe9 1 2 3\n", "the word of row 1 is not valid UTF-8"),
    (b"2 3\nxxxx " + np.ones(3, "<f4").tobytes() + b"\nyyyy " + np.ones(2, "<f4").tobytes(),
     "the file ends inside row 2 of the 2"),
    # rows the header claims that cannot fit, refused before a matrix is allocated for them
    (b"1000000000 1000000000\na 1 2\n", "the header says 1000000000 words of 1000000000 "
     "values, more than the 6 bytes after it can hold (a wrong header, or a truncated file)"),
    (b"100000000 300\na 1 2\n", "the header says 100000000 words of 300 values, more than"),
    (b"3 3\nx 1 2 3\ny 1 2 3\n", "the header says 3 words of 3 values, more than the 16 bytes"),
    (b"2 3\nx " + np.ones(3, "<f4").tobytes() + b"\ny " + np.ones(2, "<f4").tobytes(),
     "the header says 2 words of 3 values, more than the 25 bytes"),
    (b"1 2\nx " + np.array([1, np.inf], "<f4").tobytes(), "row 1 ('x') holds a NaN"),
])
def test_bad_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.vec"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        vectorfile.load(path)
    result = run("similar", "x", "--vectors", str(path))
    assert result.exit_code == 3 and f"Error: {path}" in result.stderr


def test_running_out_of_memory_is_a_data_error(tmp_path, monkeypatch):
    path = tmp_path / "v.txt"
    path.write_text("1 2\nx 1 2\n")

    def out_of_memory(*args):
        raise MemoryError
    monkeypatch.setattr(vectorfile, "_read_text", out_of_memory)
    result = run("export", "--vectors", str(path), "-o", str(tmp_path / "out.txt"))
    assert result.exit_code == 3
    assert result.stderr == f"Error: not enough memory to read {path}\n"


def test_score_is_what_evaluate_json_prints(odd_model, eval_files):
    sim, q = map(str, eval_files)
    printed = answers("evaluate", "--similarity", sim, "--analogy", q, "--method", "mul",
                      "--which", "context")[0]
    v = Vectors.load(odd_model, "context")
    assert score(v, [sim], [q], method="mul") == printed


BLOCK_MXNET = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "mxnet" or name.startswith("mxnet."):
            raise ImportError("mxnet is blocked in this test")
sys.meta_path.insert(0, Block())
from w2v_cli.cli import cli
cli(sys.argv[1:])
"""


def test_vectors_never_import_mxnet(tmp_path, eval_files):
    vocab = odd_vocab()
    path = tmp_path / "v.bin"
    export.export(Vectors(vocab, odd_matrix(vocab)), "word2vec-binary", path)
    sim, q = map(str, eval_files)
    root = Path(__file__).resolve().parents[1]
    for args in (["similar", "café", "-k", "3"], ["analogy", "w1", "w2", "w3"],
                 ["evaluate", "--similarity", sim, "--analogy", q],
                 ["export", "--format", "word2vec", "-o", str(tmp_path / "v.txt")],
                 ["plot", "café", "-k", "2", "-o", str(tmp_path / "map.png")]):
        proc = subprocess.run([sys.executable, "-c", BLOCK_MXNET, *args, "--vectors", str(path)],
                              capture_output=True, text=True, cwd=root,
                              env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr
