"""One epoch's steps, drawn chunk by chunk; every epoch's chunks drawn ahead in a thread.

Memory holds one chunk of examples (``--chunk-tokens`` corpus tokens), not the epoch.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np

from . import sampling
from .config import Config
from .errors import DataError
from .examples import Rows, concat, draw_examples, empty, in_order, num_batches, rows_of, take

def chunk_bounds(offsets: np.ndarray, chunk_tokens: int) -> np.ndarray:
    """Sentence indices cutting the corpus into chunks of about ``chunk_tokens`` tokens.

    offsets: (S + 1,) int64. Returns (C + 1,) int64 from 0 to S: chunk c is sentences
    ``[bounds[c], bounds[c + 1])``. A sentence is never cut; a longer one is a chunk alone.
    """
    n_sentences = len(offsets) - 1
    targets = np.arange(0, int(offsets[-1]), max(1, chunk_tokens), dtype=np.int64)
    cuts = np.searchsorted(offsets, targets, side="left")
    return np.unique(np.concatenate([[0], cuts, [n_sentences]])).astype(np.int64)


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


@dataclass
class Chunk:
    """One chunk of an epoch, sampled and shuffled: what the producer hands the trainer.

    examples: the rows carried over from the previous chunk, then this chunk's own. order:
    (n,) int64, the shuffled rows; its first ``full`` make full batches, the rest carry over
    (or, after the epoch's last chunk, form its last batch). tokens, rows: this chunk's corpus
    tokens and the examples drawn from them. ``start_state`` (the epoch's first chunk only):
    the RNG state before the epoch drew anything; ``end_state`` (its last chunk only): the
    state after its last draw. A checkpoint saves those, not the RNG's state at save time:
    with prefetch the producer has drawn further by then.
    """

    examples: Rows
    order: np.ndarray
    full: int
    tokens: int
    rows: int
    start_state: dict | None = None
    end_state: dict | None = None


class EpochStream:
    """One epoch's batches, sampled chunk by chunk so memory holds one chunk of examples.

    ``part``: the sentences, with ``ids`` (N,) int32 (a memory map is fine: only one chunk
    is read at a time) and ``offsets`` (S + 1,) int64 (a Dataset); counts: (V,) int64.
    Chunks are visited in a shuffled order and each chunk's examples are shuffled
    (``--bucket``: in batches of one length); rows left over from a chunk join the next, so
    every batch but the last is full. ``steps`` (a dist
    worker): exactly that many full batches, the rows past them dropped, drawing further
    passes over the same sentences (new samples, carrying the rows left over) if one pass
    is short. A corpus of one chunk gives exactly ``draw_examples`` over everything then
    ``examples.shuffled``.

    ``cache``: a dict kept across epochs for ``--sample-once``: one chunk's examples are kept
    there; several chunks are re-drawn each epoch instead. Either way a chunk's examples come
    from a per-chunk seed, so they are the same in every epoch and after a resume.

    Two halves: :meth:`chunks` makes every random draw (``rng``, ``cache``) and may run in a
    producer thread (:class:`Epochs`); :meth:`batches` cuts the chunks into batches and keeps
    the counts the trainer reads (``estimated_batches``, ``start_state``, ``end_state``).
    Iterating the stream runs both in turn.
    """

    def __init__(self, part, counts: np.ndarray, config: Config, rng: np.random.Generator,
                 cache: dict | None = None, sample_seed: tuple = (), steps: int | None = None):
        # Sentences longer than a chunk are sampled in pieces, so a chunk's memory is bounded.
        self.ids, self.counts = part.ids, counts
        self.offsets = sampling.cut_long_sentences(part.offsets, config.chunk_tokens)
        self.config, self.rng, self.cache = config, rng, {} if cache is None else cache
        self.sample_seed, self.steps = tuple(sample_seed), steps
        self.bounds = chunk_bounds(self.offsets, config.chunk_tokens)
        # What the consumer has taken so far (set by batches(), read by the trainer):
        self.tokens_drawn = 0   # tokens of the chunks sampled so far
        self.rows_drawn = 0     # examples drawn from them
        self.start_state: dict | None = None
        self.end_state: dict | None = None

    @property
    def n_chunks(self) -> int:
        return len(self.bounds) - 1

    def estimated_batches(self) -> int:
        """Batches this epoch will yield: exact once every chunk is drawn, else extrapolated."""
        if self.steps:
            return self.steps
        total = int(self.offsets[-1])
        rows = self.rows_drawn if self.tokens_drawn >= total or not self.tokens_drawn \
            else self.rows_drawn * total / self.tokens_drawn
        n = int(rows) // self.config.batch_size if self.steps is not None \
            else num_batches(int(rows), self.config.batch_size)
        return max(n, 1)

    def __iter__(self) -> Iterator[Rows]:
        return self.batches(self.chunks())

    # -- producer: every random draw of the epoch, in the order the RNG must see them --

    def _draw(self, c: int, probs: np.ndarray) -> Rows:
        a, b = int(self.bounds[c]), int(self.bounds[c + 1])
        lo, hi = int(self.offsets[a]), int(self.offsets[b])
        ids = np.asarray(self.ids[lo:hi])
        offsets = np.asarray(self.offsets[a:b + 1], dtype=np.int64) - lo
        if not self.config.sample_once:
            return draw_examples(ids, offsets, self.counts, self.config, self.rng, probs)
        # Sampled once: each chunk's examples come from their own seed, never from the
        # epoch's RNG, so a resumed run (whose cache starts empty) draws the same ones.
        if self.n_chunks == 1 and "examples" in self.cache:
            return self.cache["examples"]
        rng = np.random.default_rng([self.config.seed, *self.sample_seed, c])
        ex = draw_examples(ids, offsets, self.counts, self.config, rng, probs)
        if self.n_chunks == 1:
            self.cache["examples"] = ex
        return ex

    def chunks(self) -> Iterator[Chunk]:
        """Draw the epoch's chunks; the last one carries ``end_state``. Touches no attribute
        the consumer writes, so it may run in another thread."""
        bs = self.config.batch_size
        start = self.rng.bit_generator.state
        probs = sampling.noise_distribution(self.counts)
        left, batches_left = None, self.steps
        while True:
            rows_this_pass = 0
            order = self.rng.permutation(self.n_chunks) if self.n_chunks > 1 else \
                range(self.n_chunks)
            for i, c in enumerate(order):
                ex = self._draw(int(c), probs)
                tokens = int(self.offsets[self.bounds[c + 1]] - self.offsets[self.bounds[c]])
                rows = len(ex)
                rows_this_pass += rows
                if left is not None:
                    ex = concat(left, ex)
                perm = (bucketed_order(ex.length, bs, self.rng) if self.config.bucket
                        else self.rng.permutation(len(ex)))
                full = len(ex) - len(ex) % bs
                if batches_left is not None:
                    full = min(full, batches_left * bs)
                    batches_left -= full // bs
                left = take(ex, perm[full:])
                chunk = Chunk(ex, perm, full, tokens, rows, start_state=start)
                start = None
                last = batches_left == 0 if self.steps else i == self.n_chunks - 1
                if last:
                    chunk.end_state = self.rng.bit_generator.state
                yield chunk
                if last:
                    return
                ex = perm = chunk = None  # memory holds the chunks in flight, not the epoch
            if not self.steps:  # no chunks at all: an empty epoch still ends
                yield Chunk(empty(), np.zeros(0, dtype=np.int64), 0, 0, 0, start_state=start,
                            end_state=self.rng.bit_generator.state)
                return
            if rows_this_pass == 0:
                raise DataError("this worker's shard yields no training pairs: use a larger "
                                "corpus or fewer workers")

    # -- consumer: batches, and what the trainer reads about the epoch --

    def batches(self, chunks: Iterable[Chunk]) -> Iterator[Rows]:
        """Cut ``chunks`` (this stream's, possibly drawn ahead in a thread) into batches, up
        to and including the chunk with ``end_state``."""
        bs = self.config.batch_size
        for chunk in chunks:
            if chunk.start_state is not None:
                self.start_state = chunk.start_state
            self.tokens_drawn += chunk.tokens
            self.rows_drawn += chunk.rows
            ex, order = chunk.examples, chunk.order
            yield from in_order(ex, order[:chunk.full], bs)
            if chunk.end_state is None:
                ex = order = chunk = None  # let this chunk go before the next arrives
                continue
            self.end_state = chunk.end_state
            if self.steps is None and chunk.full < len(order):  # the epoch's last, short batch
                yield rows_of(ex, order[chunk.full:])
            return


class Epochs:
    """Every epoch's streams in turn, their chunks drawn by one producer: a background thread
    with ``ahead`` (it draws the next chunk, of this epoch or the next, while the current one
    trains), else the consumer itself (for tests). The batches are the same either way.

    ``make_stream()`` returns the next epoch's EpochStream (all sharing one RNG). Iterating
    yields one ``(stream, batch iterator)`` per epoch; take each epoch's batches to the end
    before asking for the next. ``close()`` stops the thread (training ended early).
    ``should_stop``: see :class:`Prefetch` (StopWaiting comes out of the batch iterator).
    """

    def __init__(self, make_stream: Callable[[], EpochStream], n_epochs: int,
                 ahead: bool = True, depth: int = 1,
                 should_stop: Callable[[], bool] | None = None):
        def produce():
            for _ in range(n_epochs):
                stream = make_stream()
                for chunk in stream.chunks():
                    yield stream, chunk

        self._n_epochs = n_epochs
        self._source = produce()
        if ahead:
            self._source = Prefetch(self._source, depth, should_stop)

    def __iter__(self) -> Iterator[tuple[EpochStream, Iterator[Rows]]]:
        for _ in range(self._n_epochs):
            stream, first = next(self._source)
            yield stream, stream.batches(self._until_end(first))

    def _until_end(self, first: Chunk) -> Iterator[Chunk]:
        chunk = first
        while True:
            yield chunk
            if chunk.end_state is not None:
                return
            _, chunk = next(self._source)

    def close(self) -> None:
        close = getattr(self._source, "close", None)
        if close:
            close()


T = TypeVar("T")
WAIT_POLL = 0.1  # seconds between ``should_stop`` calls while the consumer waits


class StopWaiting(Exception):
    """Raised by :class:`Prefetch` when ``should_stop()`` says so while the consumer waits for
    the producer (a Ctrl-C while a chunk is being sampled)."""


class Prefetch(Iterator[T]):
    """Iterate over ``items`` while a background thread computes up to ``depth`` of them ahead.

    The thread starts at once, not at the first ``next()``: whatever the caller does before
    asking (importing MXNet, building the net) overlaps the first item. Yields exactly what
    iterating ``items`` directly yields, in the same order; an exception raised while
    producing is raised here. :meth:`close` (an error or Ctrl-C in the consumer, or the
    consumer never asking) stops the thread. numpy releases the GIL in its heavy loops, so
    sampling runs alongside the training steps. ``should_stop``: asked every WAIT_POLL
    seconds while nothing is ready; when it returns True, StopWaiting is raised here at once,
    without waiting for the item being produced (the thread ends once it is).
    """

    _DONE = object()

    def __init__(self, items: Iterable[T], depth: int = 1,
                 should_stop: Callable[[], bool] | None = None):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._should_stop = should_stop
        self._finished = False
        self._abandon = False  # StopWaiting: the producer ends its item alone (a daemon)
        self._thread = threading.Thread(target=self._work, args=(iter(items),),
                                        name="w2v-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                if not self._put((item, None)):
                    return
            self._put((self._DONE, None))
        except BaseException as e:  # handed to the consumer, raised there
            self._put((self._DONE, e))

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        while True:
            try:
                item, error = self._queue.get(
                    timeout=WAIT_POLL if self._should_stop else None)
            except queue.Empty:
                if self._should_stop():
                    self._abandon = True
                    self.close()
                    raise StopWaiting from None
                continue
            if item is self._DONE:
                self.close()
                if error is not None:
                    raise error
                raise StopIteration
            return item

    def close(self) -> None:
        """Stop the thread (joined, unless it was abandoned to finish its item alone)."""
        self._finished = True
        self._stop.set()
        if not self._abandon and self._thread is not threading.current_thread():
            self._thread.join()
