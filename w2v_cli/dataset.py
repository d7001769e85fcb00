"""The prepared dataset: corpus -> vocab -> one flat id array plus sentence offsets.

On disk, in the working directory: ``vocab.json``, ``ids.npy`` and ``offsets.npy``.
Sentence ``s`` is ``ids[offsets[s]:offsets[s + 1]]``. ``<unk>`` tokens are dropped, as the
d2l chapter drops them, so ``ids`` never holds 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from . import corpus as corpus_mod
from . import fileio
from .config import Config
from .errors import DataError
from .vocab import Vocab

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


def encode(lines: list[str], min_count: int) -> Dataset:
    """Count, build the vocabulary and encode, with no Python loop over single tokens."""
    sentences = [line.split() for line in lines]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise DataError("the corpus holds no tokens")
    flat = list(chain.from_iterable(sentences))
    vocab = Vocab.build(flat, min_count)
    if len(vocab) < 2:
        raise DataError(
            f"no token occurs at least {min_count} times (--min-count); the vocabulary is empty"
        )
    ids = vocab.encode(flat)
    lengths = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
    keep = ids != 0
    sentence_of = np.repeat(np.arange(len(sentences)), lengths)
    kept_lengths = np.bincount(sentence_of[keep], minlength=len(sentences))
    if kept_lengths.max() < 2:
        raise DataError(
            "no sentence has two or more words in the vocabulary, so there is no word pair to "
            f"train on; use longer sentences (one a line) or a lower --min-count ({min_count})"
        )
    offsets = np.concatenate([[0], np.cumsum(kept_lengths)]).astype(np.int64)
    return Dataset(vocab, ids[keep], offsets)


def prepare(config: Config, progress=None) -> Dataset:
    """Read the configured corpus (PTB by default), encode it and write it to the workdir."""
    start = time.perf_counter()
    if config.corpus:
        corpus = corpus_mod.read_files(list(config.corpus), config.encoding_errors)
    else:
        archive = corpus_mod.ensure_ptb(config.data_dir_path, progress)
        corpus = corpus_mod.read_ptb(archive)
    ds = encode(corpus.lines, config.min_count)
    ds.vocab.meta.update(
        source=corpus.source,
        stats={"sentences": ds.n_sentences, "tokens": int(ds.vocab.counts.sum()),
               "kept_tokens": int(ds.ids.size), "seconds": round(time.perf_counter() - start, 3)},
    )
    save(ds, config.workdir_path)
    return ds


def save(ds: Dataset, workdir: Path) -> None:
    # Each file is replaced atomically. The vocab goes last, and load() checks that the three
    # agree, so a crash between two of them is caught rather than trained on.
    for name, arr in ((IDS_FILE, ds.ids), (OFFSETS_FILE, ds.offsets)):
        fileio.save_npy(workdir / name, arr)
    ds.vocab.save(workdir / VOCAB_FILE)


def load(workdir: Path) -> Dataset:
    """Load a prepared dataset, checking that its three files agree."""
    vocab = Vocab.load(workdir / VOCAB_FILE)
    arrays = []
    for name in (IDS_FILE, OFFSETS_FILE):
        try:
            arrays.append(np.load(workdir / name, allow_pickle=False))
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
            or offsets[-1] != ids.size or np.any(np.diff(offsets) < 0):
        raise DataError(f"{workdir}: {IDS_FILE} and {OFFSETS_FILE} do not agree; "
                        "re-run `w2v prepare`")
    if ids.size and (ids.min() < 1 or ids.max() >= len(vocab)):
        raise DataError(f"{workdir}: {IDS_FILE} holds ids outside the vocabulary ({len(vocab)})")
    return Dataset(vocab, ids.astype(np.int32, copy=False), offsets.astype(np.int64, copy=False))
