"""One dataclass holding every setting and its default; saved with each run."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import UsageError

DEFAULT_WORKDIR = "w2v-work"
DEFAULT_DATA_DIR = "~/.cache/w2v"
TRIM_PARTS = 3  # --trim-parts with sparse gradients (README.md: "Trimmed batches")


@dataclass
class Config:
    """Settings for prepare and train. The CLI shows these defaults in ``--help``."""

    # where things live
    workdir: str = DEFAULT_WORKDIR  # the CLI also reads W2V_WORKDIR
    data_dir: str = DEFAULT_DATA_DIR  # the CLI also reads W2V_DATA_DIR
    corpus: tuple[str, ...] = ()  # empty: PTB
    encoding_errors: str = "strict"  # strict | replace: invalid UTF-8 in the corpus

    # vocabulary
    min_count: int = 10
    max_vocab: int = 0  # keep at most this many words (besides <unk>), the most frequent; 0: no cap

    # sampling
    subsample: float = 1e-4  # t in keep probability sqrt(t / f(w)); 0 disables
    window: int = 5
    negatives: int = 5
    # > 0: every `noise_group` centers of a batch share `group_noise` noise words, weighted
    # as `negatives` per context word (faster; a different estimate of the chapter's loss)
    noise_group: int = 0
    group_noise: int = 20
    sample_once: bool = False
    seed: int = 0

    # model and optimiser
    embed_size: int = 100
    batch_size: int = 512
    epochs: int = 5
    lr: float = 0.002
    device: str = "auto"  # auto | cpu | gpu | gpu:N | gpu:0,1,... | cpu:0,1,...
    # Row-sparse gradients + lazy adam (center rows caught up to dense Adam): per-step cost
    # follows the rows touched, not the vocabulary. None: on where it is faster and works,
    # one CPU device without a parameter server; the run saves what it resolved to.
    sparse_grad: Optional[bool] = None

    # speed and scale: chunked epochs, streaming and distributed training
    chunk_tokens: int = 1 << 20  # corpus tokens held at once by prepare and by each epoch's sampling
    prefetch: bool = True  # draw the next chunk in a background thread while training
    bucket: bool = False  # batch rows of equal length together (no padding; changes batches)
    # Cut each batch's rows into at most this many parts by length, each padded only to its
    # own longest row (the same loss and gradients). 1: pad the whole batch, as the chapter.
    # None: TRIM_PARTS with sparse gradients and without --noise-group, else 1; saved resolved.
    trim_parts: Optional[int] = None
    kvstore: str = "device"  # local | device (one machine) | dist_sync | dist_async (parameter server)

    # reporting
    log_interval: int = 50  # batches between progress reports (and device syncs)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["corpus"] = list(self.corpus)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        if "corpus" in kwargs:
            kwargs["corpus"] = tuple(kwargs["corpus"])
        return cls(**kwargs)

    @property
    def workdir_path(self) -> Path:
        return Path(self.workdir).expanduser()

    @property
    def data_dir_path(self) -> Path:
        return Path(self.data_dir).expanduser()


def default(name: str):
    """The default of one Config field, for the CLI's option declarations."""
    return {f.name: f.default for f in dataclasses.fields(Config)}[name]


MAX_SEED = 2 ** 32 - 1  # numpy and MXNet seeds are unsigned 32-bit


def check_numbers(config: Config) -> None:
    """Raise UsageError for a float setting that is nan or infinite, or a seed out of range.

    The CLI refuses these at parse time; this catches them in settings read back from a
    checkpoint, or built by hand."""
    for name in ("lr", "subsample"):
        if not math.isfinite(getattr(config, name)):
            raise UsageError(f"--{name} must be a finite number, got {getattr(config, name)}")
    if not 0 <= config.seed <= MAX_SEED:
        raise UsageError(f"--seed must be between 0 and {MAX_SEED}, got {config.seed}")
