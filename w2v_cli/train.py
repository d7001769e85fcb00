"""The training loop: device, trainer, per-epoch sampling, checkpoints, progress, throughput."""

from __future__ import annotations

import contextlib
import itertools
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

import numpy as np

from . import batches as batches_mod
from . import checkpoint
from .backend import device as resolve_device
from .backend import mxnet
from .config import Config
from .dataset import Dataset
from .errors import DataError, UsageError
from .model import arrays, build_net, frontend, masked_loss, skip_gram


@dataclass
class Progress:
    """A progress report. ``loss`` is the mean over the batches of this epoch so far."""

    epoch: int          # 1-based
    epochs: int
    batch: int          # batches done in this epoch
    batches: int
    loss: float
    centers_per_sec: float
    epoch_done: bool = False


def check(config: Config) -> None:
    """Raise UsageError for settings that cannot train (the CLI checks ranges at parse time)."""
    for name in ("epochs", "batch_size", "window", "embed_size", "log_interval", "chunk_tokens"):
        if getattr(config, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if config.negatives < 0:
        raise UsageError("--negatives must be 0 or more")
    if not config.lr > 0:
        raise UsageError("--lr must be positive")
    if config.subsample < 0:
        raise UsageError("--subsample must be 0 or more")


def train(config: Config, ds: Dataset,
          on_progress: Optional[Callable[[Progress], None]] = None) -> dict:
    """Train skip-gram with negative sampling on ``ds``; checkpoint every epoch into the workdir.

    Returns the run record (also saved as run.json): settings, device, per-epoch metrics.
    """
    check(config)
    mx = mxnet()
    ctx = resolve_device(config.device)
    rng = np.random.default_rng(config.seed)
    mx.random.seed(config.seed, ctx=ctx)
    workdir = config.workdir_path
    record = {"config": config.to_dict(), "vocab_size": len(ds.vocab), "device": str(ctx),
              "epochs": [], "complete": False}

    # A sparse run trains in the legacy front end (see model.py). Only the model's own calls
    # run inside that scope: on_progress may call code that switches numpy mode back on.
    with frontend(config.sparse_grad):
        net = build_net(len(ds.vocab), config.embed_size, ctx, config.sparse_grad)
        trainer = make_trainer(net, config)
    train_seconds = 0.0
    # closing() stops the prefetch thread at once if training ends early (an error, Ctrl-C).
    with contextlib.closing(chunk_stream(config, ds, rng)) as stream:
        for epoch, chunks in itertools.groupby(stream, key=lambda c: c.epoch):
            start = time.perf_counter()
            loss_sum, n = train_epoch(net, trainer, chunks, config, ctx, start, on_progress)
            if n == 0:
                raise DataError("no training pairs: every sentence has fewer than 2 tokens "
                                "after subsampling (use a larger corpus or --subsample 0)")
            mean_loss = _read(loss_sum) / n
            mx.nd.waitall()
            seconds = time.perf_counter() - start
            train_seconds += seconds
            record["epochs"].append({
                "epoch": epoch, "loss": mean_loss, "seconds": round(seconds, 3),
                "centers": n, "centers_per_sec": round(n / seconds, 1),
            })
            record["complete"] = epoch == config.epochs
            with frontend(config.sparse_grad):
                checkpoint.save(net, workdir, record)
            if on_progress:
                batches = batches_mod.num_batches(n, config.batch_size)
                on_progress(Progress(epoch, config.epochs, batches, batches, mean_loss,
                                     n / seconds, epoch_done=True))
    total_centers = sum(e["centers"] for e in record["epochs"])
    record["final"] = {"loss": record["epochs"][-1]["loss"],
                       "train_seconds": round(train_seconds, 3),
                       "centers_per_sec": round(total_centers / train_seconds, 1)}
    checkpoint.save_record(workdir, record)
    return record


def make_trainer(net, config: Config):
    """Adam over both tables. With row_sparse gradients MXNet's adam updates lazily: only the
    rows a batch touched, moments included (its default ``lazy_update=True``)."""
    mx = mxnet_module()
    return mx.gluon.Trainer(net.collect_params(), "adam", {"learning_rate": config.lr})


def chunk_stream(config: Config, ds: Dataset, rng: np.random.Generator,
                 first_epoch: int = 1) -> Iterator[batches_mod.Chunk]:
    """Every chunk of every epoch, drawn ahead in a background thread when
    ``config.prefetch`` (the same chunks either way: one thread owns ``rng``)."""
    chunks = batches_mod.epoch_chunks(ds.ids, ds.offsets, ds.vocab.counts, config, rng,
                                      config.epochs, first_epoch)
    return batches_mod.prefetch(chunks, depth=1) if config.prefetch else chunks


def train_epoch(net, trainer, chunks: Iterable[batches_mod.Chunk], config: Config, ctx,
                start: float, on_progress=None):
    """Train on one epoch's chunks. Returns (loss sum on the device, centers seen).

    The loss sum stays on the device; reading it forces a sync, so that happens only every
    ``log_interval`` batches, for the progress report.
    """
    loss_sum, seen, done = None, 0, 0
    for chunk in chunks:
        ex = chunk.examples
        # Batches of this epoch: exact when the epoch is one chunk, else estimated from this one.
        estimate = done + batches_mod.num_batches(len(ex), config.batch_size) \
            * (chunk.count - chunk.index)
        for b in batches_mod.batches_in_order(ex, chunk.order, config.batch_size):
            with frontend(config.sparse_grad):
                loss = train_step(net, trainer, b, ctx)
                loss_sum = loss if loss_sum is None else loss_sum + loss
            seen += b.center.shape[0]
            done += 1
            if on_progress and done % config.log_interval == 0:
                elapsed = time.perf_counter() - start
                on_progress(Progress(chunk.epoch, config.epochs, done, max(done, estimate),
                                     _read(loss_sum) / seen, seen / elapsed))
    return (0.0 if loss_sum is None else loss_sum), seen


def train_step(net, trainer, b: batches_mod.Batch, ctx):
    """One forward, backward and adam update on batch ``b``, in the net's front end. Returns
    the batch's loss sum, a scalar still on the device."""
    mx = mxnet_module()
    xp = arrays()
    center = xp.array(b.center, ctx=ctx, dtype="int32")
    items = xp.array(b.items, ctx=ctx, dtype="int32")
    mask = xp.array(b.mask, ctx=ctx)
    label = xp.array(b.label, ctx=ctx)
    with mx.autograd.record():
        pred = skip_gram(center, items, net[0], net[1])
        loss = masked_loss(pred.reshape(label.shape), label, mask)
    loss.backward()
    trainer.step(b.center.shape[0])
    return loss.sum()


def _read(x) -> float:
    """A device scalar (either front end) as a Python float; waits for the device."""
    return float(x) if isinstance(x, float) else x.asnumpy().item()


def mxnet_module():
    """MXNet, already imported and put in numpy mode by ``backend.mxnet()`` in ``train``;
    importing it plainly keeps a sparse run's legacy front-end scope intact."""
    import mxnet as mx
    return mx
