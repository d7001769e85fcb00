"""Frozen embeddings for queries: the vocabulary plus a row-normalized matrix.

Every query is a matrix product against ``unit``: one row of scores per query, then
``np.argpartition`` for the top k. Batches of queries are one (n, E) @ (E, V) product, taken
in chunks of rows so the (n, V) score matrix stays small.

A workdir's table has ``<unk>`` as row 0, which is never found nor returned; vectors read
from another tool's file (``vectorfile``) have no such row, so every row is a word. ``first``
says which: the rows before it are not words.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np

from . import params
from .dataset import VOCAB_FILE
from .errors import ModelError, UsageError
from .vocab import Vocab

WHICH = ("center", "context", "sum")
METHODS = ("add", "mul")
COSMUL_EPS = 1e-3  # Levy and Goldberg (2014): keeps 3CosMul finite when cos(d, a) is near -1
CHUNK_CELLS = 1 << 23  # (rows x V) float32 scores per chunk: 32 MiB
MISSING = -1  # the id ``find`` gives a word that is not in the vocabulary


class Vectors:
    """tokens: V strings, row i's label; the rows before ``first`` (a workdir's <unk>) are
    never found nor returned. matrix: (V, E) float32. unit: (V, E) float32, each row scaled
    to length 1 (zero rows stay zero). source: what the vectors are, as ``evaluate --json``
    labels them ({"which": "center"} or {"vectors": path})."""

    def __init__(self, vocab: Vocab | None, matrix: np.ndarray, tokens: list[str] | None = None,
                 source: dict | None = None):
        self.vocab = vocab
        self.tokens = vocab.tokens if vocab is not None else list(tokens)
        self.first = 1 if vocab is not None else 0  # a Vocab's row 0 is <unk>
        self.index = vocab.index if vocab is not None else \
            {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise UsageError("the words of a vector table must be distinct")
        self.source = dict(source or ({"which": "center"} if vocab is not None else {}))
        self.matrix = np.asarray(matrix, dtype=np.float32)
        V = len(self.tokens)
        if self.matrix.ndim != 2 or self.matrix.shape[0] != V:
            raise UsageError(f"a ({V}, E) matrix is needed for {V} words, "
                             f"got shape {self.matrix.shape}")
        norms = np.linalg.norm(self.matrix, axis=1, keepdims=True)
        self.unit = self.matrix / np.maximum(norms, 1e-12)
        self._folded: dict[str, int] | None = None

    @classmethod
    def from_words(cls, words: list[str], matrix: np.ndarray,
                   source: dict | None = None) -> Vectors:
        """Vectors with no <unk> row: words[i] labels matrix row i, every row a word."""
        return cls(None, matrix, tokens=words, source=source)

    @property
    def n_words(self) -> int:
        """How many rows are words (all but a workdir's <unk>)."""
        return len(self.tokens) - self.first

    def words(self) -> tuple[list[str], np.ndarray]:
        """The words and their raw vectors, <unk> left out: (words, (n_words, E) float32)."""
        return self.tokens[self.first:], self.matrix[self.first:]

    @classmethod
    def load(cls, workdir: Path, which: str = "center") -> Vectors:
        """Load the vocab JSON and one table (``center``, ``context`` or ``sum``)."""
        if which not in WHICH:
            raise UsageError(f"--which must be one of {', '.join(WHICH)}, got {which!r}")
        vocab = Vocab.load(workdir / VOCAB_FILE)
        record = params.load_record_if_any(workdir)  # read once, for both checks
        tables = params.load_tables(workdir, len(vocab), record)
        params.check_vocab(workdir, vocab, record)
        matrix = tables["center"] + tables["context"] if which == "sum" else tables[which]
        _check_finite(matrix, workdir / params.PARAMS_FILE, which)
        return cls(vocab, matrix, source={"which": which})

    # ---- words <-> ids -------------------------------------------------------------------

    def find(self, word: str, fold_case: bool = False) -> int:
        """The id of ``word``, or MISSING (-1) when it is not in the vocabulary.

        fold_case: match case-insensitively; when several tokens fold alike, the most
        frequent (lowest id) wins, so ``Paris`` finds ``paris`` in a lowercased corpus.
        """
        if not fold_case:
            i = self.index.get(word, MISSING)
            return i if i >= self.first else MISSING
        if self._folded is None:
            # reversed: the lowest id of a folded form is written last and wins
            self._folded = {t.casefold(): i for i, t in reversed(list(enumerate(self.tokens)))
                            if i >= self.first}
        return self._folded.get(word.casefold(), MISSING)

    def find_all(self, words, fold_case: bool = False) -> np.ndarray:
        """Ids of many words, MISSING (-1) for those out of the vocabulary. Returns (len(words),) int64."""
        return np.array([self.find(w, fold_case) for w in words], dtype=np.int64)

    def id_of(self, word: str) -> int:
        """The id of ``word``; UsageError naming close matches when it is not in the vocabulary."""
        i = self.find(word)
        if i == MISSING:
            close = difflib.get_close_matches(word, self.tokens[self.first:], n=5)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise UsageError(f"{word!r} is not in the vocabulary ({self.n_words} words){hint}")
        return i

    def check_k(self, k: int, excluded: int) -> None:
        candidates = self.n_words - excluded
        if candidates < 1:
            raise UsageError(f"the vectors hold {self.n_words} word{'s' * (self.n_words != 1)}: "
                             f"none is left to return once the {excluded} query word"
                             f"{'s' * (excluded != 1)} {'are' if excluded != 1 else 'is'} "
                             "left out")
        if not 1 <= k <= candidates:
            raise UsageError(f"-k must be between 1 and {candidates} (the words that can be "
                             f"returned), got {k}")

    def _named(self, top: np.ndarray, scores: np.ndarray) -> list[tuple[str, float]]:
        return [(self.tokens[j], float(s)) for j, s in zip(top, scores)]

    # ---- nearest neighbours ----------------------------------------------------------------

    def most_similar(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The k words with the highest cosine similarity to ``word``, itself and <unk> excluded."""
        i = self.id_of(word)
        top, sims = self.most_similar_ids(np.array([i]), k)
        return self._named(top[0], sims[0])

    def most_similar_ids(self, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest neighbours of many words at once, each word itself excluded.

        ids: (n,) int, all found (none MISSING). Returns (top (n, k) int64, cosines (n, k) float32),
        best first in each row.
        """
        ids = np.asarray(ids, dtype=np.int64)
        self.check_k(k, excluded=1)
        return self._top_k(self.unit[ids], k, exclude=ids[:, None])

    def nearest(self, query: np.ndarray, k: int, exclude=()) -> list[tuple[str, float]]:
        """query: (E,) vector. Returns up to k (token, cosine) pairs, best first."""
        exclude = np.array(sorted(i for i in set(exclude) if i >= self.first), dtype=np.int64)
        self.check_k(k, excluded=len(exclude))
        q = np.asarray(query, dtype=np.float32)[None, :]
        top, sims = self._top_k(q / max(float(np.linalg.norm(q)), 1e-12), k, exclude[None, :])
        return self._named(top[0], sims[0])

    def _top_k(self, queries: np.ndarray, k: int, exclude: np.ndarray,
               score=None) -> tuple[np.ndarray, np.ndarray]:
        """The k best words per query row.

        queries: (n, E) float32; exclude: (n, x) int ids never returned (besides the rows
        before ``first``);
        score: optional function of (row slice, (rows, V) cosines with ``queries`` rows) to
        (rows, V) scores. Returns (top (n, k) int64, scores (n, k) float32).
        """
        n = len(queries)
        top = np.empty((n, k), dtype=np.int64)
        best = np.empty((n, k), dtype=np.float32)
        step = max(1, CHUNK_CELLS // len(self.tokens))
        for lo in range(0, n, step):
            rows = slice(lo, min(lo + step, n))
            s = queries[rows] @ self.unit.T
            if score is not None:
                s = score(rows, s)
            s[:, :self.first] = -np.inf
            np.put_along_axis(s, exclude[rows], -np.inf, axis=1)
            if k == 1:  # top-1 (analogy accuracy): one pass, no partition
                top[rows, 0] = np.argmax(s, axis=1)
                best[rows, 0] = np.take_along_axis(s, top[rows, :1], axis=1)[:, 0]
                continue
            part = np.argpartition(-s, k - 1, axis=1)[:, :k]
            part_scores = np.take_along_axis(s, part, axis=1)
            order = np.argsort(-part_scores, axis=1, kind="stable")
            top[rows] = np.take_along_axis(part, order, axis=1)
            best[rows] = np.take_along_axis(part_scores, order, axis=1)
        return top, best

    # ---- analogies -------------------------------------------------------------------------

    def analogy(self, a: str, b: str, c: str, k: int = 10,
                method: str = "add") -> list[tuple[str, float]]:
        """The k best answers d to "a is to b as c is to d", the three query words excluded.

        method ``add`` (3CosAdd): the words nearest to b - a + c on unit vectors, scored by
        their cosine with that vector. ``mul`` (3CosMul): the highest
        cos'(d, b) cos'(d, c) / (cos'(d, a) + 0.001) with cos' = (cos + 1) / 2.
        """
        ids = [np.array([self.id_of(w)]) for w in (a, b, c)]
        top, scores = self.analogy_ids(*ids, k=k, method=method)
        return self._named(top[0], scores[0])

    def analogy_ids(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, k: int = 1,
                    method: str = "add") -> tuple[np.ndarray, np.ndarray]:
        """Many analogies at once. a, b, c: (n,) int ids, all found (none MISSING).

        Returns (top (n, k) int64, scores (n, k) float32), best first; each row excludes its
        own a, b and c.
        """
        if method not in METHODS:
            raise UsageError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
        a, b, c = (np.asarray(x, dtype=np.int64) for x in (a, b, c))
        exclude = np.stack([a, b, c], axis=1)
        # The answer cannot be a query word; a row with repeats excludes fewer words.
        distinct = 1 + (np.diff(np.sort(exclude, axis=1), axis=1) != 0).sum(axis=1)
        n_excluded = int(distinct.max()) if len(distinct) else 3
        self.check_k(k, excluded=n_excluded)
        if method == "add":
            target = self.unit[b] - self.unit[a] + self.unit[c]
            target /= np.maximum(np.linalg.norm(target, axis=1, keepdims=True), 1e-12)
            return self._top_k(target, k, exclude)

        def cosmul(rows, cos_b):
            # cosines shifted into [0, 1] so that the product and the ratio keep their order
            sa, sc = ((self.unit[x[rows]] @ self.unit.T + 1) / 2 for x in (a, c))
            return (cos_b + 1) / 2 * sc / (sa + COSMUL_EPS)
        return self._top_k(self.unit[b], k, exclude, score=cosmul)


def _check_finite(matrix: np.ndarray, path: Path, which: str) -> None:
    """ModelError when ``matrix`` (V, E) holds nan or inf: every cosine with such a row is
    nan, and the nearest-neighbour ranking would be meaningless."""
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise ModelError(f"the {which} vectors in {path} are not finite (nan or inf in "
                         f"{int(bad.sum())} of {len(bad)} rows): the training that wrote them "
                         "diverged; train again with a smaller --lr")
