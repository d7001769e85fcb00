"""What a run must stay within: the memory its settings ask for, and finite numbers.

Checked before anything in the workdir changes (memory) and while training (the loss and the
parameters), so settings that cannot fit, or a run that diverges, end with one ``Error:``
line and leave the last good model and checkpoints as they were.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np

from .config import Config, noise_per_context, resolved
from .errors import DivergedError, UsageError
from .sampling import keep_probability

_FLOAT32 = 4
_INT32 = 4
_INT64 = 8


def available_memory() -> Optional[int]:
    """Bytes of memory available to a new allocation (Linux's MemAvailable, else the free
    physical pages), or None when the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def memory_needs(config: Config, counts: np.ndarray, tokens: int) -> list[tuple[int, str, str]]:
    """Lower bounds of what training holds at once: [(bytes, what, options to lower)].

    counts: (V,) int64 word counts by id; tokens: corpus tokens. Each figure counts only the
    largest arrays of its part, so the sum underestimates the peak: a refusal is certain.
    """
    config = resolved(config)  # the optimizer and the subsampling its defaults imply
    vocab, embed, window = len(counts), config.embed_size, config.window
    k = noise_per_context(config)
    tables = _table_copies(config) * vocab * embed * _FLOAT32
    # One chunk's centers (after the expected subsampling) with 2 * window context slots:
    # the windows' int64 position table, and k int32 noise words per slot.
    kept = counts[1:] * keep_probability(counts, config.subsample)[1:]
    keep = float(kept.sum() / max(int(counts[1:].sum()), 1))
    rows = int(min(config.chunk_tokens, tokens) * keep)
    chunk = rows * 2 * window * (_INT64 + k * _INT32)
    batch = _batch_rows(config, k) * embed * _FLOAT32
    noise = _noise_options(config)
    held = ("(plain SGD keeps no other state)" if config.optimizer == "sgd" else
            "with Adam's moments" if not config.kvstore.startswith("dist") else
            "a worker holds (Adam's moments are the servers')")
    return [
        (tables, f"the two (V, E) embedding tables {held} "
                 f"(V = {vocab} words, E = --embed-size {embed})", "--embed-size"),
        (chunk, f"one chunk's windows and noise words (--chunk-tokens {config.chunk_tokens}, "
                f"--window {window}, --negatives {config.negatives})",
         "--window, --negatives or --chunk-tokens"),
        (batch, f"one batch's context and noise vectors (--batch-size {config.batch_size}, "
                f"--window {window}, "
                + "".join(f"{name} {value}, " for name, value in noise)
                + f"--embed-size {embed})",
         "--batch-size, --window, " + "".join(f"{name}, " for name, _ in noise)
         + "or --embed-size"),
    ]


def _batch_rows(config: Config, k: int) -> int:
    """Vectors one batch looks up (a lower bound: hierarchical softmax's path nodes are left
    out). ``k``: noise words drawn per context word (noise_per_context)."""
    b, slots = config.batch_size, 2 * config.window
    if config.loss == "hs":
        return b * slots
    if config.model == "cbow":  # the contexts, and the center with its own noise words
        return b * (slots + 1 + config.negatives)
    groups = -(-b // config.noise_group) * config.group_noise if config.noise_group else 0
    return b * slots * (1 + k) + groups


def _noise_options(config: Config) -> list[tuple[str, int]]:
    """The noise options that size a batch, as (option, value)."""
    if config.loss == "hs":
        return []
    if config.noise_group:
        return [("--group-noise", config.group_noise)]
    return [("--negatives", config.negatives)]


def _table_copies(config: Config) -> int:
    """(V, E) float32 tables training holds at once. One machine: params and Adam's two
    moments per table (none with plain SGD), plus dense gradients unless sparse. A dist
    worker (the moments are on the servers): params and dense gradients; with row-sparse
    tables, both tables whole once they are read at an epoch's end (model.table pulls every
    row)."""
    sparse = config.sparse_grad in (None, True)
    if config.optimizer == "sgd" or config.kvstore.startswith("dist"):
        return 2 if sparse else 4
    return 6 if sparse else 8


def check_memory(config: Config, counts: np.ndarray, tokens: int,
                 available: Optional[int] = None) -> None:
    """Raise UsageError when ``config`` needs more memory than is available (``available``
    bytes; default: what the system reports now; no check if it reports nothing)."""
    available = available_memory() if available is None else available
    if available is None:
        return
    needs = memory_needs(config, counts, tokens)
    total = sum(n for n, _, _ in needs)
    if total <= available:
        return
    size, what, options = max(needs)
    raise UsageError(f"these settings need at least {human_bytes(total)} of memory, more than "
                     f"the {human_bytes(available)} available: {what} alone take "
                     f"{human_bytes(size)}; use a smaller {options}")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def check_loss(loss: float, where: str, lr: float) -> None:
    """Raise DivergedError when the mean loss read at ``where`` is nan or infinite."""
    if not math.isfinite(loss):
        raise DivergedError(f"the loss is not finite ({loss}) at {where}: training diverged; "
                            "the last good model.params and checkpoints are unchanged. Train "
                            f"again with a smaller --lr (this run: {lr:g})")


def check_params(net, where: str) -> None:
    """Raise DivergedError when a parameter of ``net`` holds nan or inf, or values so large
    that their squares overflow float32, before it is saved.

    One sum of squares per table on its device: nan or inf anywhere makes it non-finite, and
    so do values past ~1e19, whose cosine similarities (the queries' measure) cannot be
    computed in float32 either: such a table is as unusable as a nan one (a step of
    ``--lr 1e30`` moves every touched row by ~1e30 and leaves the loss finite).
    """
    check_tables([param.list_data()[0] for param in net.collect_params().values()], where)


def check_tables(tables, where: str) -> None:
    """check_params for MXNet arrays ``tables`` ((V, E) each) read from a network already."""
    for data in tables:
        total = (data * data).sum().asnumpy().item()
        if not math.isfinite(total):
            raise DivergedError(f"the parameters are not finite {where} (or too large for a "
                                "cosine similarity in float32): training diverged; "
                                "they were not saved, the last good model.params and "
                                "checkpoints are unchanged. Train again with a smaller --lr")
