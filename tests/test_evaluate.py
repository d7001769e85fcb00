"""Queries and evaluation on hand-made vectors: every expected number is worked out by hand."""

import math

import numpy as np
import pytest
from planted_vectors import planted_vectors, planted_vocab

from w2v_cli import evaluate as ev
from w2v_cli import vectors as vectors_mod
from w2v_cli.errors import DataError, UsageError
from w2v_cli.vectors import Vectors


def test_neighbours_are_the_hand_computed_cosines():
    v = planted_vectors()
    got = v.most_similar("king", 3)
    # unit(king) = (1, 1, 0, 0, 0) / sqrt 2; prince has norm sqrt 3
    assert [w for w, _ in got] == ["prince", "man", "queen"]
    assert np.allclose([s for _, s in got], [2 / math.sqrt(6), 1 / math.sqrt(2), 0.5])


def test_3cosadd_finds_the_planted_analogy_first():
    v = planted_vectors()
    got = v.analogy("man", "king", "woman", k=3)
    # target t = u(king) - u(man) + u(woman) = (r, r - 1, 1, 0, 0), r = 1/sqrt 2
    r = 1 / math.sqrt(2)
    t = np.array([r, r - 1, 1, 0, 0])
    t /= np.linalg.norm(t)
    queen = np.array([1, 0, 1, 0, 0]) / math.sqrt(2)
    princess = np.array([1, 0, 1, 0, 1]) / math.sqrt(3)
    prince = np.array([1, 1, 0, 0, 1]) / math.sqrt(3)
    assert [w for w, _ in got] == ["queen", "princess", "prince"]
    assert np.allclose([s for _, s in got], [t @ queen, t @ princess, t @ prince], atol=1e-6)


def test_3cosmul_scores_follow_levy_and_goldberg():
    v = planted_vectors()
    got = v.analogy("man", "king", "woman", k=2, method="mul")

    def shift(c):
        return (c + 1) / 2

    # queen: cos with king 1/2, with woman 1/sqrt 2, with man 0
    queen = shift(0.5) * shift(1 / math.sqrt(2)) / (shift(0) + 1e-3)
    # princess: cos with king 1/sqrt 6, with woman 1/sqrt 3, with man 0
    princess = shift(1 / math.sqrt(6)) * shift(1 / math.sqrt(3)) / (shift(0) + 1e-3)
    assert [w for w, _ in got] == ["queen", "princess"]
    assert np.allclose([s for _, s in got], [queen, princess], atol=1e-5)


def test_batched_queries_match_one_at_a_time_across_chunks(monkeypatch):
    rng = np.random.default_rng(3)
    vocab = planted_vocab()
    v = Vectors(vocab, rng.normal(size=(len(vocab), 6)))
    monkeypatch.setattr(vectors_mod, "CHUNK_CELLS", 2 * len(vocab))  # 2 queries a chunk
    ids = np.arange(1, len(vocab))
    top, sims = v.most_similar_ids(ids, 4)
    for i, row, srow in zip(ids, top, sims):
        one = v.nearest(v.matrix[i], 4, exclude=[i])
        assert [vocab.tokens[j] for j in row] == [w for w, _ in one]
        assert np.allclose(srow, [s for _, s in one], atol=1e-6)
    a, b, c = ids[:5], ids[1:6], ids[2:7]
    for method in ("add", "mul"):
        top, _ = v.analogy_ids(a, b, c, k=2, method=method)
        for row, x, y, z in zip(top, a, b, c):
            words = [vocab.tokens[i] for i in (x, y, z)]
            assert [vocab.tokens[j] for j in row] == \
                [w for w, _ in v.analogy(*words, k=2, method=method)]


def test_query_errors_name_the_word_and_the_limit():
    v = planted_vectors()
    with pytest.raises(UsageError, match=r"'kingg' is not in the vocabulary \(8 words\); "
                                         r"close matches: king"):
        v.most_similar("kingg")
    with pytest.raises(UsageError, match="-k must be between 1 and 5"):
        v.analogy("man", "king", "woman", k=6)
    with pytest.raises(UsageError, match="--method must be one of add, mul"):
        v.analogy("man", "king", "woman", method="sub")


def test_rankdata_averages_ties():
    assert ev.rankdata(np.array([10, 20, 20, 30, 10])).tolist() == [1.5, 3.5, 3.5, 5, 1.5]


def test_spearman_matches_scipy_on_data_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 6, 200), rng.integers(0, 6, 200) + rng.integers(0, 2, 200)
    assert ev.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)


SIMILARITY_FILE = """\
# a comment, then a header line
word1\tword2\tscore
king\tprince\t9.0
king man 7.0
king\tqueen\t7.0
king\tapple\t1.0
man\twoman\t3.0
king\txyzzy\t5.0
"""


def test_spearman_on_a_five_pair_file_by_hand(tmp_path):
    path = tmp_path / "sim.tsv"
    path.write_text(SIMILARITY_FILE)
    result = ev.evaluate_similarity(planted_vectors(), ev.read_similarity(path))
    # human ranks (5, 3.5, 3.5, 1, 2); cosines .816 .707 .5 0 0 rank (5, 4, 3, 1.5, 1.5).
    # Deviations from the mean 3: (2, .5, .5, -2, -1) and (2, 1, 0, -1.5, -1.5):
    # rho = 9 / sqrt(9.5 * 9.5) = 18 / 19
    assert result["rho"] == pytest.approx(18 / 19, abs=1e-9)
    assert (result["pairs"], result["skipped"], result["total"]) == (5, 1, 6)
    assert ev.format_similarity(result) == (
        f"{path}: Spearman rho 0.947 over 5 pairs (1 of 6 skipped: out of vocabulary)")


def test_similarity_file_errors_give_the_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("king queen 5\nking queen\n")
    with pytest.raises(DataError, match=r"bad.tsv:2: expected `word1 word2 score`"):
        ev.read_similarity(path)
    with pytest.raises(DataError, match="does not exist"):
        ev.read_similarity(tmp_path / "missing.tsv")


def test_simlex_columns_read_the_first_number_after_the_words(tmp_path):
    path = tmp_path / "simlex.txt"
    path.write_text("word1\tword2\tPOS\tSimLex999\tconc(w1)\nold\tnew\tA\t1.58\t2.72\n")
    pairs = ev.read_similarity(path)
    assert (pairs.words1, pairs.words2, pairs.scores.tolist()) == (["old"], ["new"], [1.58])


ANALOGY_FILE = """\
: royal
man king woman queen
woman queen man king
man prince woman princess
man king xyzzy queen
: fruit
apple pear king queen
KING Queen MAN Woman
"""


def test_analogy_accuracy_per_section_with_oov_and_case(tmp_path):
    path = tmp_path / "questions.txt"
    path.write_text(ANALOGY_FILE)
    questions = ev.read_analogies(path)
    v = planted_vectors()
    folded = ev.evaluate_analogies(v, questions)
    # royal: 3 of 3 answerable right (xyzzy is out of vocabulary);
    # fruit: pear - apple + king is nearer prince than queen (wrong), the capitalised line right
    assert [(s["section"], s["correct"], s["questions"], s["total"])
            for s in folded["sections"]] == [("royal", 3, 3, 4), ("fruit", 1, 2, 2)]
    assert folded["overall"] == {"correct": 4, "questions": 5, "total": 6,
                                 "accuracy": 0.8, "coverage": 5 / 6}
    kept = ev.evaluate_analogies(v, questions, fold_case=False)
    assert [(s["correct"], s["questions"]) for s in kept["sections"]] == [(3, 3), (0, 1)]
    assert ev.format_analogies(folded) == [
        f"{path}: analogy accuracy (3CosAdd)",
        "  royal    100.0%      3/3      coverage 3/4",
        "  fruit     50.0%      1/2      coverage 2/2",
        "  overall   80.0%      4/5      coverage 5/6",
    ]


def test_analogy_file_errors(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text(": s\nman king woman\n")
    with pytest.raises(DataError, match=r"q.txt:2: expected 4 words"):
        ev.read_analogies(path)
    path.write_text("man king woman queen\n")
    assert ev.read_analogies(path).sections == [ev.NO_SECTION]
