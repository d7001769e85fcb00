"""The prepared dataset: corpus -> vocab -> one flat id array plus sentence offsets.

On disk, in the working directory: ``vocab.json``, ``ids.npy`` and ``offsets.npy``.
Sentence ``s`` is ``ids[offsets[s]:offsets[s + 1]]``. ``<unk>`` tokens are dropped, as the
d2l chapter drops them, so ``ids`` never holds 0.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import corpus as corpus_mod
from . import fileio
from .config import Config
from .errors import DataError
from .vocab import Vocab, select

VOCAB_FILE = "vocab.json"
IDS_FILE = "ids.npy"
OFFSETS_FILE = "offsets.npy"


@dataclass
class Dataset:
    """ids: (N,) int32, never 0. offsets: (S + 1,) int64, offsets[0] == 0, offsets[-1] == N."""

    vocab: Vocab
    ids: np.ndarray
    offsets: np.ndarray

    @property
    def n_sentences(self) -> int:
        return len(self.offsets) - 1

    def sentences(self) -> list[list[str]]:
        """Decode back to tokens (for inspection and tests, not the hot path)."""
        toks = self.vocab.tokens
        return [[toks[i] for i in self.ids[a:b]] for a, b in zip(self.offsets[:-1], self.offsets[1:])]


_NO_PAIRS = ("no sentence has two or more words in the vocabulary, so there is no word pair to "
             "train on; use longer sentences (one a line) or a lower --min-count ({min_count})")


@dataclass
class PrepareProgress:
    """Where a streaming prepare stands: tokens and bytes read; ``total_bytes`` when known."""

    tokens: int
    bytes: int
    total_bytes: Optional[int]
    seconds: float


def prepare(config: Config, progress=None,
            on_chunk: Optional[Callable[[PrepareProgress], None]] = None) -> Dataset:
    """Read the configured corpus (PTB by default), encode it and write it to the workdir.

    Streams: memory holds the distinct tokens and one chunk of ``config.chunk_tokens``, not
    the corpus. Returns the dataset with its ids and offsets memory-mapped from the workdir.
    Call while holding the workdir lock: it first removes what a killed writer left there.
    """
    start = time.perf_counter()
    fileio.remove_stale_temps(config.workdir_path)
    if config.corpus:
        lines = corpus_mod.stream_files(list(config.corpus), config.encoding_errors,
                                        exclude=config.workdir_path)
    else:
        archive = corpus_mod.ensure_ptb(config.data_dir_path, progress)
        lines = corpus_mod.stream_ptb(archive)
    lines.lowercase = config.lowercase
    workdir = config.workdir_path
    ds = encode_stream(lines, config.min_count, workdir, config.max_vocab,
                       config.chunk_tokens, on_chunk, start)
    vocab = ds.vocab
    vocab.meta.update(
        lowercase=config.lowercase,  # the train run's Config has the default, not prepare's
        source=lines.source,
        stats={"sentences": ds.n_sentences, "tokens": int(vocab.counts.sum()),
               "kept_tokens": int(vocab.counts[1:].sum()),
               "seconds": round(time.perf_counter() - start, 3)},
    )
    # The vocab goes last: its presence marks a complete dataset. What load() would check
    # holds by construction (the writers refuse a wrong length), so ds is returned as is.
    vocab.save(workdir / VOCAB_FILE)
    return ds


def encode_stream(lines: corpus_mod.LineStream, min_count: int, workdir: Path,
                  max_vocab: int = 0, chunk_tokens: int = 1 << 20,
                  on_chunk: Optional[Callable[[PrepareProgress], None]] = None,
                  start: Optional[float] = None) -> Dataset:
    """Encode a corpus into ``ids.npy`` and ``offsets.npy`` in ``workdir``, holding one chunk
    of tokens at a time. Returns the dataset: its vocabulary (not yet saved) and the two
    files as read-only memory maps.

    Pass 1 reads the text once: each distinct token gets a provisional id in order of first
    appearance (so ties keep the in-memory order), its count is summed by ``bincount``, and
    the provisional ids and the token positions where sentences end go to temporary files
    (positions, not per-chunk lengths, so a sentence may run over any number of chunks: a
    corpus on one line is read in bounded memory). Pass 2 re-maps them to final ids chunk by
    chunk, drops ``<unk>``, and appends to the two ``.npy`` files, whose shapes pass 1 made
    known.
    """
    start = time.perf_counter() if start is None else start
    workdir.mkdir(parents=True, exist_ok=True)
    # Named like fileio's temporaries, so one left by a killed prepare is cleaned up later.
    with tempfile.TemporaryDirectory(prefix=".prepare.", suffix=fileio.TEMP_SUFFIX,
                                     dir=workdir) as tmp:
        pid_path, ends_path = Path(tmp) / "pids.i32", Path(tmp) / "ends.i64"
        try:
            tokens, counts, chunks = _first_pass(lines, pid_path, ends_path, chunk_tokens,
                                                 on_chunk, start)
        except OSError as e:
            # The scratch files are the first half of writing ids.npy; a full disk shows there.
            raise fileio.storage_error(workdir / IDS_FILE, fileio.os_reason(e)) from None
        if not tokens:
            raise DataError("the corpus holds no tokens")
        kept = select(tokens, counts, min_count, max_vocab)
        vocab = Vocab.from_counts(tokens, counts, min_count, max_vocab, kept=kept)
        if len(vocab) < 2:
            raise DataError(f"no token occurs at least {min_count} times (--min-count); "
                            "the vocabulary is empty")
        del tokens
        remap = np.zeros(len(counts), dtype=np.int32)
        remap[kept] = np.arange(1, len(kept) + 1, dtype=np.int32)
        _second_pass(workdir, (pid_path, ends_path), chunks, remap,
                     int(vocab.counts[1:].sum()), min_count)
    # Memory-mapped, as load() gives them: training reads one chunk at a time.
    ids, offsets = (np.load(workdir / name, mmap_mode="r", allow_pickle=False)
                    for name in (IDS_FILE, OFFSETS_FILE))
    return Dataset(vocab, ids, offsets)


def _second_pass(workdir: Path, scratch: tuple, chunks: list, remap: np.ndarray,
                 n_kept: int, min_count: int) -> None:
    """Re-map pass 1's provisional ids (``scratch``: the ids and sentence-end files) to final
    ids chunk by chunk, drop ``<unk>``, and write ``ids.npy`` ((n_kept,) int32) and
    ``offsets.npy``. remap: (provisional ids,) int32, 0 for <unk>."""
    pid_path, ends_path = scratch
    n_sentences = sum(n for _, n in chunks)
    # ids.npy is the inner writer, so it is the first renamed into place (as save() does).
    with _npy_writer(workdir / OFFSETS_FILE, np.int64, n_sentences + 1) as off_out, \
            _npy_writer(workdir / IDS_FILE, np.int32, n_kept) as ids_out, \
            open(pid_path, "rb") as pids_in, open(ends_path, "rb") as ends_in:
        off_out.write(np.zeros(1, dtype=np.int64))
        done = longest = first = last_offset = 0  # kept ids, and tokens, before the chunk
        for n_tok, n_ends in chunks:
            final = remap[np.fromfile(pids_in, dtype=np.int32, count=n_tok)]
            ends = np.fromfile(ends_in, dtype=np.int64, count=n_ends)
            keep = final != 0
            kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
            offsets = done + kept_before[ends - first]
            ids_out.write(final[keep])
            off_out.write(offsets)
            if offsets.size:
                longest = max(longest, int(np.diff(offsets, prepend=last_offset).max()))
                last_offset = int(offsets[-1])
            done += int(kept_before[-1])
            first += n_tok
        if longest < 2:  # raised inside the writers: neither file is replaced
            raise DataError(_NO_PAIRS.format(min_count=min_count))


def _first_pass(lines: corpus_mod.LineStream, pid_path: Path, ends_path: Path,
                chunk_tokens: int, on_chunk, start: float):
    """Provisional ids and sentence ends to two raw files. Returns the distinct tokens
    (first-appearance order), their counts (T,) int64, and per chunk (tokens, sentence ends).
    A sentence end is the position (in tokens from the corpus's start) after its last token;
    a line with no token ends no sentence, as the in-memory ``encode`` drops it."""
    index: defaultdict = defaultdict()
    index.default_factory = index.__len__  # a new token gets the next id, in C, no loop
    counts = np.zeros(0, dtype=np.int64)
    chunks: list[tuple[int, int]] = []
    pending_ids: list[np.ndarray] = []
    pending_ends: list[np.ndarray] = []
    n_pending = n_tokens = n_bytes = last_end = 0

    with open(pid_path, "wb") as pid_out, open(ends_path, "wb") as ends_out:
        def flush():
            nonlocal counts, n_pending
            ids = np.concatenate(pending_ids)
            ends = np.concatenate(pending_ends)
            add = np.bincount(ids, minlength=len(index))
            counts = np.concatenate([counts, np.zeros(len(add) - len(counts), np.int64)]) + add
            # Through .write(): a short ndarray.tofile on a full disk has no errno.
            pid_out.write(memoryview(ids))
            ends_out.write(memoryview(ends))
            chunks.append((int(ids.size), int(ends.size)))
            pending_ids.clear()
            pending_ends.clear()
            n_pending = 0
            if on_chunk:
                on_chunk(PrepareProgress(n_tokens, n_bytes, lines.total_bytes,
                                         time.perf_counter() - start))

        for block, nbytes, open_end in lines.blocks():
            sentences = list(map(str.split, block))
            lengths = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
            ends = n_tokens + np.cumsum(lengths)
            if open_end:  # the last line goes on in the next block
                ends = ends[:-1]
            ends = ends[np.diff(ends, prepend=last_end) > 0]
            if ends.size:
                last_end = int(ends[-1])
            total = int(lengths.sum())
            pending_ids.append(np.fromiter(map(index.__getitem__, chain.from_iterable(sentences)),
                                           dtype=np.int32, count=total))
            pending_ends.append(ends)
            n_pending += total
            n_tokens += total
            n_bytes += nbytes
            if n_pending >= chunk_tokens:
                flush()
        if pending_ids:
            flush()
    return list(index), counts, chunks


class _Appender:
    """Appends pieces of one array to the open ``.npy`` file at ``path``."""

    def __init__(self, f, dtype, path: Path):
        self.f, self.dtype, self.path, self.written = f, dtype, path, 0

    def write(self, arr: np.ndarray) -> None:
        self.f.write(memoryview(np.ascontiguousarray(arr, dtype=self.dtype)))
        self.written += arr.size


@contextlib.contextmanager
def _npy_writer(path: Path, dtype, length: int):
    """Write a 1-D ``.npy`` file piece by piece, atomically: the header first (the length is
    known in advance), then the pieces; the file appears only if they add up to ``length``."""
    dtype = np.dtype(dtype)
    with fileio.atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as f:
                np.lib.format.write_array_header_1_0(
                    f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                        "shape": (length,)})
                out = _Appender(f, dtype, path)
                yield out
        except OSError as e:  # a full disk: StorageError, as fileio's own writers give
            raise fileio.storage_error(path, fileio.os_reason(e)) from None
        if out.written != length:
            raise DataError(f"{path}: wrote {out.written} of {length} values")


def save(ds: Dataset, workdir: Path) -> None:
    """Write an in-memory dataset (``encode``'s) to the workdir."""
    # Each file is replaced atomically. The vocab goes last, and load() checks that the three
    # agree, so a crash between two of them is caught rather than trained on.
    for name, arr in ((IDS_FILE, ds.ids), (OFFSETS_FILE, ds.offsets)):
        fileio.save_npy(workdir / name, arr)
    ds.vocab.save(workdir / VOCAB_FILE)


def load(workdir: Path) -> Dataset:
    """Load a prepared dataset, checking that its three files agree. ids and offsets are
    read-only memory maps."""
    vocab = Vocab.load(workdir / VOCAB_FILE)
    arrays = []
    for name in (IDS_FILE, OFFSETS_FILE):
        try:
            # Memory-mapped: training reads one chunk at a time, never the whole corpus.
            arrays.append(np.load(workdir / name, mmap_mode="r", allow_pickle=False))
        except FileNotFoundError:
            raise DataError(f"no {name} in {workdir}: run `w2v prepare` first") from None
        except (OSError, ValueError, EOFError, MemoryError) as e:
            raise DataError(f"{workdir / name} is not a readable numpy file ({e}); "
                            "re-run `w2v prepare`") from None
    ids, offsets = arrays
    if ids.dtype.kind not in "iu" or offsets.dtype.kind not in "iu":
        raise DataError(f"{workdir}: {IDS_FILE} and {OFFSETS_FILE} must hold integers; "
                        "re-run `w2v prepare`")
    if ids.ndim != 1 or offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 \
            or offsets[-1] != ids.size or not _nondecreasing(offsets):
        raise DataError(f"{workdir}: {IDS_FILE} and {OFFSETS_FILE} do not agree; "
                        "re-run `w2v prepare`")
    stats = vocab.meta.get("stats", {})
    if stats.get("kept_tokens", ids.size) != ids.size \
            or stats.get("sentences", offsets.size - 1) != offsets.size - 1:
        # e.g. a prepare killed after writing new id files but before its vocab.json
        raise DataError(f"{workdir}: {VOCAB_FILE} describes {stats.get('kept_tokens')} tokens in "
                        f"{stats.get('sentences')} sentences but {IDS_FILE} holds {ids.size} in "
                        f"{offsets.size - 1}: they come from different runs; re-run `w2v prepare`")
    if ids.size:
        low, high = _min_max(ids)
        if low < 1 or high >= len(vocab):
            raise DataError(f"{workdir}: {IDS_FILE} holds ids outside the vocabulary "
                            f"({len(vocab)})")
    return Dataset(vocab, ids.astype(np.int32, copy=False), offsets.astype(np.int64, copy=False))


SCAN = 1 << 22  # values read at once, so a memory-mapped array is never read whole


def _nondecreasing(a: np.ndarray) -> bool:
    return all(np.all(np.diff(a[i:i + SCAN + 1]) >= 0) for i in range(0, a.size, SCAN))


def _min_max(a: np.ndarray) -> tuple[int, int]:
    parts = [(int(a[i:i + SCAN].min()), int(a[i:i + SCAN].max()))
             for i in range(0, a.size, SCAN)]
    return min(p[0] for p in parts), max(p[1] for p in parts)
