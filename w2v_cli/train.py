"""The training loop: device, trainer, per-epoch sampling, checkpoints, progress, throughput."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from . import batches as batches_mod
from . import checkpoint
from . import distributed
from .backend import devices as resolve_devices
from .backend import mxnet
from .config import Config
from .dataset import Dataset
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
    batch_size: int = 0  # centers per batch, for an ETA (batches may be an estimate)


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
    if config.kvstore not in distributed.KVSTORES:
        raise UsageError(f"--kvstore {config.kvstore!r}: expected one of "
                         f"{', '.join(distributed.KVSTORES)}")


def train(config: Config, ds: Dataset,
          on_progress: Optional[Callable[[Progress], None]] = None) -> dict:
    """Train skip-gram with negative sampling on ``ds``; checkpoint every epoch into the workdir.

    Returns the run record (also saved as run.json): settings, device, per-epoch metrics.
    As one worker of a parameter server (``--kvstore dist_*``) it trains on its shard of the
    sentences; rank 0 writes the checkpoints, the other ranks only ``run.rank{r}.json``.
    """
    check(config)
    mx = mxnet()
    ctxs = resolve_devices(config.device)
    worker = distributed.make_worker(config)
    part, shard_info = _shard(ds, worker)
    # Each worker samples its own shard with its own stream; all start from the same weights.
    rng = np.random.default_rng([config.seed, worker.rank] if worker.distributed else config.seed)
    mx.random.seed(config.seed)  # every device: the initializer draws on the CPU

    net = build_net(len(ds.vocab), config.embed_size, ctxs)
    trainer = mx.gluon.Trainer(net.collect_params(), "adam", {"learning_rate": config.lr},
                               kvstore=worker.kv if worker.distributed else worker.kvstore)
    steps = distributed.steps_per_epoch(ds, config, worker.num_workers) \
        if worker.distributed else None
    workdir = config.workdir_path
    record = {"config": config.to_dict(), "vocab_size": len(ds.vocab),
              "device": ",".join(map(str, ctxs)), "epochs": [], "complete": False}
    if shard_info:
        record["worker"] = shard_info

    cache: dict = {}
    train_seconds = 0.0
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        stream, batch_iter = epoch_batches(part, ds.vocab.counts, config, rng, cache, worker,
                                           steps)
        # The loss sums stay on the devices; reading them forces a sync, so do that only
        # every log_interval batches.
        loss_sums = [mx.np.zeros((), ctx=c) for c in ctxs]
        seen = 0
        i = 0
        for i, b in enumerate(batch_iter, start=1):
            losses = forward_backward(net, b, ctxs)
            trainer.step(b.center.shape[0])
            loss_sums = [acc + loss for acc, loss in zip(loss_sums, losses)]
            seen += b.center.shape[0]
            if on_progress and i % config.log_interval == 0:
                n_batches = steps or stream.estimated_batches()
                mean = _read(loss_sums) / seen  # reading waits for the devices
                elapsed = time.perf_counter() - start
                on_progress(Progress(epoch, config.epochs, i, max(n_batches, i), mean,
                                     seen / elapsed, batch_size=config.batch_size))
        if seen == 0:
            raise DataError("no training pairs: every sentence has fewer than 2 tokens "
                            "after subsampling (use a larger corpus or --subsample 0)")
        n_batches = i
        mean_loss = _read(loss_sums) / seen
        mx.nd.waitall()
        seconds = time.perf_counter() - start
        train_seconds += seconds
        record["epochs"].append({
            "epoch": epoch, "loss": mean_loss, "seconds": round(seconds, 3),
            "centers": seen, "centers_per_sec": round(seen / seconds, 1),
        })
        record["complete"] = epoch == config.epochs
        if worker.rank == 0:
            checkpoint.save(net, workdir, record)
        if on_progress:
            on_progress(Progress(epoch, config.epochs, n_batches, n_batches, mean_loss,
                                 seen / seconds, epoch_done=True))
    total_centers = sum(e["centers"] for e in record["epochs"])
    record["final"] = {"loss": record["epochs"][-1]["loss"],
                       "train_seconds": round(train_seconds, 3),
                       "centers_per_sec": round(total_centers / train_seconds, 1)}
    if worker.distributed:
        record["worker"]["params_sha1"] = distributed.params_sha1(net, ctxs[0])
    if worker.rank == 0:
        checkpoint.save_record(workdir, record)
    else:
        checkpoint.save_record(workdir, record, name=f"run.rank{worker.rank}.json")
    return record


def _shard(ds: Dataset, worker: distributed.Worker) -> tuple[Dataset, Optional[dict]]:
    """This worker's sentences (all of them on one machine) and a record of which they are."""
    if not worker.distributed:
        return ds, None
    start, end = distributed.shard_bounds(ds.offsets, worker.rank, worker.num_workers)
    part = distributed.shard(ds, start, end)
    return part, {"kvstore": worker.kvstore, "rank": worker.rank,
                  "num_workers": worker.num_workers, "sentences": [start, end],
                  "tokens": int(part.ids.size), "ids_sha1": distributed.ids_sha1(part.ids)}


def epoch_batches(part: Dataset, counts: np.ndarray, config: Config, rng: np.random.Generator,
                  cache: dict, worker: distributed.Worker, steps: Optional[int]):
    """This epoch's batches of this worker's sentences, drawn chunk by chunk.

    Returns the EpochStream (for its batch estimate) and the iterator to train on: the
    stream itself on one machine, exactly ``steps`` full batches as a dist worker.
    """
    stream = batches_mod.EpochStream(part.ids, part.offsets, counts, config, rng, cache,
                                     sample_seed=(worker.rank,), full_only=worker.distributed)
    return stream, (_fixed_steps(stream, steps) if steps else iter(stream))


def _fixed_steps(stream: batches_mod.EpochStream, steps: int):
    """Exactly ``steps`` full batches: the stream, then fresh passes over the same shard
    (new samples, carrying the rows left over) if it runs short."""
    done = 0
    while True:
        for b in stream:
            yield b
            done += 1
            if done == steps:
                return
        if stream.rows_drawn == 0:
            raise DataError("this worker's shard yields no training pairs: use a larger "
                            "corpus or fewer workers")
        stream = batches_mod.EpochStream(stream.ids, stream.offsets, stream.counts,
                                         stream.config, stream.rng, stream.cache,
                                         stream.sample_seed, True, carry=stream.left)


def forward_backward(net, b: batches_mod.Batch, ctxs: list) -> list:
    """Forward and backward of one batch split across ``ctxs`` by rows.

    Returns one summed loss per device, each a () array on its device. The gradients sum
    over the whole batch whatever the split, so ``trainer.step(rows)`` updates as on one
    device. A batch with fewer rows than devices (the last of an epoch at worst) gives the
    spare devices a zero-weighted row, so every device holds a fresh (zero) gradient.
    """
    mx = mxnet()
    rows = b.center.shape[0]
    used = ctxs[:rows]
    parts = [mx.gluon.utils.split_and_load(x, used, even_split=False)
             for x in (b.center, b.items, b.mask, b.label)]
    spare = [(c, 0.0) for c in ctxs[rows:]]
    with mx.autograd.record():
        losses = []
        for center, items, mask, label in zip(*parts):
            pred = skip_gram(center, items, net[0], net[1])
            losses.append(masked_loss(pred.reshape(label.shape), label, mask).sum())
        for c, weight in spare:
            center, items, mask, label = (mx.np.array(x[:1], ctx=c, dtype=x.dtype)
                                          for x in (b.center, b.items, b.mask, b.label))
            pred = skip_gram(center, items, net[0], net[1])
            losses.append(masked_loss(pred.reshape(label.shape), label, mask).sum() * weight)
    mx.autograd.backward(losses)
    return losses


def _read(loss_sums: list) -> float:
    return float(sum(float(x) for x in loss_sums))
