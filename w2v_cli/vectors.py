"""Frozen embeddings for queries: the vocabulary plus a row-normalized matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import checkpoint
from .dataset import VOCAB_FILE
from .errors import UsageError
from .vocab import Vocab


class Vectors:
    """tokens: V strings (id 0 is <unk>, never returned). matrix: (V, E) float32.
    unit: (V, E) float32, each row scaled to length 1 (zero rows stay zero)."""

    def __init__(self, vocab: Vocab, matrix: np.ndarray):
        self.vocab = vocab
        self.matrix = np.asarray(matrix, dtype=np.float32)
        norms = np.linalg.norm(self.matrix, axis=1, keepdims=True)
        self.unit = self.matrix / np.maximum(norms, 1e-12)

    @classmethod
    def load(cls, workdir: Path, which: str = "center") -> "Vectors":
        """Load the vocab JSON and one table (``center``, ``context`` or ``sum``)."""
        vocab = Vocab.load(workdir / VOCAB_FILE)
        tables = checkpoint.load_tables(workdir, len(vocab))
        checkpoint.check_vocab(workdir, vocab)
        matrix = tables["center"] + tables["context"] if which == "sum" else tables[which]
        return cls(vocab, matrix)

    def id_of(self, word: str) -> int:
        i = self.vocab.index.get(word, 0)
        if i == 0:
            close = self.vocab.close_matches(word)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise UsageError(f"{word!r} is not in the vocabulary ({len(self.vocab) - 1} words){hint}")
        return i

    def most_similar(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The k words with the highest cosine similarity to ``word``, itself and <unk> excluded."""
        i = self.id_of(word)
        return self.nearest(self.unit[i], k, exclude=[i])

    def nearest(self, query: np.ndarray, k: int, exclude=()) -> list[tuple[str, float]]:
        """query: (E,) vector. Returns up to k (token, cosine) pairs, best first."""
        candidates = len(self.vocab) - 1 - len(set(exclude) - {0})
        if not 1 <= k <= candidates:
            raise UsageError(f"-k must be between 1 and {candidates} (the words that can be "
                             f"returned), got {k}")
        q = query / max(float(np.linalg.norm(query)), 1e-12)
        sims = self.unit @ q
        sims[0] = -np.inf
        sims[list(exclude)] = -np.inf
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        return [(self.vocab.tokens[j], float(sims[j])) for j in top]
