"""The chapter's sampling, vectorized over the flat id array: subsampling, windows, noise words.

Every function takes an explicit ``numpy.random.Generator``; nothing here holds state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DataError

NOISE_POWER = 0.75
_CHUNK = 1 << 20  # rows compared at once when rejecting noise words; bounds memory
_FAST_ROUNDS = 20  # rejection rounds before falling back to exact per-row conditional draws


def subsample(ids: np.ndarray, offsets: np.ndarray, counts: np.ndarray, t: float,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Drop frequent tokens: keep token w with probability sqrt(t / f(w)), f(w) = count / N.

    ids: (N,) int32; offsets: (S + 1,) int64; counts: (V,) int64 indexed by id, where N is the
    number of non-<unk> tokens (``counts[1:].sum()``). Returns the kept (ids, offsets).
    ``t <= 0`` keeps everything.
    """
    if t <= 0:
        return ids, offsets
    keep = rng.random(ids.size) < keep_probability(counts, t)[ids]
    return ids[keep], _offsets_after(offsets, keep)


def keep_probability(counts: np.ndarray, t: float) -> np.ndarray:
    """(V,) float64: min(1, sqrt(t / f(w))) with f(w) = counts[w] / counts[1:].sum(); all 1
    when ``t <= 0``. The sampler and the dist workers' step count both use this one formula."""
    if t <= 0:
        return np.ones(len(counts))
    n = counts[1:].sum()
    return np.minimum(1.0, np.sqrt(t * n / np.maximum(counts, 1)))


def _offsets_after(offsets: np.ndarray, keep: np.ndarray) -> np.ndarray:
    kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    return kept_before[offsets]


@dataclass
class Windows:
    """Centers with their contexts, packed left.

    centers: (n,) int32 ids. contexts: (n, 2 * window) int32, row i holds its ``n_ctx[i]``
    context ids in corpus order, then 0s. n_ctx: (n,) int64, each in 1..2 * window.
    """

    centers: np.ndarray
    contexts: np.ndarray
    n_ctx: np.ndarray


def windows(ids: np.ndarray, offsets: np.ndarray, window: int,
            rng: np.random.Generator) -> Windows:
    """For each token of a sentence of 2+ tokens, draw a window size uniformly in 1..window and
    take the tokens within that distance in the same sentence as its contexts."""
    lengths = np.diff(offsets)
    sentence_of = np.repeat(np.arange(lengths.size), lengths)
    in_long = lengths[sentence_of] >= 2
    pos = np.flatnonzero(in_long)
    start = offsets[:-1][sentence_of[pos]]
    end = offsets[1:][sentence_of[pos]]
    size = rng.integers(1, window + 1, size=pos.size)
    deltas = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
    where = pos[:, None] + deltas[None, :]
    valid = (np.abs(deltas)[None, :] <= size[:, None]) & (where >= start[:, None]) \
        & (where < end[:, None])
    ctx = np.where(valid, ids[np.clip(where, 0, max(ids.size - 1, 0))], 0)
    # Stable sort of "invalid" pushes the valid entries left and keeps their order.
    order = np.argsort(~valid, axis=1, kind="stable")
    ctx = np.take_along_axis(ctx, order, axis=1).astype(np.int32)
    return Windows(ids[pos].astype(np.int32), ctx, valid.sum(axis=1))


def noise_distribution(counts: np.ndarray) -> np.ndarray:
    """(V,) float64 probabilities proportional to count**0.75, with 0 for <unk> (id 0)."""
    w = counts.astype(np.float64) ** NOISE_POWER
    w[0] = 0.0
    total = w.sum()
    if total <= 0:
        raise DataError("the vocabulary has no words to draw noise words from")
    return w / total


def draw(cdf: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``size`` ids from the distribution whose cumulative sum is ``cdf``. (size,) int32."""
    u = rng.random(size) * cdf[-1]
    return np.minimum(np.searchsorted(cdf, u, side="right"), cdf.size - 1).astype(np.int32)


def negatives(w: Windows, probs: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``k`` noise words per context word, none of them a context word of the same center.

    Returns (n, 2 * window * k) int32: row i holds ``n_ctx[i] * k`` noise ids, then 0s.
    """
    n, width = w.contexts.shape
    per_row = w.n_ctx * k
    index = np.int32 if per_row.sum() < 2 ** 31 else np.int64  # halves the index arrays
    rows = np.repeat(np.arange(n, dtype=index), per_row)
    cdf = np.cumsum(probs)
    flat = draw(cdf, rows.size, rng)
    todo = np.arange(rows.size, dtype=index)
    for _ in range(_FAST_ROUNDS):
        todo = todo[_clashes(flat[todo], w.contexts, rows[todo])]
        if todo.size == 0:
            break
        flat[todo] = draw(cdf, todo.size, rng)
    else:
        todo = todo[_clashes(flat[todo], w.contexts, rows[todo])]
        if todo.size:
            flat[todo] = _draw_excluding(probs, w.contexts[rows[todo]], rng)
    out = np.zeros((n, width * k), dtype=np.int32)
    # A boolean mask fills row by row, left to right: the order ``flat`` was drawn in.
    out[np.arange(width * k)[None, :] < per_row[:, None]] = flat
    return out


def _clashes(noise: np.ndarray, contexts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(m,) bool: noise[j] is among contexts[rows[j]] (rows of a (n, width) array padded with
    0, never drawn). The context rows are gathered a slice at a time: all at once they would
    be (m, width), several times the examples themselves."""
    out = np.empty(noise.size, dtype=bool)
    for a in range(0, noise.size, _CHUNK):
        b = a + _CHUNK
        out[a:b] = (contexts[rows[a:b]] == noise[a:b, None]).any(axis=1)
    return out


def _draw_excluding(probs: np.ndarray, contexts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exact draws for the few noise words that kept clashing: one row of renormalized
    probabilities per draw, with that row's context words removed. (m,) int32."""
    p = np.repeat(probs[None, :], contexts.shape[0], axis=0)
    np.put_along_axis(p, contexts.astype(np.int64), 0.0, axis=1)
    p[:, 0] = 0.0
    cdf = np.cumsum(p, axis=1)
    if np.any(cdf[:, -1] <= 0):
        raise DataError(
            "cannot draw noise words: some center's context words are the whole vocabulary; "
            "use a larger corpus, a lower --min-count or a smaller --window"
        )
    u = rng.random(p.shape[0]) * cdf[:, -1]
    return (cdf <= u[:, None]).sum(axis=1).astype(np.int32)
