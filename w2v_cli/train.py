"""The training loop: device, trainer, per-epoch sampling, checkpoints, progress, throughput."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from . import batches as batches_mod
from . import checkpoint
from .backend import device as resolve_device
from .backend import mxnet
from .config import Config
from .dataset import VOCAB_FILE, Dataset
from .errors import DataError, UsageError
from .model import build_net, masked_loss, skip_gram


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
    for name in ("epochs", "batch_size", "window", "embed_size", "log_interval"):
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
    np_mx, autograd = mx.np, mx.autograd
    ctx = resolve_device(config.device)
    rng = np.random.default_rng(config.seed)
    mx.random.seed(config.seed, ctx=ctx)

    net = build_net(len(ds.vocab), config.embed_size, ctx)
    trainer = mx.gluon.Trainer(net.collect_params(), "adam", {"learning_rate": config.lr})
    workdir = config.workdir_path
    # The vocabulary goes next to the parameters, so the workdir alone answers queries.
    ds.vocab.save(workdir / VOCAB_FILE)
    record = {"config": config.to_dict(), "vocab_size": len(ds.vocab), "device": str(ctx),
              "epochs": [], "complete": False,
              "curve": []}  # [epoch_fraction, running mean loss] at each log point, for plots

    def draw():
        return batches_mod.draw_examples(ds.ids, ds.offsets, ds.vocab.counts, config, rng)

    examples = draw() if config.sample_once else None
    train_seconds = 0.0
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        ex = examples if examples is not None else draw()
        if len(ex) == 0:
            raise DataError("no training pairs: every sentence has fewer than 2 tokens "
                            "after subsampling (use a larger corpus or --subsample 0)")
        n_batches = batches_mod.num_batches(len(ex), config.batch_size)
        # The loss sum stays on the device; reading it forces a sync, so do that only
        # every log_interval batches.
        loss_sum = np_mx.zeros((), ctx=ctx)
        for i, b in enumerate(batches_mod.batches(ex, config.batch_size, rng), start=1):
            center = np_mx.array(b.center, ctx=ctx, dtype="int32")
            items = np_mx.array(b.items, ctx=ctx, dtype="int32")
            mask = np_mx.array(b.mask, ctx=ctx)
            label = np_mx.array(b.label, ctx=ctx)
            with autograd.record():
                pred = skip_gram(center, items, net[0], net[1])
                loss = masked_loss(pred.reshape(label.shape), label, mask)
            loss.backward()
            trainer.step(b.center.shape[0])
            loss_sum = loss_sum + loss.sum()
            if i % config.log_interval == 0 or i == n_batches:
                seen = min(i * config.batch_size, len(ex))
                mean = float(loss_sum) / seen  # float() waits for the device
                record["curve"].append([round(epoch - 1 + i / n_batches, 4), mean])
                if on_progress:
                    elapsed = time.perf_counter() - start
                    on_progress(Progress(epoch, config.epochs, i, n_batches, mean, seen / elapsed))
        mean_loss = float(loss_sum) / len(ex)
        mx.nd.waitall()
        seconds = time.perf_counter() - start
        train_seconds += seconds
        record["epochs"].append({
            "epoch": epoch, "loss": mean_loss, "seconds": round(seconds, 3),
            "centers": len(ex), "centers_per_sec": round(len(ex) / seconds, 1),
        })
        record["complete"] = epoch == config.epochs
        checkpoint.save(net, workdir, record)
        if on_progress:
            on_progress(Progress(epoch, config.epochs, n_batches, n_batches, mean_loss,
                                 len(ex) / seconds, epoch_done=True))
    total_centers = sum(e["centers"] for e in record["epochs"])
    record["final"] = {"loss": record["epochs"][-1]["loss"],
                       "train_seconds": round(train_seconds, 3),
                       "centers_per_sec": round(total_centers / train_seconds, 1)}
    checkpoint.save_record(workdir, record)
    return record
