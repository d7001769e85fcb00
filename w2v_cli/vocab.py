"""Token <-> id mapping with one counts array indexed by id; saved as JSON.

Id 0 is ``<unk>``; the other tokens are ordered by count, most frequent first, ties in order
of first appearance; ``max_vocab`` keeps only the first that many of them. ``counts[i]`` is
how often token ``i`` occurs in the corpus (for ``<unk>``: every token below ``min_count``
or past ``max_vocab``, plus literal ``<unk>`` tokens). The id of a token is its position in
``tokens``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import fileio
from .errors import DataError

UNK = "<unk>"
FORMAT = "w2v-vocab"
VERSION = 1


def select(tokens: list[str], counts: np.ndarray, min_count: int, max_vocab: int = 0) -> np.ndarray:
    """Which distinct tokens become words, in id order: (W,) int64 positions in ``tokens``.

    The word at position ``j`` of the result gets id ``j + 1``. ``tokens`` are in order of
    first appearance, ``counts`` (T,) their occurrences.
    """
    eligible = np.asarray(counts) >= min_count
    if UNK in tokens:
        eligible[tokens.index(UNK)] = False
    # A stable sort by count keeps first-appearance order among equal counts.
    kept = np.argsort(-np.asarray(counts), kind="stable")
    kept = kept[eligible[kept]]
    return kept[:max_vocab] if max_vocab > 0 else kept


class Vocab:
    """Tokens, their counts and the reverse index.

    tokens: list of V strings, ``tokens[0] == "<unk>"``.
    counts: (V,) int64.
    """

    def __init__(self, tokens: list[str], counts: np.ndarray, meta: dict | None = None):
        if not tokens or tokens[0] != UNK:
            raise DataError(f"a vocabulary must start with {UNK}")
        if len(tokens) != len(counts):
            raise DataError(f"vocabulary has {len(tokens)} tokens but {len(counts)} counts")
        self.tokens = list(tokens)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise DataError("vocabulary has duplicate tokens")
        self.meta = dict(meta or {})


    @classmethod
    def from_counts(cls, tokens: list[str], counts: np.ndarray, min_count: int,
                    max_vocab: int = 0, kept: np.ndarray | None = None) -> "Vocab":
        """The vocabulary of distinct ``tokens`` listed in order of first appearance.

        counts: (T,) int64, ``counts[i]`` the occurrences of ``tokens[i]``. Keeps the words
        seen at least ``min_count`` times, then (``max_vocab`` > 0) the ``max_vocab`` most
        frequent of them; everything else, and any literal ``<unk>``, counts as ``<unk>``.
        kept: ``select(tokens, counts, min_count, max_vocab)`` when the caller has it already.
        """
        counts = np.asarray(counts, dtype=np.int64)
        if kept is None:
            kept = select(tokens, counts, min_count, max_vocab)
        unk = int(counts.sum() - counts[kept].sum())
        meta = {"min_count": min_count, **({"max_vocab": max_vocab} if max_vocab else {})}
        return cls([UNK] + [tokens[i] for i in kept], np.concatenate([[unk], counts[kept]]),
                   meta)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index


    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, **self.meta,
                "tokens": self.tokens, "counts": self.counts.tolist()}

    def save(self, path: str | Path) -> None:
        fileio.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        path = Path(path)
        d = fileio.read_json(path, "vocabulary JSON", DataError,
                             f"no vocabulary at {path}: run `w2v prepare` first",
                             advice="; re-run `w2v prepare`")
        fileio.check_format(path, d, FORMAT, VERSION, "vocabulary", DataError)
        tokens, counts = d.get("tokens"), d.get("counts")
        if not isinstance(tokens, list) or not isinstance(counts, list) \
                or not all(isinstance(t, str) for t in tokens) \
                or not all(isinstance(c, int) and 0 <= c < 2 ** 63 for c in counts):
            raise DataError(f"{path}: tokens must be strings and counts non-negative integers")
        meta = {k: v for k, v in d.items() if k not in ("format", "version", "tokens", "counts")}
        _check_meta(path, meta)
        try:
            return cls(tokens, np.array(counts, dtype=np.int64), meta)
        except DataError as e:
            raise DataError(f"{path}: {e}") from None


STAT_COUNTS = ("sentences", "tokens", "kept_tokens")


def _check_meta(path: Path, meta: dict) -> None:
    """Raise DataError for the metadata `w2v prepare` writes in a shape no reader expects:
    ``stats`` (which dataset.load checks the id files against) and ``source`` (info shows it)
    are optional, but objects when present."""
    stats = meta.get("stats", {})
    if not isinstance(stats, dict) or not all(isinstance(stats.get(k, 0), int)
                                              and stats.get(k, 0) >= 0 for k in STAT_COUNTS):
        raise DataError(f'{path}: "stats" must be an object whose {", ".join(STAT_COUNTS)} are '
                        "non-negative integers; re-run `w2v prepare`")
    source = meta.get("source", {})
    files = source.get("files", []) if isinstance(source, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("path"), str)
                                              for f in files):
        raise DataError(f'{path}: "source" must be an object whose "files", if any, are objects '
                        'with a "path" string; re-run `w2v prepare`')
