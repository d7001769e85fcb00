"""Examples and padded batches: (center, contexts+negatives, mask, label), as the chapter builds.

An example row holds its contexts, then its noise words, then padding. Each batch is cut to
the longest row it holds, so padding costs little.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from . import sampling
from .config import Config


@dataclass
class Examples:
    """One epoch's worth of training examples.

    centers: (n,) int32. items: (n, 2 * window * (1 + negatives)) int32 (contexts, noise, 0s).
    n_ctx: (n,) int64 contexts per row. length: (n,) int64 = n_ctx * (1 + negatives).
    """

    centers: np.ndarray
    items: np.ndarray
    n_ctx: np.ndarray
    length: np.ndarray

    def __len__(self) -> int:
        return self.centers.size


@dataclass
class Batch:
    """center: (b, 1) int32. items, mask, label: (b, L); mask and label are float32 0/1."""

    center: np.ndarray
    items: np.ndarray
    mask: np.ndarray
    label: np.ndarray


def draw_examples(ids: np.ndarray, offsets: np.ndarray, counts: np.ndarray, config: Config,
                  rng: np.random.Generator) -> Examples:
    """Subsample, cut windows and draw noise words for the whole corpus."""
    kept, kept_offsets = sampling.subsample(ids, offsets, counts, config.subsample, rng)
    w = sampling.windows(kept, kept_offsets, config.window, rng)
    noise = sampling.negatives(w, sampling.noise_distribution(counts), config.negatives, rng)
    return assemble(w, noise, config.negatives)


def assemble(w: sampling.Windows, noise: np.ndarray, k: int) -> Examples:
    """Lay contexts then noise words side by side in one row per center."""
    n, width = w.contexts.shape
    j = np.arange(width * (1 + k))[None, :]
    n_ctx = w.n_ctx[:, None]
    source = np.where(j < n_ctx, j, width + j - n_ctx)
    both = np.concatenate([w.contexts, noise], axis=1)
    items = np.take_along_axis(both, np.minimum(source, both.shape[1] - 1), axis=1)
    length = w.n_ctx * (1 + k)
    items[j >= length[:, None]] = 0
    return Examples(w.centers, items, w.n_ctx, length)


def batches(ex: Examples, batch_size: int, rng: np.random.Generator,
            shuffle: bool = True) -> Iterator[Batch]:
    """Yield the examples in (shuffled) batches of ``batch_size``, the last one smaller."""
    order = rng.permutation(len(ex)) if shuffle else np.arange(len(ex))
    for a in range(0, len(ex), batch_size):
        rows = order[a:a + batch_size]
        yield make_batch(ex, rows)


def make_batch(ex: Examples, rows: np.ndarray) -> Batch:
    length = ex.length[rows]
    width = int(length.max())
    j = np.arange(width)[None, :]
    return Batch(
        center=ex.centers[rows, None],
        items=ex.items[rows, :width],
        mask=(j < length[:, None]).astype(np.float32),
        label=(j < ex.n_ctx[rows, None]).astype(np.float32),
    )


def num_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def concat(a: Examples, b: Examples) -> Examples:
    """Rows of ``a`` then rows of ``b`` (same window and negatives, so the same width)."""
    return Examples(*(np.concatenate([x, y]) for x, y in
                      ((a.centers, b.centers), (a.items, b.items), (a.n_ctx, b.n_ctx),
                       (a.length, b.length))))


def take(ex: Examples, rows: np.ndarray) -> Examples:
    return Examples(ex.centers[rows], ex.items[rows], ex.n_ctx[rows], ex.length[rows])


def chunk_bounds(offsets: np.ndarray, chunk_tokens: int) -> np.ndarray:
    """Sentence indices cutting the corpus into chunks of about ``chunk_tokens`` tokens.

    offsets: (S + 1,) int64. Returns (C + 1,) int64 from 0 to S: chunk c is sentences
    ``[bounds[c], bounds[c + 1])``. A sentence is never cut; a longer one is a chunk alone.
    """
    n_sentences = len(offsets) - 1
    targets = np.arange(0, int(offsets[-1]), max(1, chunk_tokens), dtype=np.int64)
    cuts = np.searchsorted(offsets, targets, side="left")
    return np.unique(np.concatenate([[0], cuts, [n_sentences]])).astype(np.int64)


class EpochStream:
    """One epoch's batches, sampled chunk by chunk so memory holds one chunk of examples.

    ids: (N,) int32 (a memory map is fine: only one chunk is read at a time); offsets:
    (S + 1,) int64; counts: (V,) int64. Chunks are visited in a shuffled order and each
    chunk's examples are shuffled; rows left over from a chunk join the next, so every batch
    but the last is full. With ``full_only`` that last one is not yielded but kept in
    ``self.left``, for a following stream's ``carry``. A corpus of one chunk gives exactly
    ``draw_examples`` over everything then ``batches``.

    ``cache``: a dict kept across epochs for ``--sample-once``: one chunk's examples are kept
    there; several chunks are re-drawn each epoch instead. Either way a chunk's examples come
    from a per-chunk seed, so they are the same in every epoch and after a resume.
    """

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, counts: np.ndarray,
                 config: Config, rng: np.random.Generator, cache: dict | None = None,
                 sample_seed: tuple = (), full_only: bool = False,
                 carry: Examples | None = None):
        self.ids, self.offsets, self.counts = ids, offsets, counts
        self.config, self.rng, self.cache = config, rng, {} if cache is None else cache
        self.sample_seed, self.full_only = tuple(sample_seed), full_only
        self.bounds = chunk_bounds(offsets, config.chunk_tokens)
        self.left = carry       # rows not yet batched: start this epoch, and what it left
        self.tokens_drawn = 0   # tokens of the chunks sampled so far
        self.rows_drawn = 0     # examples drawn from them

    @property
    def n_chunks(self) -> int:
        return len(self.bounds) - 1

    def estimated_batches(self) -> int:
        """Batches this epoch will yield: exact once every chunk is drawn, else extrapolated."""
        total = int(self.offsets[-1])
        rows = self.rows_drawn if self.tokens_drawn >= total or not self.tokens_drawn \
            else self.rows_drawn * total / self.tokens_drawn
        n = int(rows) // self.config.batch_size if self.full_only \
            else num_batches(int(rows), self.config.batch_size)
        return max(n, 1)

    def _draw(self, c: int) -> Examples:
        a, b = int(self.bounds[c]), int(self.bounds[c + 1])
        lo, hi = int(self.offsets[a]), int(self.offsets[b])
        ids = np.asarray(self.ids[lo:hi])
        offsets = np.asarray(self.offsets[a:b + 1], dtype=np.int64) - lo
        if not self.config.sample_once:
            return draw_examples(ids, offsets, self.counts, self.config, self.rng)
        # Sampled once: each chunk's examples come from their own seed, never from the
        # epoch's RNG, so a resumed run (whose cache starts empty) draws the same ones.
        if self.n_chunks == 1 and "examples" in self.cache:
            return self.cache["examples"]
        rng = np.random.default_rng([self.config.seed, *self.sample_seed, c])
        ex = draw_examples(ids, offsets, self.counts, self.config, rng)
        if self.n_chunks == 1:
            self.cache["examples"] = ex
        return ex

    def __iter__(self) -> Iterator[Batch]:
        bs = self.config.batch_size
        order = self.rng.permutation(self.n_chunks) if self.n_chunks > 1 else [0]
        left, self.left = self.left, None
        for c in order:
            ex = self._draw(int(c))
            self.tokens_drawn += int(self.offsets[self.bounds[c + 1]] - self.offsets[self.bounds[c]])
            self.rows_drawn += len(ex)
            if left is not None:
                ex = concat(left, ex)
            perm = self.rng.permutation(len(ex))
            full = len(ex) - len(ex) % bs
            for a in range(0, full, bs):
                yield make_batch(ex, perm[a:a + bs])
            left = take(ex, perm[full:])
            ex = perm = None  # free this chunk before the next is drawn: memory holds one
        if self.full_only:
            self.left = left
        elif left is not None and len(left):
            yield make_batch(left, np.arange(len(left)))
