"""The training loop: device, trainer, per-epoch sampling, checkpoints, progress, throughput."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import shlex
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from . import batches as batches_mod
from . import checkpoint
from . import distributed
from . import interrupt
from . import limits
from . import lock as lock_mod
from . import sampling
from .backend import HostArrays, current_mxnet, from_numpy, mxnet, quiet_lazy_update_notice
from .backend import devices as resolve_devices
from .catchup import CatchUp
from .config import TRIM_PARTS, Config, check_numbers
from .dataset import VOCAB_FILE, Dataset
from .errors import DataError, Interrupted, ResumeError, UsageError
from .model import (arrays, build_net, frontend, grouped_loss, masked_loss, skip_gram,
                    skip_gram_trimmed, weighted_loss)


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
    seconds: float = 0.0  # training time of this epoch so far (progress callbacks excluded)
    # The center table as it is now, (V, E) float32; reading it waits for the device.
    center: Optional[Callable[[], np.ndarray]] = None


def check(config: Config) -> None:
    """Raise UsageError for settings that cannot train (the CLI checks ranges at parse time)."""
    check_numbers(config)
    for name in ("epochs", "batch_size", "window", "embed_size", "log_interval", "chunk_tokens"):
        if getattr(config, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if config.negatives < 0:
        raise UsageError("--negatives must be 0 or more")
    if config.noise_group < 0:
        raise UsageError("--noise-group must be 0 or more")
    if config.group_noise < 1:
        raise UsageError("--group-noise must be at least 1")
    if config.noise_group and not config.negatives:
        raise UsageError("--noise-group needs --negatives of 1 or more (it weights the shared "
                         "noise words as that many per context word)")
    if config.trim_parts is not None and config.trim_parts < 1:
        raise UsageError("--trim-parts must be at least 1")
    if (config.trim_parts or 1) > 1 and config.noise_group:
        raise UsageError("--trim-parts applies to the chapter's batches, not to --noise-group's "
                         "(pass --trim-parts 1, or leave it to its default)")
    if not config.lr > 0:
        raise UsageError("--lr must be positive")
    if config.subsample < 0:
        raise UsageError("--subsample must be 0 or more")
    if config.kvstore not in distributed.KVSTORES:
        raise UsageError(f"--kvstore {config.kvstore!r}: expected one of "
                         f"{', '.join(distributed.KVSTORES)}")
    if config.sparse_grad and config.kvstore.startswith("dist"):
        raise UsageError(f"--sparse-grad does not work with --kvstore {config.kvstore}: "
                         "train with --dense-grad, or on one machine")
    # Each of these shapes one device's batch or update; several devices split by rows.
    one_device = (("--sparse-grad", config.sparse_grad, "train with --dense-grad"),
                  ("--noise-group", config.noise_group, "train without --noise-group"),
                  ("--trim-parts", (config.trim_parts or 1) > 1, "pass --trim-parts 1"))
    for option, on, otherwise in one_device:
        if on and "," in config.device:
            raise UsageError(f"{option} works on one device, not --device {config.device}: "
                             f"name one device, or {otherwise}")


def for_devices(config: Config, ctxs: list) -> Config:
    """``config`` with the settings left to the default (None) decided for ``ctxs``.

    ``sparse_grad``: sparse on one CPU device without a parameter server (faster there, the
    same center table as dense adam; see catchup.py), dense otherwise (sparse gradients work
    on one device only, and on a GPU dense adam is cheap and the sparse path unmeasured).
    ``trim_parts``: TRIM_PARTS with sparse gradients without --noise-group, else 1: with
    dense gradients dense Adam over both tables dominates a step and trimming saved nothing
    measurable (benchmarks/README.md); a multi-device batch is split by rows instead.
    """
    one_cpu = len(ctxs) == 1 and ctxs[0].device_type == "cpu"
    if config.sparse_grad is None:
        config = dataclasses.replace(
            config, sparse_grad=one_cpu and not config.kvstore.startswith("dist"))
    if config.trim_parts is None:
        parts = TRIM_PARTS if config.sparse_grad and not config.noise_group else 1
        config = dataclasses.replace(config, trim_parts=parts)
    return config


def settings_for(config: Config, given: dict, *, resume: bool = False,
                 restart: bool = False) -> Config:
    """The settings a ``train`` call runs with, checked.

    ``given``: the settings the user named (the others in ``config`` are defaults). A fresh
    run over an unfinished one is refused unless ``restart``; ``resume`` starts from the newest
    checkpoint's settings, overridden by ``given``.
    """
    workdir = config.workdir_path
    if not (resume or restart):
        left = checkpoint.unfinished(workdir)
        if left:
            raise ResumeError(f"{workdir} holds an unfinished run ({left}); continue it with "
                              "`w2v train --resume`, or pass --restart to discard it")
    if resume:
        saved = checkpoint.saved_config(workdir)
        if "device" in given:  # decided afresh for the new devices, unless given too
            saved.pop("trim_parts", None)
        config = Config.from_dict({**saved, "workdir": config.workdir, **given})
    check(config)
    return config


def train(config: Config, ds: Dataset,
          on_progress: Optional[Callable[[Progress], None]] = None, *,
          resume: bool = False, stop: Optional[interrupt.StopFlag] = None) -> dict:
    """Train skip-gram with negative sampling on ``ds``; checkpoint every epoch into the workdir.

    Returns the run record (also saved as run.json): settings, device, per-epoch metrics.
    ``resume``: continue from the newest checkpoint in the workdir (else start over).
    SIGINT / SIGTERM (or ``stop`` set by hand) stop after the current step with a checkpoint
    and raise Interrupted. Run it under the workdir lock (lock.acquire), as the CLI does.

    As one worker of a parameter server (``--kvstore dist_*``) it trains on its shard of the
    sentences; rank 0 takes the workdir lock itself (the CLI takes none for dist workers, so
    several workers can share one workdir) and writes ``model.params`` and ``run.json`` at
    each epoch end, the other ranks only ``run.rank{r}.json``. A dist run cannot be resumed.
    """
    with interrupt.catch_signals(stop) as stop:
        return _train(config, ds, on_progress, resume, stop)


def _train(config: Config, ds: Dataset, on_progress, resume: bool,
           stop: interrupt.StopFlag) -> dict:
    check(config)
    if resume and config.kvstore.startswith("dist"):
        # Checked before joining the parameter server, so no worker waits for this one.
        raise ResumeError(f"--resume does not work with --kvstore {config.kvstore}: Adam's state "
                          "lives on the parameter servers, which MXNet cannot save; start a new "
                          "run without --resume")
    mx = mxnet()
    ctxs = resolve_devices(config.device)
    config = for_devices(config, ctxs)
    limits.check_memory(config, ds.vocab.counts, int(ds.ids.size))  # before any disk change
    worker = distributed.make_worker(config)
    with contextlib.ExitStack() as held:
        if worker.distributed and worker.rank == 0:
            held.enter_context(lock_mod.acquire(config.workdir_path, "train (dist rank 0)",
                                                create=False))
        return _train_worker(config, ds, on_progress, resume, stop, mx, ctxs, worker)


def _train_worker(config: Config, ds: Dataset, on_progress, resume: bool,
                  stop: interrupt.StopFlag, mx, ctxs: list, worker: distributed.Worker) -> dict:
    part, shard_info = _shard(ds, worker)
    # Each worker samples its own shard with its own stream; all start from the same weights.
    rng = np.random.default_rng([config.seed, worker.rank] if worker.distributed else config.seed)
    mx.random.seed(config.seed)  # every device: the initializer draws on the CPU

    # A sparse run builds, trains, saves and loads in the legacy front end (see model.py),
    # each scoped to the model's own calls: on_progress may switch numpy mode back on.
    with frontend(config.sparse_grad):
        net = build_net(len(ds.vocab), config.embed_size, ctxs, config.sparse_grad)
        # With row_sparse gradients MXNet's adam updates lazily: only the rows a batch
        # touched, moments included (its default lazy_update=True).
        trainer = mx.gluon.Trainer(net.collect_params(), "adam", {"learning_rate": config.lr},
                                   kvstore=worker.kv if worker.distributed else worker.kvstore)
    # The center table's idle rows are then caught up, before they are next read, to where
    # dense Adam would have moved them (catchup.py): lazy center rows cost WordSim-353 on
    # PTB. The context table stays lazy (it cost little there).
    catch = None
    if config.sparse_grad:
        catch = CatchUp(trainer, net[0].weight)
        with frontend(True):
            quiet_lazy_update_notice()
    steps = distributed.steps_per_epoch(ds, config, worker.num_workers) \
        if worker.distributed else None
    workdir = config.workdir_path
    writes = worker.rank == 0  # the one process that writes the workdir's shared files
    device = ",".join(map(str, ctxs))
    if writes and not (workdir / VOCAB_FILE).exists():
        # A dataset prepared elsewhere: its vocabulary goes next to the parameters, so the
        # workdir alone answers queries. (Prepared in this workdir, it is there already.)
        ds.vocab.save(workdir / VOCAB_FILE)
    record = {"config": config.to_dict(), "vocab_size": len(ds.vocab), "device": device,
              "epochs": [], "complete": False,
              "curve": []}  # [epoch_fraction, running mean loss] at each log point, for plots
    if shard_info:
        record["worker"] = shard_info

    # --- resume: parameters, Adam state, RNG and position from the newest checkpoint ---
    pos = checkpoint.Position(record=record)
    if resume:
        with frontend(config.sparse_grad):
            pos = checkpoint.resume(workdir, config, ds, net, trainer, ctxs)
        if catch:
            catch.resumed()
        checkpoint.restore_rng(rng, pos)
        record = {**pos.record, "config": config.to_dict(), "device": device, "complete": False}
    elif writes:  # the previous run's checkpoints go once this run has written its first
        record["run"] = checkpoint.start_run(workdir)
    # --- end resume ---
    first = pos.epoch + 1
    last_touch = _last_touch(config, ds.vocab.counts, worker.rank)
    # closing() stops the prefetch thread at once if training ends early (Ctrl-C, an error).
    with contextlib.closing(epoch_batches(part, ds.vocab.counts, config, rng, worker, steps,
                                          config.epochs - pos.epoch)) as epochs:
        for epoch, (stream, batch_iter) in zip(range(first, config.epochs + 1), epochs):
            mx.random.seed(checkpoint.mx_seed(config.seed, epoch))  # every device
            partial = pos if epoch == first and pos.batch else None
            n_batches, seen, mean_loss, seconds = _run_epoch(
                net, trainer, catch, ctxs, stream, last_touch(epoch, batch_iter), config, epoch,
                steps, partial, record, on_progress, stop,
                functools.partial(_stop_inside, stop, worker, workdir, net, trainer, config, ds,
                                  epoch, stream, record))
            record["epochs"].append({
                "epoch": epoch, "loss": mean_loss, "seconds": round(seconds, 3),
                "centers": seen, "centers_per_sec": round(seen / seconds, 1),
            })
            record["complete"] = epoch == config.epochs
            # --- checkpoint at the epoch boundary (and stop there if a signal came) ---
            # The RNG state where the next epoch starts: the producer's snapshot, as with
            # prefetch the RNG itself has moved on into that epoch already.
            _save_epoch(worker, workdir, net, trainer, config, ds,
                        checkpoint.Position(epoch, 0, stream.end_state, record=record))
            if on_progress:
                on_progress(Progress(epoch, config.epochs, n_batches, n_batches, mean_loss,
                                     seen / seconds, epoch_done=True, seconds=seconds))
            if stop.is_set() and epoch < config.epochs:
                _stop(stop, worker, workdir, None, None, config, ds,
                      checkpoint.Position(epoch, 0), 0)
    return _finish(record, worker, workdir, net, ctxs)


STEPS_AHEAD = 2  # steps queued on the devices beyond the one running; bounds their memory


def _run_epoch(net, trainer, catch: Optional[CatchUp], ctxs: list, stream, batch_iter,
               config: Config, epoch: int, steps: Optional[int],
               partial: Optional[checkpoint.Position], record: dict, on_progress,
               stop: interrupt.StopFlag,
               on_stop: Callable[[int, float, float, int], None]) -> tuple[int, int, float, float]:
    """Train on one epoch's batches; returns (batches, centers, mean loss, seconds).

    ``catch``: with sparse gradients, the center table's catch-up: each step's center rows
    are caught up before it (every other step, with the next step's; CatchUp.rows), and
    every row when the epoch ends or stops (so that checkpoints hold dense Adam's table) and
    before a progress callback reads the table.

    ``partial``: the checkpoint inside this epoch to resume from: its first ``partial.batch``
    batches are drawn again (the same, from the same RNG state) but not trained on.
    When ``stop`` is set after a step that is not the epoch's last, ``on_stop(batch,
    loss_sum, seconds, batches)`` checkpoints and raises Interrupted (after the last step the
    epoch's own checkpoint serves).
    """
    mx = mxnet()
    skip = partial.batch if partial else 0
    start = time.perf_counter() - (partial.seconds if partial else 0.0)
    # The loss sums stay on the devices; reading them forces a sync, so do that only
    # every log_interval batches. They start as floats (either front end adds to them).
    loss_sums: list = [0.0 for _ in ctxs]
    if partial:
        loss_sums[0] = partial.loss_sum
    seen = i = 0
    queued = _Queued()
    for i, (b, upcoming) in enumerate(_with_next(batch_iter), start=1):
        last = upcoming is None
        rows = b.rows
        seen += rows
        if i <= skip:
            continue  # done before the checkpoint this run resumed from
        host = HostArrays()  # the batch's arrays, lent to MXNet until queued lets go
        with frontend(config.sparse_grad):
            if catch:  # this step's center rows, and the next step's it leaves alone
                catch.rows(b.center, None if last else upcoming.center, host)
            losses = forward_backward(net, b, ctxs, host)
            trainer.step(rows)
            loss_sums = [acc + loss for acc, loss in zip(loss_sums, losses)]
        queued.add(losses, host)
        if i % config.log_interval == 0 or last:
            n_batches = i if last else max(steps or stream.estimated_batches(), i + 1)
            mean = _read(loss_sums) / seen  # reading waits for the devices
            limits.check_loss(mean, f"epoch {epoch}, batch {i}", config.lr)
            record["curve"].append([round(epoch - 1 + i / n_batches, 4), mean])
            if on_progress:
                now = time.perf_counter()
                elapsed = now - start
                on_progress(Progress(epoch, config.epochs, i, n_batches, mean, seen / elapsed,
                                     batch_size=config.batch_size, seconds=elapsed,
                                     center=functools.partial(_center_table, net, ctxs[0],
                                                              catch)))
                start += time.perf_counter() - now  # the callback's time is not training's
        # --- stop after this step on SIGINT / SIGTERM: checkpoint inside the epoch ---
        if stop.is_set() and not last:
            _flush(catch)
            on_stop(i, _read(loss_sums), time.perf_counter() - start,
                    max(steps or stream.estimated_batches(), i + 1))
    if seen == 0:
        raise DataError("no training pairs: every sentence has fewer than 2 tokens "
                        "after subsampling (use a larger corpus or --subsample 0)")
    _flush(catch)
    mean_loss = _read(loss_sums) / seen
    limits.check_loss(mean_loss, f"the end of epoch {epoch}", config.lr)
    mx.nd.waitall()
    return i, seen, mean_loss, time.perf_counter() - start


class _Queued:
    """The steps queued on the devices, with the host arrays their batches lent MXNet.

    Python queues steps ahead of the engine (the batches reach it without a sync), but no
    more than STEPS_AHEAD: each queued step holds its batch and its activations. A step's
    host arrays are let go once the step after it has computed its loss: that step's forward
    read the weights this step's update wrote, and every operation reading this step's
    batch (catch-up, lookups, loss and their backward) comes before that update. When an
    error ends the epoch early, the queued host arrays go with it: a HostArrays dropped
    unreleased waits for the devices first.
    """

    def __init__(self):
        self._steps: collections.deque = collections.deque()  # (per-device losses, host)
        self._finished: Optional[HostArrays] = None  # of the step before the oldest queued

    def add(self, losses: list, host: HostArrays) -> None:
        self._steps.append((losses, host))
        if len(self._steps) > STEPS_AHEAD:
            losses, host = self._steps.popleft()
            for loss in losses:  # one per device
                loss.wait_to_read()
            if self._finished:
                self._finished.release()
            self._finished = host


def _last_touch(config: Config, counts: np.ndarray, rank: int):
    """``f(epoch, batches)``: the batches as the step takes them: trimmed with
    ``--trim-parts`` above 1 (batches.trim); with ``--noise-group``, with each group's noise
    words drawn and weighted (batches.share_noise); else unchanged. Runs in the training
    thread, about 0.2 ms a batch, while the engine is busy with the steps queued before it.
    Noise groups: batch i of an epoch draws from a generator seeded with (seed, rank, epoch,
    i), so a resumed run (which draws the epoch again) gets the same words."""
    if not config.noise_group:
        parts = config.trim_parts or 1
        if parts == 1:
            return lambda epoch, batches: batches
        return lambda epoch, batches: (batches_mod.trim(b, parts) for b in batches)
    cdf = sampling.Inverse(np.cumsum(sampling.noise_distribution(counts)))

    def add(epoch, batches):
        for i, b in enumerate(batches):
            rng = np.random.default_rng([config.seed, rank, epoch, i])
            groups = -(-b.center.shape[0] // config.noise_group)
            noise = sampling.draw(cdf, groups * config.group_noise, rng)
            yield batches_mod.share_noise(b, noise.reshape(groups, -1), config.negatives)
    return add


def _with_next(items):
    """Yield ``(item, next item)``, None after the last: one item ahead, so the loop knows
    an epoch's last batch and the catch-up sees the next step's rows."""
    it = iter(items)
    try:
        prev = next(it)
    except StopIteration:
        return
    for item in it:
        yield prev, item
        prev = item
    yield prev, None


def _save_epoch(worker: distributed.Worker, workdir, net, trainer, config: Config, ds: Dataset,
                pos: checkpoint.Position) -> None:
    """The epoch-end checkpoint. A dist run's rank 0 writes only ``model.params`` and
    ``run.json``: the optimizer state is on the servers, where ``save_states`` cannot reach."""
    if not worker.distributed:
        with frontend(config.sparse_grad):
            checkpoint.save_checkpoint(workdir, net, trainer, config, ds, pos)
    elif worker.rank == 0:
        checkpoint.save(net, workdir, {**pos.record,
                                       "dataset": checkpoint.dataset_fingerprint(ds)})


def _finish(record: dict, worker: distributed.Worker, workdir, net, ctxs: list) -> dict:
    """Totals over every epoch (across resumes too); write the final run record."""
    total_centers = sum(e["centers"] for e in record["epochs"])
    train_seconds = sum(e["seconds"] for e in record["epochs"])
    record["complete"] = True
    record["final"] = {"loss": record["epochs"][-1]["loss"],
                       "train_seconds": round(train_seconds, 3),
                       "centers_per_sec": round(total_centers / max(train_seconds, 1e-9), 1)}
    if worker.distributed:
        record["worker"]["params_sha1"] = distributed.params_sha1(net, ctxs[0])
    if worker.rank == 0:
        # Keep what the checkpoint added to run.json (its folder, the params' SHA-1).
        checkpoint.save_record(workdir, {**checkpoint.load_record(workdir), **record})
    else:
        checkpoint.save_record(workdir, record, name=f"run.rank{worker.rank}.json")
    return record


def _stop_inside(stop, worker, workdir, net, trainer, config, ds, epoch, stream, record,
                 batch, loss_sum, seconds, n_batches) -> None:
    """``_stop`` inside epoch ``epoch`` after ``batch`` batches; ``stream.start_state`` is
    the RNG state at the epoch's start, from which a resume draws it again."""
    _stop(stop, worker, workdir, net, trainer, config, ds,
          checkpoint.Position(epoch - 1, batch, stream.start_state, loss_sum, seconds, record),
          n_batches)


def _stop(stop, worker, workdir, net, trainer, config, ds, pos, n_batches) -> None:
    """Write a checkpoint (none when the epoch's own was just written); raise Interrupted."""
    if worker.distributed:
        # No mid-epoch checkpoint: the optimizer state is on the servers (see _save_epoch).
        where = (f"epoch {pos.epoch + 1}/{config.epochs}, batch {pos.batch}/{n_batches}"
                 if net is not None else f"the end of epoch {pos.epoch}/{config.epochs}")
        raise Interrupted(f"interrupted by {stop.name} at {where}; a distributed run cannot be "
                          "resumed (rank 0's model.params holds the last finished epoch)",
                          stop.signum)
    if net is not None:
        with frontend(config.sparse_grad):
            checkpoint.save_checkpoint(workdir, net, trainer, config, ds, pos)
        where = f"epoch {pos.epoch + 1}/{config.epochs}, batch {pos.batch}/{n_batches}"
    else:
        where = f"the end of epoch {pos.epoch}/{config.epochs}"
    raise Interrupted(
        f"interrupted by {stop.name} at {where}; the checkpoint is saved in {workdir}. "
        f"Continue with: w2v train --resume --workdir {shlex.quote(str(workdir))}", stop.signum)


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
                  worker: distributed.Worker, steps: Optional[int],
                  n_epochs: int) -> batches_mod.Epochs:
    """The next ``n_epochs`` epochs of this worker's sentences, each drawn chunk by chunk
    from ``rng`` (ahead, in a background thread, with ``config.prefetch``).

    Yields ``(stream, batches)`` per epoch: the EpochStream (for its batch estimate and RNG
    states) and its batches: every example on one machine, exactly ``steps`` full batches
    as a dist worker. Close it to stop the thread.
    """
    cache: dict = {}  # --sample-once: one chunk's examples, kept across epochs
    # Sentences longer than a chunk are sampled in pieces, so a chunk's memory is bounded.
    offsets = sampling.cut_long_sentences(part.offsets, config.chunk_tokens)

    def make_stream() -> batches_mod.EpochStream:
        return batches_mod.EpochStream(part.ids, offsets, counts, config, rng, cache,
                                       sample_seed=(worker.rank,),
                                       steps=steps)

    return batches_mod.Epochs(make_stream, n_epochs, ahead=config.prefetch)


def forward_backward(net, b: batches_mod.Batch, ctxs: list,
                     host: Optional[HostArrays] = None) -> list:
    """Forward and backward of one batch split across ``ctxs`` by rows.

    Returns one summed loss per device, each a () array on its device. The gradients sum
    over the whole batch whatever the split, so ``trainer.step(rows)`` updates as on one
    device. A batch with fewer rows than devices (the last of an epoch at worst) gives the
    spare devices a zero-weighted row, so every device holds a fresh (zero) gradient.
    ``host``: where to keep the batch's arrays handed to MXNet (backend.HostArrays;
    default: each keeps itself, as backend.from_numpy's do).
    """
    mx = current_mxnet()  # backend.mxnet() would end a sparse run's legacy front end
    xp = arrays()
    rows = b.center.shape[0]
    if b.layout != batches_mod.PADDED and len(ctxs) > 1:
        raise ValueError(f"a {b.layout} batch trains on one device, not {len(ctxs)}")
    used = ctxs[:rows]
    lend = host.array if host else from_numpy
    # A trimmed batch's items go as its distinct words and each part's slots in them.
    items = [(lend(b.words).as_in_context(ctxs[0]),
              [lend(x).as_in_context(ctxs[0]) for x in batches_mod.parts_of(b, b.slots)])] \
        if b.layout == batches_mod.TRIMMED else b.items
    parts = [x if isinstance(x, list) else
             mx.gluon.utils.split_and_load(lend(x), used, even_split=False)
             for x in (b.center, items, b.mask, b.label)]
    spare = [(c, 0.0) for c in ctxs[rows:]]
    if b.layout == batches_mod.TRIMMED:  # the mask holds loss weights
        def loss_of(center, items, weight, label):
            words, slots = items
            pred = skip_gram_trimmed(center, words, slots, label.shape[0], net[0], net[1])
            return weighted_loss(pred, label, weight).sum()
    elif b.layout == batches_mod.GROUPED:  # the mask holds loss weights
        loss_of = grouped_loss(net, rows // b.noise.shape[0])
    else:
        def loss_of(center, items, mask, label):
            pred = skip_gram(center, items, net[0], net[1])
            return masked_loss(pred.reshape(label.shape), label, mask).sum()
    with mx.autograd.record():
        losses = [loss_of(*part) for part in zip(*parts)]
        for c, weight in spare:
            center, items, mask, label = (xp.array(x[:1], ctx=c, dtype=x.dtype)
                                          for x in (b.center, b.items, b.mask, b.label))
            losses.append(loss_of(center, items, mask, label) * weight)
    mx.autograd.backward(losses)
    return losses


def _flush(catch: Optional[CatchUp]) -> None:
    """Catch every center row up (see _run_epoch); there is a catch-up in sparse runs only,
    which use the legacy front end."""
    if catch:
        with frontend(True):
            catch.flush()


def _center_table(net, ctx, catch: Optional[CatchUp] = None) -> np.ndarray:
    """(V, E) float32: the center table's current values on ``ctx``, as numpy (rows
    caught up first, with ``catch``)."""
    _flush(catch)
    return net[0].weight.data(ctx).asnumpy()


def _read(loss_sums: list) -> float:
    """The sum of per-device loss sums (floats, or scalars of either front end); waits for
    the devices."""
    return float(sum(x if isinstance(x, float) else x.asnumpy().item() for x in loss_sums))
