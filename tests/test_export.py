"""Exported vectors read back by gensim (a test-only dependency) equal ours to 1e-6."""

import numpy as np
import pytest
from planted_vectors import planted_vocab

from w2v_cli import export
from w2v_cli.errors import UsageError
from w2v_cli.vectors import Vectors
from w2v_cli.vocab import Vocab


def random_vectors(seed=0, dim=7):
    vocab = planted_vocab()
    rng = np.random.default_rng(seed)
    # a spread of magnitudes and signs, so precision loss in the text format would show
    matrix = rng.normal(size=(len(vocab), dim)) * 10.0 ** rng.integers(-4, 2, size=(1, dim))
    return Vectors(vocab, matrix.astype(np.float32))


@pytest.mark.parametrize("fmt, binary", [("word2vec", False), ("word2vec-binary", True)])
def test_gensim_reads_both_word2vec_formats(tmp_path, fmt, binary):
    models = pytest.importorskip("gensim.models")
    v = random_vectors()
    path = tmp_path / "vectors.bin"
    assert export.export(v, fmt, path) == [path]
    kv = models.KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert kv.index_to_key == v.vocab.tokens[1:]  # <unk> left out, order kept
    assert kv.vectors.shape == (len(v.vocab) - 1, 7)
    np.testing.assert_allclose(kv.vectors, v.matrix[1:], rtol=0, atol=1e-6)
    # gensim's own neighbour search agrees with ours on the same vectors
    assert [w for w, _ in kv.most_similar("king", topn=3)] == \
        [w for w, _ in v.most_similar("king", 3)]


def test_text_format_layout(tmp_path):
    vocab = Vocab(["<unk>", "a", "b"], np.array([0, 2, 1]))
    v = Vectors(vocab, np.array([[9, 9], [0.5, -1.25], [1e-7, 3]], dtype=np.float32))
    path = tmp_path / "v.txt"
    export.export(v, "word2vec", path)
    assert path.read_text() == "2 2\na 0.5 -1.25\nb 1.00000001e-07 3\n"
    export.export(v, "word2vec-binary", path)
    assert path.read_bytes() == (b"2 2\na " + np.array([0.5, -1.25], "<f4").tobytes() + b"\n"
                                 + b"b " + np.array([1e-7, 3], "<f4").tobytes() + b"\n")


def test_export_refuses_a_directory_and_leaves_no_temporary_files(tmp_path):
    with pytest.raises(UsageError, match="is a directory"):
        export.export(random_vectors(), "npy", tmp_path)
    export.export(random_vectors(), "npy", tmp_path / "v")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v", "v.vocab.txt"]


def test_tsv_pair_for_the_projector_has_one_row_per_word_in_order(tmp_path):
    vocab = Vocab(["<unk>", "a b", "café", "#x", "b"], np.array([0, 4, 3, 2, 1]))
    v = Vectors(vocab, random_vectors(dim=5).matrix[:5])
    out = tmp_path / "projector"  # made if missing
    assert export.export(v, "tsv", out) == [out / "vectors.tsv", out / "metadata.tsv"]
    metadata = (out / "metadata.tsv").read_text(encoding="utf-8").split("\n")
    assert metadata == ["a b", "café", "#x", "b", ""]  # no header: a single column
    rows = (out / "vectors.tsv").read_text().splitlines()
    assert len(rows) == 4 and all(len(r.split("\t")) == 5 for r in rows)
    np.testing.assert_array_equal(np.array([r.split("\t") for r in rows], dtype=np.float32),
                                  v.matrix[1:])
    assert sorted(p.name for p in out.iterdir()) == ["metadata.tsv", "vectors.tsv"]


@pytest.mark.parametrize("word", ["a\tb", "a\nb", "a\rb", "a\u2028b"])
def test_tsv_refuses_a_word_that_would_shift_the_rows(tmp_path, word):
    v = Vectors(Vocab(["<unk>", "ok", word], np.array([0, 2, 1])), np.ones((3, 2)))
    with pytest.raises(UsageError, match="holds a tab or line break"):
        export.export(v, "tsv", tmp_path / "p")
    assert not (tmp_path / "p").exists()
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match="is not a folder; --format tsv writes one"):
        export.export(Vectors(Vocab(["<unk>", "ok"], np.array([0, 1])), np.ones((2, 2))),
                      "tsv", tmp_path / "f")
