"""The training loop: device, trainer, per-epoch sampling, checkpoints, progress, throughput."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from . import batches as batches_mod
from . import checkpoint
from . import interrupt
from .backend import device as resolve_device
from .backend import mxnet
from .config import Config
from .dataset import VOCAB_FILE, Dataset
from .errors import DataError, Interrupted, UsageError
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
          on_progress: Optional[Callable[[Progress], None]] = None, *,
          resume: bool = False, stop: Optional[interrupt.StopFlag] = None) -> dict:
    """Train skip-gram with negative sampling on ``ds``; checkpoint every epoch into the workdir.

    Returns the run record (also saved as run.json): settings, device, per-epoch metrics.
    ``resume``: continue from the newest checkpoint in the workdir (else start over).
    SIGINT / SIGTERM (or ``stop`` set by hand) stop after the current step with a checkpoint
    and raise Interrupted. Run it under the workdir lock (lock.acquire), as the CLI does.
    """
    with interrupt.catch_signals(stop) as stop:
        return _train(config, ds, on_progress, resume, stop)


def _train(config: Config, ds: Dataset, on_progress, resume: bool,
           stop: interrupt.StopFlag) -> dict:
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
    # --- resume: parameters, Adam state, RNG and position from the newest checkpoint ---
    pos = checkpoint.Position(record=record)
    if resume:
        pos = checkpoint.resume(workdir, config, ds, net, trainer, ctx)
        checkpoint.restore_rng(rng, pos)
        record = {**pos.record, "config": config.to_dict(), "device": str(ctx), "complete": False}
    else:
        checkpoint.clear(workdir)
    # --- end resume ---
    for epoch in range(pos.epoch + 1, config.epochs + 1):
        start = time.perf_counter()
        epoch_rng = rng.bit_generator.state  # to redraw this epoch when resuming inside it
        mx.random.seed(checkpoint.mx_seed(config.seed, epoch), ctx=ctx)
        skip = pos.batch if epoch == pos.epoch + 1 else 0
        ex = examples if examples is not None else draw()
        if len(ex) == 0:
            raise DataError("no training pairs: every sentence has fewer than 2 tokens "
                            "after subsampling (use a larger corpus or --subsample 0)")
        n_batches = batches_mod.num_batches(len(ex), config.batch_size)
        # The loss sum stays on the device; reading it forces a sync, so do that only
        # every log_interval batches.
        loss_sum = np_mx.zeros((), ctx=ctx) + (pos.loss_sum if skip else 0.0)
        start -= pos.seconds if skip else 0.0
        for i, b in enumerate(batches_mod.batches(ex, config.batch_size, rng), start=1):
            if i <= skip:
                continue  # done before the checkpoint this run resumed from
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
            # --- stop after this step on SIGINT / SIGTERM: checkpoint inside the epoch ---
            if stop.is_set() and i < n_batches:
                _stop(stop, workdir, net, trainer, config, ds, checkpoint.Position(
                    epoch - 1, i, epoch_rng, float(loss_sum), time.perf_counter() - start,
                    record), n_batches)
        mean_loss = float(loss_sum) / len(ex)
        mx.nd.waitall()
        seconds = time.perf_counter() - start
        record["epochs"].append({
            "epoch": epoch, "loss": mean_loss, "seconds": round(seconds, 3),
            "centers": len(ex), "centers_per_sec": round(len(ex) / seconds, 1),
        })
        record["complete"] = epoch == config.epochs
        # --- checkpoint at the epoch boundary (and stop there if a signal came) ---
        checkpoint.save_checkpoint(workdir, net, trainer, config, ds, checkpoint.Position(
            epoch, 0, rng.bit_generator.state, record=record))
        if on_progress:
            on_progress(Progress(epoch, config.epochs, n_batches, n_batches, mean_loss,
                                 len(ex) / seconds, epoch_done=True))
        if stop.is_set() and epoch < config.epochs:
            _stop(stop, workdir, None, None, config, ds, checkpoint.Position(epoch, 0), 0)
    total_centers = sum(e["centers"] for e in record["epochs"])
    train_seconds = sum(e["seconds"] for e in record["epochs"])  # across resumes too
    record["complete"] = True
    record["final"] = {"loss": record["epochs"][-1]["loss"],
                       "train_seconds": round(train_seconds, 3),
                       "centers_per_sec": round(total_centers / max(train_seconds, 1e-9), 1)}
    checkpoint.save_record(workdir, {**checkpoint.load_record(workdir), **record})
    return record


def _stop(stop, workdir, net, trainer, config, ds, pos, n_batches) -> None:
    """Write a checkpoint (none when the epoch's own was just written); raise Interrupted."""
    if net is not None:
        checkpoint.save_checkpoint(workdir, net, trainer, config, ds, pos)
        where = f"epoch {pos.epoch + 1}/{config.epochs}, batch {pos.batch}/{n_batches}"
    else:
        where = f"the end of epoch {pos.epoch}/{config.epochs}"
    raise Interrupted(
        f"interrupted by {stop.name} at {where}; the checkpoint is saved in {workdir}. "
        f"Continue with: w2v train --resume --workdir {shlex.quote(str(workdir))}", stop.signum)
