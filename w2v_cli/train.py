"""The training loop: batch -> loss -> backward -> step, with checkpoints and progress."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import shlex
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from . import arrays, checkpoint, interrupt, limits, params, quality, stream
from .arrays import HostArrays
from .backend import devices as resolve_devices
from .backend import current_mxnet as mxnet  # mxnet() would end a sparse run's front end
from .batches import Batch, layout_for
from .catchup import CatchUp
from .config import NOISE_GROUP, Config, check, resolved
from .dataset import VOCAB_FILE, Dataset
from .errors import DataError, Interrupted, ResumeError, UsageError
from .meter import Meter, Progress
from .model import batch_loss, build_net, parameters, table
from .sgd import LinearSgd, start_tables

STEPS_AHEAD = 2  # steps queued on the devices beyond the one running; bounds their memory


@dataclass
class Worker:
    """This process's place in a job: one of ``num_workers`` (1 on one machine). ``kv``: the
    parameter server's kvstore (distributed.py), or None; ``kvstore``: the Trainer's kvstore."""

    rank: int = 0
    num_workers: int = 1
    kv: object = None
    kvstore: str = "device"

    @property
    def distributed(self) -> bool:
        return self.kv is not None


def for_devices(config: Config, ctxs: list) -> Config:
    """``config`` with the settings left to their default (None) decided for ``ctxs``:

    ``sparse_grad``: sparse on one CPU device (faster there; on one machine the center
    table is dense Adam's, see catchup.py; on a parameter server the tables are row-sparse
    and only the rows a batch reads move, distributed.RowSparseSession), dense otherwise
    (sparse gradients work on one device only, and on a GPU dense adam is cheap and the
    sparse paths unmeasured).
    ``noise_group``: NOISE_GROUP for skip-gram with negative sampling, on any devices and
    on a parameter-server worker (the defaults' quality in under half the time on PTB, and
    a third to a quarter of the rows a dist step moves, benchmarks/README.md), else 0 (they
    do not apply to CBOW or hierarchical softmax).
    ``bucket``: on with noise groups and with hierarchical softmax (its batches are one
    padded part: bucketing leaves nothing to pad but the paths; PTB, 3 seeds: the same
    quality or better at 5 and 15 epochs, 1.35x the speed for skip-gram, docs/objectives.md),
    off otherwise (CBOW with negative sampling lost SimLex-999 in buckets; the chapter's
    estimator is the chapter's batches).
    """
    config = for_sampling(config)
    if config.sparse_grad is None:
        sparse = len(ctxs) == 1 and ctxs[0].device_type == "cpu"
        config = dataclasses.replace(config, sparse_grad=sparse)
    return config


def for_sampling(config: Config) -> Config:
    """``config`` with ``noise_group`` and ``bucket`` decided, as :func:`for_devices` says:
    the settings of its defaults that change what is drawn, which no device changes."""
    changes: dict = {}
    if config.noise_group is None:
        fits = config.negatives > 0 and (config.model, config.loss) == ("skipgram", "ns")
        changes["noise_group"] = NOISE_GROUP if fits else 0
    if config.bucket is None:
        changes["bucket"] = (bool(changes.get("noise_group", config.noise_group))
                             or config.loss == "hs")
    return dataclasses.replace(config, **changes) if changes else config


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
        checkpoint.check_given(saved, given)
        config = Config.from_dict({**saved, "workdir": config.workdir, **given})
        if saved.get("sparse_grad") and config.sparse_grad and "," in config.device:
            # check()'s advice, --dense-grad, would not match the checkpoint either
            raise UsageError(f"this run trains with row-sparse gradients (--sparse-grad), "
                             f"which work on one device, not --device {config.device}: "
                             "resume it on one device")
    check(config)
    return config


def train(config: Config, ds: Dataset,
          on_progress: Optional[Callable[[Progress], None]] = None, *,
          resume: bool = False, stop: Optional[interrupt.StopFlag] = None,
          on_scores: Optional[Callable[[dict, dict], None]] = None) -> dict:
    """Train on ``ds``; checkpoint every epoch into the workdir. Returns the run record (also
    saved as run.json): settings, device, per-epoch metrics.

    ``resume``: continue from the newest checkpoint in the workdir (else start over).
    SIGINT / SIGTERM (or ``stop`` set by hand) stop after the current step with a checkpoint
    and raise Interrupted. Run it under the workdir lock (lock.acquire), as the CLI does.
    With ``--kvstore dist_*`` this process is one worker of a parameter server
    (distributed.py says what that changes). ``--eval-*`` sets: scored after every epoch
    (quality.py), each row passed to ``on_scores(row, record["quality"])``.
    """
    config = resolved(config)
    check(config)
    sets = quality.EvalSets.read(config)  # a bad file is an error before any disk change
    sets.check_followed(config, ds.vocab)
    with interrupt.catch_signals(stop) as stop:
        if config.kvstore.startswith("dist"):
            from . import distributed  # the one-machine path never loads the dist code

            return distributed.train(config, ds, on_progress, resume, stop)
        # A fresh run's draws do not depend on the device: its first chunk is drawn while
        # MXNet is imported (the memory check comes first, and again once devices are known).
        config = for_sampling(config)
        limits.check_memory(config, ds.vocab.counts, int(ds.ids.size))
        early = None if resume else stream.Epochs(
            draws(config, ds, ds.vocab.counts, run_rng(config, Local.worker)), config.epochs,
            should_stop=stop.is_set)
        with contextlib.closing(early) if early else contextlib.nullcontext():
            ctxs = resolve_devices(config.device)
            config = for_devices(config, ctxs)
            limits.check_memory(config, ds.vocab.counts, int(ds.ids.size))  # before disk changes
            run = Run(config, ds, ctxs, Local(), on_progress,
                      monitor=quality.Monitor(config, sets, on_scores), epochs=early)
            return run.train(resume, stop)


def run_rng(config: Config, worker: Worker) -> np.random.Generator:
    """The RNG a run samples with: from the seed, and the worker's rank on a parameter server
    (each worker samples its own shard with its own stream)."""
    return np.random.default_rng([config.seed, worker.rank] if worker.distributed
                                 else config.seed)


def draws(config: Config, part, counts: np.ndarray, rng: np.random.Generator, rank: int = 0,
          steps: Optional[int] = None) -> Callable[[], stream.EpochStream]:
    """make_stream for stream.Epochs: each call is the next epoch's EpochStream over ``part``
    (a Dataset; counts: (V,) int64), all drawing from ``rng`` and sharing one
    ``--sample-once`` cache."""
    cache: dict = {}
    return lambda: stream.EpochStream(part, counts, config, rng, cache, sample_seed=(rank,),
                                      steps=steps)


def build(config: Config, vocab_size: int, ctxs: list, kvstore) -> tuple:
    """(net, Gluon Trainer, CatchUp or None) of a run whose tables live on its devices:
    build_net's tables and adam, with ``config.sparse_grad`` lazy adam with the center rows
    caught up; or with ``--optimizer sgd`` the C tool's start and sgd (sgd.py; with
    ``config.sparse_grad`` lazy, which is exact for plain SGD). Call it in
    ``arrays.scope(config.sparse_grad)``."""
    net = build_net(vocab_size, config.embed_size, ctxs, config.sparse_grad)
    if config.optimizer == "sgd":
        start_tables(net, config.embed_size)
        trainer = mxnet().gluon.Trainer(parameters(net), "sgd", {"learning_rate": config.lr},
                                        kvstore=kvstore)
        return net, trainer, None
    # With row_sparse gradients adam updates lazily: only the rows a batch touched.
    trainer = mxnet().gluon.Trainer(parameters(net), "adam", {"learning_rate": config.lr},
                                    kvstore=kvstore)
    # The center table's idle rows are caught up to dense Adam before they are read
    # (catchup.py); the context table stays lazy.
    catch = CatchUp(trainer, net[0].weight) if config.sparse_grad else None
    if catch:
        arrays.quiet_lazy_update_notice()
    return net, trainer, catch


class Local:
    """What a one-machine run does at the edges: it trains on every sentence, checkpoints
    the whole state, and writes the workdir's files. distributed.Session is the other kind."""

    worker = Worker()
    steps: Optional[int] = None

    def build(self, config: Config, vocab_size: int, ctxs: list) -> tuple:
        return build(config, vocab_size, ctxs, self.worker.kvstore)

    def update(self, trainer, b: Batch) -> None:
        """Adam on the gradient of the batch's mean loss per center (the loss is summed)."""
        trainer.step(b.rows)

    def shard(self, ds: Dataset) -> tuple[Dataset, Optional[dict]]:
        return ds, None

    def save_epoch(self, run: Run, pos: checkpoint.Position) -> None:
        run.save(pos)

    def interrupted(self, run: Run, pos: Optional[checkpoint.Position], where: str) -> None:
        """Checkpoint (``pos``: inside an epoch; None: its own was just written); raise."""
        if pos is not None:
            run.save(pos)
        workdir = run.config.workdir_path
        raise Interrupted(
            f"interrupted by {run.stop.name} at {where}; the checkpoint is saved in {workdir}. "
            f"Continue with: w2v train --resume --workdir {shlex.quote(str(workdir))}",
            run.stop.signum)

    def finish(self, run: Run, record: dict) -> None:
        # Keep what the checkpoint added to run.json (its folder, the params' SHA-1).
        workdir = run.config.workdir_path
        params.save_record(workdir, {**params.load_record(workdir), **record})
        params.remove_worker_records(workdir, 1)  # a parameter-server job's, trained before


class Run:
    """One training process: settings, data, network, trainer, devices, where it stands.

    ``edge``: Local, or a distributed.Session for one worker of a parameter server.
    ``monitor``: a quality.Monitor scoring each epoch, or None. ``epochs``: a fresh run's
    sampler, already started with ``draws(config, ds, counts, run_rng(...))`` (train() starts it
    before importing MXNet); else the run starts its own where it stands.
    """

    def __init__(self, config: Config, ds: Dataset, ctxs: list, edge, on_progress=None,
                 monitor: Optional[quality.Monitor] = None,
                 epochs: Optional[stream.Epochs] = None):
        mx = mxnet()
        self.config, self.ds, self.ctxs, self.edge = config, ds, ctxs, edge
        self.on_progress, self.stop = on_progress, interrupt.StopFlag()
        self.monitor = monitor
        worker = edge.worker
        if worker.distributed and on_progress:  # every report says which worker it is from
            self.on_progress = lambda p: on_progress(
                dataclasses.replace(p, worker=(worker.rank, worker.num_workers)))
        self.part, shard_info = edge.shard(ds)
        # Each worker samples its own shard with its own stream; all start from the same weights.
        self.rng = run_rng(config, worker)
        self._early = epochs
        mx.random.seed(config.seed)
        with arrays.scope(config.sparse_grad):
            self.net, self.trainer, self.catch = edge.build(config, len(ds.vocab), ctxs)
        # Who takes a step: the edge (adam), or plain SGD's schedule (one machine only).
        self.updater = LinearSgd(config, ds.vocab.counts) if config.optimizer == "sgd" else edge
        self.layout = layout_for(config, ds.vocab.counts, len(ctxs), worker.rank)
        self.record = {"config": config.to_dict(), "vocab_size": len(ds.vocab),
                       "device": ",".join(map(str, ctxs)), "epochs": [], "complete": False,
                       "curve": []}  # [epoch fraction, running mean loss] at each log point
        if shard_info:
            self.record["worker"] = shard_info
        self.pos = checkpoint.Position(record=self.record)

    # -- the run from start to end --

    def train(self, resume: bool, stop: interrupt.StopFlag) -> dict:
        config, workdir = self.config, self.config.workdir_path
        self.stop = stop
        if self.edge.worker.rank == 0 and not (workdir / VOCAB_FILE).exists():
            self.ds.vocab.save(workdir / VOCAB_FILE)  # prepared elsewhere: queries need it here
        if resume:
            self._resume()
        elif self.edge.worker.rank == 0:  # the previous run's checkpoints go at this one's first
            self.record["run"] = checkpoint.start_run(workdir)
        worker = self.edge.worker
        epochs = self._early if self._early and not resume else stream.Epochs(
            draws(config, self.part, self.ds.vocab.counts, self.rng, worker.rank,
                  self.edge.steps), config.epochs - self.pos.epoch,
            should_stop=stop.is_set)  # a Ctrl-C while a chunk is sampled
        self._current = self.pos.epoch + 1  # the epoch under way
        with contextlib.closing(epochs):  # stops the sampling thread if training ends early
            try:
                self._epochs(epochs, stop)
            except stream.StopWaiting:  # Ctrl-C while the next chunk was being sampled
                self._stopped_waiting(self._current)
        return self._finish()

    def _epochs(self, epochs: stream.Epochs, stop: interrupt.StopFlag) -> None:
        """Train the epochs left; ``self._current`` follows the epoch under way."""
        config = self.config
        for epoch, (epoch_stream, rows) in zip(range(self.pos.epoch + 1, config.epochs + 1),
                                               epochs):
            mx = mxnet()
            mx.random.seed(checkpoint.mx_seed(config.seed, epoch))  # every device
            done = self._epoch(epoch, epoch_stream, rows)
            self.record["epochs"].append(done)
            early = self.monitor.after_epoch(self, epoch, done) if self.monitor else False
            self.record["complete"] = epoch == config.epochs or early
            # The RNG state where the next epoch starts: the producer's snapshot, as it
            # has drawn into that epoch already.
            self.edge.save_epoch(self, checkpoint.Position(
                epoch, 0, epoch_stream.end_state, record=self.record))
            self._current = epoch + 1
            self._report_epoch(epoch, done)
            if self.monitor:
                self.monitor.saved(self, epoch)
            if early:
                break
            if stop.is_set() and epoch < config.epochs:
                self.edge.interrupted(self, None, f"the end of epoch {epoch}/{config.epochs}")

    def _resume(self) -> None:
        workdir = self.config.workdir_path
        with arrays.scope(self.config.sparse_grad):
            self.pos = checkpoint.resume(workdir, self.config, self.ds, self.net, self.trainer,
                                         self.ctxs, self.catch)
        checkpoint.restore_rng(self.rng, self.pos)
        self.record = {**self.pos.record, "config": self.config.to_dict(),
                       "device": self.record["device"], "complete": False}
        if self.monitor:
            self.monitor.resumed(self)

    def _finish(self) -> dict:
        """Totals over every epoch (across resumes too); write the final run record."""
        record = self.record
        tokens = sum(e["tokens"] for e in record["epochs"])
        seconds = sum(e["seconds"] for e in record["epochs"])
        record["complete"] = True
        record["final"] = {"loss": record["epochs"][-1]["loss"],
                           "train_seconds": round(seconds, 3),
                           "tokens_per_sec": round(tokens / max(seconds, 1e-9), 1)}
        if self.monitor:
            self.monitor.finish(self, record)
        self.edge.finish(self, record)
        if self.monitor:
            self.monitor.finished(self, record)
        return record

    # -- one epoch --

    def _epoch(self, epoch: int, epoch_stream: stream.EpochStream, rows) -> dict:
        """Train on one epoch's steps; returns its line of the run record.

        Resuming inside this epoch, its first ``pos.batch`` batches are drawn again (the
        same, from the same RNG state) but not trained on.
        """
        partial = self.pos if epoch == self.pos.epoch + 1 and self.pos.batch else None
        meter = Meter(self, epoch, epoch_stream, partial)
        queued = _Queued()
        i = trained = 0  # batches of the epoch so far; of them, trained by this process
        try:
            for i, (b, upcoming) in enumerate(_with_next(self.layout.epoch(epoch, rows)),
                                              start=1):
                meter.tokens += b.rows
                if partial and i <= partial.batch:
                    continue  # done before the checkpoint this run resumed from
                host = HostArrays()  # the batch's arrays, lent to MXNet until queued lets go
                losses = self.step(b, upcoming, host)
                trained += 1
                meter.add(losses)
                queued.add(losses, host)
                last = upcoming is None
                if i % self.config.log_interval == 0 or last:
                    meter.report(i, last)
                if self.stop.is_set() and not last:  # saved as it is: see checkpoint.py
                    self.edge.interrupted(self, meter.position(i), meter.where(i))
        except stream.StopWaiting:  # stopped while the next chunk was being sampled
            if trained:  # checkpoint what this process trained of the epoch
                self.edge.interrupted(self, meter.position(i), meter.where(i))
            raise
        if meter.tokens == 0:
            raise DataError("no training pairs: every sentence has fewer than 2 tokens "
                            "after subsampling (use a larger corpus or --subsample 0)")
        self.flush()
        return meter.result()

    def _stopped_waiting(self, epoch: int) -> None:
        """Ctrl-C while waiting for epoch ``epoch``'s next chunk, with nothing trained since
        the last checkpoint (an epoch's end, or the one this run resumed from), which
        stands; or, before a new run's first step, nothing trained at all."""
        epochs = self.config.epochs
        if epoch == self.pos.epoch + 1 and self.pos.batch:  # the checkpoint resumed from
            self.edge.interrupted(self, None, f"epoch {epoch}/{epochs}, batch {self.pos.batch}")
        if epoch == 1:
            raise Interrupted(f"interrupted by {self.stop.name} before the first step: nothing "
                              "was trained", self.stop.signum)
        self.edge.interrupted(self, None, f"the end of epoch {epoch - 1}/{epochs}")

    def step(self, b: Batch, upcoming: Optional[Batch], host: HostArrays) -> list:
        """One update: catch the batch's center rows up, forward, backward, adam (or sgd)."""
        with arrays.scope(self.config.sparse_grad):
            if self.catch:  # this step's center rows, and the next step's it leaves alone
                self.catch.rows(b.center, None if upcoming is None else upcoming.center, host)
            losses = forward_backward(self.net, b, self.ctxs, host)
            self.updater.update(self.trainer, b)
        return losses

    def flush(self) -> None:
        """Catch every center row up (sparse runs): before the table is read or saved."""
        if self.catch:
            with arrays.scope(True):
                self.catch.flush()

    def center_table(self) -> np.ndarray:
        """(V, E) float32: the center table now (every row caught up, in a copy: a run whose
        table is read goes on with the same bits as one whose is not)."""
        if self.catch:
            with arrays.scope(True):
                return arrays.to_numpy(self.catch.caught_up())
        return table(self.net, 0, self.ctxs[0])

    def save(self, pos: checkpoint.Position) -> None:
        with arrays.scope(self.config.sparse_grad):
            checkpoint.save_checkpoint(self.config.workdir_path, self.net, self.trainer,
                                       self.config, self.ds, pos, self.catch)

    def _report_epoch(self, epoch: int, done: dict) -> None:
        if self.on_progress:
            n = done["batches"]
            self.on_progress(Progress(epoch, self.config.epochs, n, n, done["loss"],
                                      done["tokens_per_sec"], epoch_done=True,
                                      seconds=done["seconds"]))


def forward_backward(net, b: Batch, ctxs: list, host: Optional[HostArrays] = None) -> list:
    """Forward and backward of one batch; returns one summed loss per device, each a ()
    array there. ``host``: where to keep the arrays lent to MXNet (default: each keeps
    itself, as arrays.from_numpy's do)."""
    mx = mxnet()
    lend = host.array if host else arrays.from_numpy
    if len(ctxs) > 1:
        from . import multidevice

        return multidevice.forward_backward(net, b, ctxs, lend)
    lent = [lend(x).as_in_context(ctxs[0]) for x in b.arrays()]
    with mx.autograd.record():
        loss = batch_loss(net, b, lent)
    loss.backward()
    return [loss]


class _Queued:
    """The steps queued on the devices, with the host arrays their batches lent MXNet.

    Python queues steps ahead of the engine, but no more than STEPS_AHEAD: each holds its
    batch and activations. A step's host arrays go once the step after it has its loss:
    that forward read the weights this step's update wrote, and every operation reading
    this step's batch comes before that update.
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


def _with_next(items):
    """Yield ``(item, next item)``, None after the last: the loop knows an epoch's last
    batch, and the catch-up sees the next step's rows."""
    it = iter(items)
    try:
        prev = next(it)
    except StopIteration:
        return
    for item in it:
        yield prev, item
        prev = item
    yield prev, None
