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
    with np.errstate(over="ignore"):  # a huge t: inf, which keeps the word as 1 does
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
    left = np.minimum(size, pos - start)  # contexts before the center
    n_ctx = left + np.minimum(size, end - 1 - pos)
    # Slot j holds the j-th context in corpus order: token pos - left + j, one further on
    # once past the center itself; slots from n_ctx on are padding (id 0). Computed, not
    # sorted into place: each row's contexts are one run of tokens either side.
    slot = np.arange(2 * window)
    src = pos[:, None] - left[:, None] + slot[None, :]
    src += slot[None, :] >= left[:, None]
    valid = slot[None, :] < n_ctx[:, None]
    ctx = np.where(valid, ids[np.minimum(src, max(ids.size - 1, 0))], 0).astype(np.int32,
                                                                                 copy=False)
    return Windows(ids[pos].astype(np.int32), ctx, n_ctx)


def noise_distribution(counts: np.ndarray) -> np.ndarray:
    """(V,) float64 probabilities proportional to count**0.75, with 0 for <unk> (id 0)."""
    w = counts.astype(np.float64) ** NOISE_POWER
    w[0] = 0.0
    total = w.sum()
    if total <= 0:
        raise DataError("the vocabulary has no words to draw noise words from")
    return w / total


class Inverse:
    """Inverse-CDF draws: ``searchsorted(cdf, u, side="right")``, through a guide table.

    A binary search over the whole cdf for each of millions of draws was most of an epoch's
    sampling time. The range [0, cdf[-1]] is cut into ``bins`` equal bins and ``guide`` holds
    the search's answer at every bin edge (``bins + 1``). The search is monotone in u, so where
    the answers at both edges of a bin agree, every u inside gives that answer: it is read
    from the table, and only draws in bins that hold a step of the cdf are searched. A draw's
    bin comes from a floating-point division that may be off by one near an edge, so a bin
    counts as sure only when its neighbours' outer edges agree too. The results are exactly
    the binary search's.

    cdf: (V,) float64, nondecreasing, cdf[-1] > 0.
    """

    def __init__(self, cdf: np.ndarray, bins_per_word: int = 64, max_bins: int = 1 << 22):
        self.cdf = cdf
        self.bins = max(1, min(bins_per_word * cdf.size, max_bins))
        self.scale = self.bins / float(cdf[-1])
        edges = np.arange(self.bins + 1, dtype=np.float64) * (float(cdf[-1]) / self.bins)
        answer = np.searchsorted(cdf, edges, side="right")
        self.guide = answer[:-1].astype(np.int32)  # (bins,) the answer in each sure bin
        j = np.arange(self.bins)
        self.sure = answer[np.maximum(j - 1, 0)] == answer[np.minimum(j + 2, self.bins)]

    def __call__(self, u: np.ndarray) -> np.ndarray:
        """(m,) float64 in [0, cdf[-1]] -> (m,) int32 indices into cdf, at most V - 1."""
        j = np.minimum((u * self.scale).astype(np.int64), self.bins - 1)
        out = self.guide[j]
        unsure = np.flatnonzero(~self.sure[j])
        out[unsure] = np.minimum(np.searchsorted(self.cdf, u[unsure], side="right"),
                                 self.cdf.size - 1)
        return out


def draw(cdf: np.ndarray | Inverse, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``size`` ids from the distribution whose cumulative sum is ``cdf`` (or an Inverse
    built on it, which draws the same ids faster). (size,) int32."""
    if isinstance(cdf, Inverse):
        return cdf(rng.random(size) * cdf.cdf[-1])
    u = rng.random(size) * cdf[-1]
    return np.minimum(np.searchsorted(cdf, u, side="right"), cdf.size - 1).astype(np.int32)


def negatives(w: Windows, probs: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``k`` noise words per context word, none of them a context word of the same center.

    Returns (n, 2 * window * k) int32: row i holds ``n_ctx[i] * k`` noise ids, then 0s.
    Drawn row by row, left to right; a draw that hits a context word is drawn again (up to
    ``_FAST_ROUNDS`` times, then from the distribution with that row's contexts removed).
    """
    n, width = w.contexts.shape
    per_row = w.n_ctx * k
    cdf = Inverse(np.cumsum(probs))
    out = np.zeros((n, width * k), dtype=np.int32)
    # A boolean mask fills row by row, left to right: the order the draws are made in.
    out[np.arange(width * k)[None, :] < per_row[:, None]] = draw(cdf, int(per_row.sum()), rng)
    flat = out.reshape(-1)  # a view: positions in it are row * width * k + slot
    todo = _clash_positions(out, w.contexts)
    for _ in range(_FAST_ROUNDS):
        if todo.size == 0:
            break
        flat[todo] = draw(cdf, todo.size, rng)
        todo = todo[_clashes(flat[todo], w.contexts, todo // out.shape[1])]
    else:
        if todo.size:
            flat[todo] = _draw_excluding(probs, w.contexts[todo // out.shape[1]], rng)
    return out


def _clash_positions(noise: np.ndarray, contexts: np.ndarray) -> np.ndarray:
    """Flat positions in ``noise`` (n, m) int32 whose id is among the same row's ``contexts``
    (n, width) int32; the 0s that pad both never count. (c,) int64, ascending. One
    comparison per context column over a slice of rows at a time: no gathered copies."""
    n, m = noise.shape
    step = max(1, _CHUNK // max(m, 1))
    found = [np.zeros(0, dtype=np.int64)]
    for a in range(0, n, step):
        block = noise[a:a + step]
        hit = np.zeros(block.shape, dtype=bool)
        for column in contexts[a:a + step].T:
            hit |= block == column[:, None]
        hit &= block != 0
        found.append(np.flatnonzero(hit) + a * m)
    return np.concatenate(found)


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


def cut_long_sentences(offsets: np.ndarray, max_tokens: int) -> np.ndarray:
    """Sentence offsets with every sentence longer than ``max_tokens`` cut into pieces.

    offsets: (S + 1,) int64. The cuts fall on the multiples of ``max_tokens`` inside those
    sentences, which are where the epoch's chunks begin (batches.chunk_bounds), so no piece
    spans two chunks and a chunk holds at most ``max_tokens`` tokens of a long sentence.
    Windows stop at a cut as at a sentence's end. Sentences of ``max_tokens`` or fewer are
    left whole. Returns (S' + 1,) int64, S' >= S.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    step = max(1, int(max_tokens))
    lengths = np.diff(offsets)
    long = np.flatnonzero(lengths > step)
    if long.size == 0:
        return offsets
    # The multiples of step strictly inside each long sentence, all at once: the first
    # multiple after each start, then a ramp of step per cut.
    first = (offsets[long] // step + 1) * step
    n_cuts = (offsets[long + 1] - 1) // step - offsets[long] // step
    owner = np.repeat(np.arange(long.size), n_cuts)
    ramp = np.arange(owner.size) - np.repeat(np.cumsum(n_cuts) - n_cuts, n_cuts)
    cuts = first[owner] + ramp * step
    return np.sort(np.concatenate([offsets, cuts]))
