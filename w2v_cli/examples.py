"""Training examples: each center with its contexts and noise words, as the chapter draws them.

An example row holds its contexts, then its own noise words (``--negatives`` per context),
then padding. With ``--noise-group`` the rows hold their contexts only: the noise words are
drawn per batch, shared by groups of centers (batches.SharedNegatives).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from . import sampling
from .config import Config, noise_per_context


@dataclass
class Rows:
    """Training examples, a row each: a chunk's (items as wide as any row can be) or one
    step's (cut to its longest row, before a grouping lays them out: batches.py).

    center: (b,) int32; items: (b, L) int32, contexts then own noise words then 0s; n_ctx,
    length: (b,) int64: each row's contexts, and its contexts plus own noise words
    (n_ctx * (1 + k), k being --negatives, or 0 where noise is drawn per batch).
    """

    center: np.ndarray
    items: np.ndarray
    n_ctx: np.ndarray
    length: np.ndarray

    def __len__(self) -> int:
        return self.center.size

    @property
    def mask(self) -> np.ndarray:
        """(b, L) float32: 1 at a row's real positions (the chapter's mask)."""
        return (np.arange(self.items.shape[1])[None, :] < self.length[:, None]).astype(np.float32)

    @property
    def label(self) -> np.ndarray:
        """(b, L) float32: 1 at a row's contexts, 0 at its noise words and padding."""
        return (np.arange(self.items.shape[1])[None, :] < self.n_ctx[:, None]).astype(np.float32)


def draw_examples(ids: np.ndarray, offsets: np.ndarray, counts: np.ndarray, config: Config,
                  rng: np.random.Generator, probs: np.ndarray | None = None) -> Rows:
    """Subsample, cut windows and draw noise words for the sentences given.

    ids: (N,) int32; offsets: (S + 1,) int64; counts: (V,) int64. ``probs``: the noise
    distribution of ``counts`` when the caller has it already.
    """
    if probs is None:
        probs = sampling.noise_distribution(counts)
    kept, kept_offsets = sampling.subsample(ids, offsets, counts, config.subsample, rng)
    w = sampling.windows(kept, kept_offsets, config.window, rng)
    k = noise_per_context(config)  # noise groups, CBOW: drawn per batch; hs: none
    noise = sampling.negatives(w, probs, k, rng)
    return assemble(w, noise, k)


def assemble(w: sampling.Windows, noise: np.ndarray, k: int) -> Rows:
    """Lay contexts then noise words side by side in one row per center."""
    n, width = w.contexts.shape
    items = np.zeros((n, width * (1 + k)), dtype=np.int32)
    items[:, :width] = w.contexts
    # Rows with c contexts take their c * k noise words right after them. One copy per
    # distinct c (at most 2 * window), so no index arrays the size of the whole table.
    for c in np.unique(w.n_ctx):
        rows = np.flatnonzero(w.n_ctx == c)
        items[rows, c:c + c * k] = noise[rows, :c * k]
    return Rows(w.centers, items, w.n_ctx, w.n_ctx * (1 + k))


def rows_of(ex: Rows, rows: np.ndarray) -> Rows:
    """The examples ``rows`` ((b,) int64) as one step's Rows, cut to their longest row."""
    length = ex.length[rows]
    return Rows(ex.center[rows], ex.items[rows, :int(length.max())], ex.n_ctx[rows], length)


def in_order(ex: Rows, order: np.ndarray, batch_size: int) -> Iterator[Rows]:
    """Steps of ``batch_size`` rows of ``ex`` taken in ``order`` ((m,) int64, m <= n; the
    last is smaller when ``batch_size`` does not divide m)."""
    for a in range(0, len(order), batch_size):
        yield rows_of(ex, order[a:a + batch_size])


def shuffled(ex: Rows, batch_size: int, rng: np.random.Generator) -> Iterator[Rows]:
    """Every example once, in shuffled steps of ``batch_size`` (the chapter's data loader)."""
    return in_order(ex, rng.permutation(len(ex)), batch_size)


def num_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def concat(a: Rows, b: Rows) -> Rows:
    """Rows of ``a`` then rows of ``b`` (same window and negatives, so the same width)."""
    return Rows(*(np.concatenate([x, y]) for x, y in
                  ((a.center, b.center), (a.items, b.items), (a.n_ctx, b.n_ctx),
                   (a.length, b.length))))


def take(ex: Rows, rows: np.ndarray) -> Rows:
    return Rows(ex.center[rows], ex.items[rows], ex.n_ctx[rows], ex.length[rows])


def empty() -> Rows:
    return Rows(*(np.zeros(0, dtype=d) for d in (np.int32, np.int32, np.int64, np.int64)))
