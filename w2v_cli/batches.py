"""Examples and padded batches: (center, contexts+negatives, mask, label), as the chapter builds.

An example row holds its contexts, then its noise words, then padding. Each batch is cut to
the longest row it holds, so padding costs little.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Iterable, Iterator, TypeVar

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
                  rng: np.random.Generator, probs: np.ndarray | None = None) -> Examples:
    """Subsample, cut windows and draw noise words for the sentences given.

    ``probs``: the noise distribution of ``counts`` when the caller has it already.
    """
    if probs is None:
        probs = sampling.noise_distribution(counts)
    kept, kept_offsets = sampling.subsample(ids, offsets, counts, config.subsample, rng)
    w = sampling.windows(kept, kept_offsets, config.window, rng)
    noise = sampling.negatives(w, probs, config.negatives, rng)
    return assemble(w, noise, config.negatives)


def assemble(w: sampling.Windows, noise: np.ndarray, k: int) -> Examples:
    """Lay contexts then noise words side by side in one row per center."""
    n, width = w.contexts.shape
    items = np.zeros((n, width * (1 + k)), dtype=np.int32)
    items[:, :width] = w.contexts
    # Rows with c contexts take their c * k noise words right after them. One copy per
    # distinct c (at most 2 * window), so no index arrays the size of the whole table.
    for c in np.unique(w.n_ctx):
        rows = np.flatnonzero(w.n_ctx == c)
        items[rows, c:c + c * k] = noise[rows, :c * k]
    return Examples(w.centers, items, w.n_ctx, w.n_ctx * (1 + k))


def batches(ex: Examples, batch_size: int, rng: np.random.Generator,
            shuffle: bool = True) -> Iterator[Batch]:
    """Yield the examples in (shuffled) batches of ``batch_size``, the last one smaller."""
    order = rng.permutation(len(ex)) if shuffle else np.arange(len(ex))
    return batches_in_order(ex, order, batch_size)


def batches_in_order(ex: Examples, order: np.ndarray, batch_size: int) -> Iterator[Batch]:
    """Yield batches of ``batch_size`` rows of ``ex`` taken in ``order`` ((n,) int64)."""
    for a in range(0, len(ex), batch_size):
        yield make_batch(ex, order[a:a + batch_size])


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


# --- Streaming an epoch in chunks, drawn ahead in a background thread -----------------------

@dataclass
class Chunk:
    """One chunk of one epoch: its examples and the shuffled order to batch them in.

    epoch is 1-based; index is 0-based among the epoch's ``count`` chunks. order: (n,) int64.
    """

    epoch: int
    index: int
    count: int
    examples: Examples
    order: np.ndarray


def chunk_bounds(offsets: np.ndarray, chunk_tokens: int) -> list[tuple[int, int]]:
    """Cut the sentences into runs of whole sentences of about ``chunk_tokens`` tokens each.

    offsets: (S + 1,) int64. Returns [(first sentence, end sentence), ...] covering 0..S; a
    corpus of at most ``chunk_tokens`` tokens is one chunk.
    """
    n_sentences = offsets.size - 1
    n_chunks = max(1, -(-int(offsets[-1]) // chunk_tokens))
    cuts = np.searchsorted(offsets, np.arange(1, n_chunks) * chunk_tokens)
    edges = np.unique(np.concatenate([[0], np.clip(cuts, 0, n_sentences), [n_sentences]]))
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def epoch_chunks(ids: np.ndarray, offsets: np.ndarray, counts: np.ndarray, config: Config,
                 rng: np.random.Generator, epochs: int, first_epoch: int = 1) -> Iterator[Chunk]:
    """Yield every chunk of epochs ``first_epoch..epochs`` in training order.

    Each chunk is subsampled, windowed and given noise words on its own (so memory follows
    ``config.chunk_tokens``, not the corpus), then shuffled within itself. A corpus of one
    chunk (PTB at the default) is exactly the chapter's whole-corpus draw and shuffle. With
    ``config.sample_once`` the first epoch's examples are kept and only reshuffled.
    """
    bounds = chunk_bounds(offsets, config.chunk_tokens)
    probs = sampling.noise_distribution(counts)
    kept: list[Examples] = []
    for epoch in range(first_epoch, epochs + 1):
        for i, (a, b) in enumerate(bounds):
            if config.sample_once and len(kept) == len(bounds):
                ex = kept[i]
            else:
                lo, hi = offsets[a], offsets[b]
                ex = draw_examples(ids[lo:hi], offsets[a:b + 1] - lo, counts, config, rng, probs)
                if config.sample_once:
                    kept.append(ex)
            order = (bucketed_order(ex.length, config.batch_size, rng) if config.bucket
                     else rng.permutation(len(ex)))
            yield Chunk(epoch, i, len(bounds), ex, order)


def bucketed_order(length: np.ndarray, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """A shuffled order in which each batch holds rows of one length, so nothing is padded.

    length: (n,) int64. The rows are shuffled, sorted by length (stable, so shuffled within a
    length), cut into batches, and the full batches shuffled; the last, partial one stays last.
    Returns (n,) int64. This changes which centers share a batch, not which examples an epoch
    trains on (``--bucket``).
    """
    perm = rng.permutation(length.size)
    perm = perm[np.argsort(length[perm], kind="stable")]
    n_full = length.size // batch_size
    full = perm[:n_full * batch_size].reshape(n_full, batch_size)[rng.permutation(n_full)]
    return np.concatenate([full.ravel(), perm[n_full * batch_size:]])


T = TypeVar("T")


def prefetch(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Iterate over ``items`` while a background thread computes up to ``depth`` of them ahead.

    Yields exactly what iterating ``items`` directly yields, in the same order; an exception
    raised while producing is raised here. Closing the iterator early (an error or Ctrl-C in
    the consumer) stops the thread. numpy releases the GIL in its heavy loops, so sampling
    runs alongside the training steps.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as e:  # handed to the consumer, raised there
            put((done, e))

    thread = threading.Thread(target=work, name="w2v-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = q.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()
