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
