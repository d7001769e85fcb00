"""Examples and padded batches: (center, contexts+negatives, mask, label), as the chapter builds.

An example row holds its contexts, then its noise words, then padding. Each batch is cut to
the longest row it holds, so padding costs little. With --noise-group the rows hold their
contexts only, and :func:`share_noise` adds each batch's noise words by groups of rows.
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


@dataclass
class Examples:
    """One epoch's worth of training examples.

    centers: (n,) int32. items: (n, 2 * window * (1 + k)) int32 (contexts, noise, 0s).
    n_ctx: (n,) int64 contexts per row. length: (n,) int64 = n_ctx * (1 + k). k is
    --negatives, or 0 with --noise-group (noise words are drawn per batch then).
    """

    centers: np.ndarray
    items: np.ndarray
    n_ctx: np.ndarray
    length: np.ndarray

    def __len__(self) -> int:
        return self.centers.size


PADDED, GROUPED, TRIMMED = "padded", "grouped", "trimmed"  # Batch.layout


@dataclass
class Batch:
    """One step's examples, in one of three layouts (``layout``):

    - PADDED (:func:`make_batch`), the chapter's: center (b, 1) int32; items, mask, label
      (b, L), mask and label float32 0/1.
    - GROUPED (:func:`share_noise`, --noise-group): rows come in G groups of g; items
      (G, g * C + S) holds each group's contexts (row by row, C slots each) then its S
      noise words; mask and label (G, g * C + S, g) the loss weight and label of each of
      those words against each center of the group; noise (G, S) the noise words again.
      The last ``pad`` rows are padding (id 0, weight 0) that fills the last group.
    - TRIMMED (:func:`trim`): ``widths`` ((n_1, w_1), ...) lays out the flat items ((N,),
      N = n_1 * w_1 + ...): n_1 rows of w_1 positions, then n_2 rows of w_2, ...; center
      (b, 1) lists the rows in that order; mask (loss weights) and label, (M,), M >= N, hold
      the items' positions then M - N of weight 0. ``words`` (U,) int32 lists the items'
      distinct ids (sorted) and ``slots`` (N,) int32 where each item is in it:
      ``words[slots] == items``.

    In the last two, ``mask`` holds loss weights, not 0/1. Only PADDED batches are split
    across several devices (train.check refuses the options that make the others there).
    """

    center: np.ndarray
    items: np.ndarray
    mask: np.ndarray
    label: np.ndarray
    noise: np.ndarray | None = None
    pad: int = 0
    widths: tuple[tuple[int, int], ...] = ()
    layout: str = PADDED
    words: np.ndarray | None = None
    slots: np.ndarray | None = None

    @property
    def rows(self) -> int:
        """Real rows (centers) in the batch."""
        return int(self.center.shape[0]) - self.pad


def share_noise(b: Batch, noise: np.ndarray, negatives: int) -> Batch:
    """``b`` (contexts only, drawn with --noise-group) cut into G groups of g consecutive
    rows, group i scoring the S noise words ``noise[i]`` ((G, S) int32, never <unk>).

    Each group is scored as one small product: every word of the group (its rows' contexts,
    then its noise words) against every center of the group. The weights keep what the
    chapter computes: a context scores against its own center only, and each row's loss is
    the mean over its n contexts and n * ``negatives`` noise words, the S shared words
    standing in for those (minus any that are the row's own contexts, which the chapter
    would redraw). SigmoidBCELoss averages weight * loss over the P = (g * C + S) * g
    positions of a group, so the weights carry P / (n * (1 + negatives)) and a group's loss
    is the sum of its rows' losses.
    """
    groups, size = noise.shape
    rows, width = b.items.shape
    g = -(-rows // groups)
    pad = groups * g - rows

    def padded(x):
        return np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x

    center, items, mask = padded(b.center), padded(b.items), padded(b.mask)
    n_ctx = mask.sum(axis=1)  # (G * g,): the contexts are the real positions
    their_noise = np.repeat(noise, g, axis=0)  # (G * g, S)
    ok = ~(items[:, :, None] == their_noise[:, None, :]).any(axis=1)
    positions = (g * width + size) * g
    scale = np.where(n_ctx > 0, positions / (np.maximum(n_ctx, 1) * (1 + negatives)), 0)
    per_noise = negatives * n_ctx / np.maximum(ok.sum(axis=1), 1) * scale  # (G * g,)
    weight = np.zeros((groups, g * width + size, g), np.float32)
    label = np.zeros_like(weight)
    # contexts: slot c of row j of a group is word p = j * C + c, scored against center j
    p = np.arange(g * width)
    weight[:, p, p // width] = (mask * scale[:, None]).reshape(groups, g * width)
    label[:, p, p // width] = mask.reshape(groups, g * width)
    # noise words: every one against every center of the group
    weight[:, g * width:] = (ok * per_noise[:, None]).reshape(groups, g, size).transpose(0, 2, 1)
    words = np.concatenate([items.reshape(groups, g * width), noise], axis=1)
    return Batch(center, words.astype(np.int32), weight, label, noise, pad, layout=GROUPED)


LOSS_LENGTHS = 16  # loss lengths a trimmed batch may take per padded shape (see trim)


def trim(b: Batch, parts: int) -> Batch:
    """``b`` ((b, L), padded to its longest row) with most of its padding cut, for the same
    loss: the rows sorted by length and cut into at most ``parts`` runs, each padded only to
    its own longest row, at the cuts that leave the fewest padded positions.

    Returns the flat layout of ``Batch.widths``. A position's weight is 1 / (its row's
    length) at real positions and 0 at padding, so the summed weighted loss is the sum over
    rows of each row's mean, as ``model.masked_loss`` gives on the padded batch.

    The mask and label run on past the items, with weight 0, to the next multiple of
    b * L / 16: the loss then sees at most 16 lengths per padded shape. MXNet's MKLDNN
    kernels (its sigmoid loss's activations) cache a primitive per input shape, never freed:
    a new length every batch grew a run's memory by ~0.35 MB a batch.

    The distinct words (``Batch.words``, ``slots``) let the step look the context table up
    once for all parts (model.skip_gram_trimmed).
    """
    length = b.mask.sum(axis=1).astype(np.int64)  # (b,)
    order = np.argsort(length, kind="stable")
    length = length[order]
    ends = np.flatnonzero(np.diff(length)).tolist() + [length.size - 1]  # last row of a length
    items, mask, label, widths = [], [], [], []
    start = 0
    for end in _cheapest_cuts(length, ends, parts):
        rows, w = order[start:end + 1], max(int(length[end]), 1)
        items.append(b.items[rows, :w].ravel())
        weight = b.mask[rows, :w] / np.maximum(length[start:end + 1], 1)[:, None]
        mask.append(weight.astype(np.float32).ravel())
        label.append(b.label[rows, :w].ravel())
        widths.append((end + 1 - start, w))
        start = end + 1
    items = np.concatenate(items)
    n = items.size
    quantum = -(-b.items.size // LOSS_LENGTHS)
    tail = np.zeros(-(-n // quantum) * quantum - n, np.float32)
    words, slots = np.unique(items, return_inverse=True)
    return Batch(b.center[order], items, np.concatenate(mask + [tail]),
                 np.concatenate(label + [tail]), widths=tuple(widths), layout=TRIMMED,
                 words=words.astype(np.int32), slots=slots.astype(np.int32))


def parts_of(b: Batch, flat: np.ndarray | None = None) -> list[np.ndarray]:
    """A trimmed batch's items (or ``flat``, (N,) in the items' layout, e.g. ``b.slots``) as
    one (n_p, w_p) array per part (views, no copies)."""
    flat = b.items if flat is None else flat
    ends = np.cumsum([n * w for n, w in b.widths]).tolist()
    return [flat[end - n * w:end].reshape(n, w) for (n, w), end in zip(b.widths, ends)]


def _cheapest_cuts(length: np.ndarray, ends: list[int], parts: int) -> list[int]:
    """The runs' last rows: the subset of ``ends`` (ending with the last row) of at most
    ``parts`` cuts that minimizes the padded size sum(rows * longest) of the runs.
    ``length``: (b,) sorted. A dynamic program over the (at most 2 * window) distinct lengths.
    """
    m = len(ends)
    # best[p][j]: (cost, cuts) covering rows up to ends[j] with p + 1 runs
    best = [[((ends[j] + 1) * int(length[ends[j]]), [ends[j]]) for j in range(m)]]
    for _ in range(1, min(parts, m)):
        prev, row = best[-1], []
        for j in range(m):
            options = [(prev[i][0] + (ends[j] - ends[i]) * int(length[ends[j]]),
                        prev[i][1] + [ends[j]]) for i in range(j)]
            row.append(min(options, default=prev[j], key=lambda o: o[0]))
        best.append(row)
    return min((level[m - 1] for level in best), key=lambda o: (o[0], len(o[1])))[1]


def draw_examples(ids: np.ndarray, offsets: np.ndarray, counts: np.ndarray, config: Config,
                  rng: np.random.Generator, probs: np.ndarray | None = None) -> Examples:
    """Subsample, cut windows and draw noise words for the sentences given.

    ``probs``: the noise distribution of ``counts`` when the caller has it already.
    """
    if probs is None:
        probs = sampling.noise_distribution(counts)
    kept, kept_offsets = sampling.subsample(ids, offsets, counts, config.subsample, rng)
    w = sampling.windows(kept, kept_offsets, config.window, rng)
    k = 0 if config.noise_group else config.negatives  # noise groups: drawn per batch
    noise = sampling.negatives(w, probs, k, rng)
    return assemble(w, noise, k)


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
    """Yield batches of ``batch_size`` rows of ``ex`` taken in ``order`` ((m,) int64, m <= n;
    the last batch is smaller when ``batch_size`` does not divide m)."""
    for a in range(0, len(order), batch_size):
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


def concat(a: Examples, b: Examples) -> Examples:
    """Rows of ``a`` then rows of ``b`` (same window and negatives, so the same width)."""
    return Examples(*(np.concatenate([x, y]) for x, y in
                      ((a.centers, b.centers), (a.items, b.items), (a.n_ctx, b.n_ctx),
                       (a.length, b.length))))


def take(ex: Examples, rows: np.ndarray) -> Examples:
    return Examples(ex.centers[rows], ex.items[rows], ex.n_ctx[rows], ex.length[rows])


# --- One epoch in chunks; every epoch's chunks drawn ahead in a background thread -----------

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

    examples: Examples
    order: np.ndarray
    full: int
    tokens: int
    rows: int
    start_state: dict | None = None
    end_state: dict | None = None


class EpochStream:
    """One epoch's batches, sampled chunk by chunk so memory holds one chunk of examples.

    ids: (N,) int32 (a memory map is fine: only one chunk is read at a time); offsets:
    (S + 1,) int64; counts: (V,) int64. Chunks are visited in a shuffled order and each
    chunk's examples are shuffled (``--bucket``: in batches of one length); rows left over
    from a chunk join the next, so every batch but the last is full. ``steps`` (a dist
    worker): exactly that many full batches, the rows past them dropped, drawing further
    passes over the same sentences (new samples, carrying the rows left over) if one pass
    is short. A corpus of one chunk gives exactly ``draw_examples`` over everything then
    ``batches``.

    ``cache``: a dict kept across epochs for ``--sample-once``: one chunk's examples are kept
    there; several chunks are re-drawn each epoch instead. Either way a chunk's examples come
    from a per-chunk seed, so they are the same in every epoch and after a resume.

    Two halves: :meth:`chunks` makes every random draw (``rng``, ``cache``) and may run in a
    producer thread (:class:`Epochs`); :meth:`batches` cuts the chunks into batches and keeps
    the counts the trainer reads (``estimated_batches``, ``start_state``, ``end_state``).
    Iterating the stream runs both in turn.
    """

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, counts: np.ndarray,
                 config: Config, rng: np.random.Generator, cache: dict | None = None,
                 sample_seed: tuple = (), steps: int | None = None):
        self.ids, self.offsets, self.counts = ids, offsets, counts
        self.config, self.rng, self.cache = config, rng, {} if cache is None else cache
        self.sample_seed, self.steps = tuple(sample_seed), steps
        self.bounds = chunk_bounds(offsets, config.chunk_tokens)
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

    def __iter__(self) -> Iterator[Batch]:
        return self.batches(self.chunks())

    # -- producer: every random draw of the epoch, in the order the RNG must see them --

    def _draw(self, c: int, probs: np.ndarray) -> Examples:
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
                yield Chunk(Examples(*(np.zeros(0, dtype=d) for d in
                                       (np.int32, np.int32, np.int64, np.int64))),
                            np.zeros(0, dtype=np.int64), 0, 0, 0, start_state=start,
                            end_state=self.rng.bit_generator.state)
                return
            if rows_this_pass == 0:
                raise DataError("this worker's shard yields no training pairs: use a larger "
                                "corpus or fewer workers")

    # -- consumer: batches, and what the trainer reads about the epoch --

    def batches(self, chunks: Iterable[Chunk]) -> Iterator[Batch]:
        """Cut ``chunks`` (this stream's, possibly drawn ahead in a thread) into batches, up
        to and including the chunk with ``end_state``."""
        bs = self.config.batch_size
        for chunk in chunks:
            if chunk.start_state is not None:
                self.start_state = chunk.start_state
            self.tokens_drawn += chunk.tokens
            self.rows_drawn += chunk.rows
            ex, order = chunk.examples, chunk.order
            yield from batches_in_order(ex, order[:chunk.full], bs)
            if chunk.end_state is None:
                ex = order = chunk = None  # let this chunk go before the next arrives
                continue
            self.end_state = chunk.end_state
            if self.steps is None and chunk.full < len(order):  # the epoch's last, short batch
                yield make_batch(ex, order[chunk.full:])
            return


class Epochs:
    """Every epoch's streams in turn, their chunks drawn by one producer: a background thread
    with ``ahead`` (``--prefetch``: it draws the next chunk, of this epoch or the next, while the current
    one trains), else the consumer itself. The batches are the same either way.

    ``make_stream()`` returns the next epoch's EpochStream (all sharing one RNG). Iterating
    yields one ``(stream, batch iterator)`` per epoch; take each epoch's batches to the end
    before asking for the next. ``close()`` stops the thread (training ended early).
    """

    def __init__(self, make_stream: Callable[[], EpochStream], n_epochs: int,
                 ahead: bool = True, depth: int = 1):
        def produce():
            for _ in range(n_epochs):
                stream = make_stream()
                for chunk in stream.chunks():
                    yield stream, chunk

        self._n_epochs = n_epochs
        self._source = produce()
        if ahead:
            self._source = prefetch(self._source, depth)

    def __iter__(self) -> Iterator[tuple[EpochStream, Iterator[Batch]]]:
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
