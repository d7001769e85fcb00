"""Training on several devices and machines: the kvstore, each worker's shard, the step budget.

MXNet's parameter server (ps-lite) does the communication; this module only decides what each
worker trains on. A worker learns its rank and the number of workers from the kvstore, which
reads the ``DMLC_*`` environment that ``w2v launch`` (or a cluster launcher) sets.
"""

from __future__ import annotations

import contextlib
import hashlib
import os

import numpy as np

from . import arrays, checkpoint, limits, params
from .batches import Batch
from .config import Config
from .dataset import SCAN, Dataset
from .errors import BackendError, DataError, Interrupted, ResumeError, UsageError, first_line
from .train import Worker

def make_worker(config: Config) -> Worker:
    """Join the parameter server named by ``config.kvstore``; a one-machine kvstore needs none."""
    from .backend import mxnet

    if not config.kvstore.startswith("dist"):
        return Worker(kvstore=config.kvstore)

    missing = [v for v in ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT",
                           "DMLC_NUM_SERVER", "DMLC_NUM_WORKER") if not os.environ.get(v)]
    if missing:
        # Without them ps-lite waits forever for a scheduler that nobody started.
        raise UsageError(f"--kvstore {config.kvstore} runs as one worker of a parameter server "
                         f"and needs {', '.join(missing)} in the environment: start it with "
                         "`w2v launch -n WORKERS -- w2v train --kvstore ...`")
    from .launch import watch_launcher

    watch_launcher("worker")  # joining, and every step, would wait forever for a dead job
    mx = mxnet()
    try:
        kv = mx.kv.create(config.kvstore)
    except mx.base.MXNetError as e:
        raise BackendError(f"cannot join the parameter server: {first_line(e)}") from None
    return Worker(kv.rank, kv.num_workers, kv, config.kvstore)


def train(config: Config, ds: Dataset, on_progress, resume: bool, stop) -> dict:
    """train.train as one worker of a parameter server: it trains on its shard of the
    sentences, exactly as many steps as every other worker. Rank 0 takes the workdir lock
    itself (the CLI takes none for dist workers, so several can share one workdir) and
    writes ``model.params`` and ``run.json`` at each epoch end; the other ranks only
    ``run.rank{r}.json``. Adam's state lives on the servers, so a dist run cannot resume."""
    from . import lock
    from .backend import devices
    from .train import Run, for_devices

    if resume:
        # Checked before joining the parameter server, so no worker waits for this one.
        raise ResumeError(f"--resume does not work with --kvstore {config.kvstore}: Adam's state "
                          "lives on the parameter servers, which MXNet cannot save; start a new "
                          "run without --resume")
    ctxs = devices(config.device)
    config = for_devices(config, ctxs)
    limits.check_memory(config, ds.vocab.counts, int(ds.ids.size))  # before joining
    kind = RowSparseSession if config.sparse_grad else Session
    session = kind(make_worker(config), config, ds)
    with contextlib.ExitStack() as held:
        if session.worker.rank == 0:
            held.enter_context(lock.acquire(config.workdir_path, "train (dist rank 0)",
                                            create=False))
        return Run(config, ds, ctxs, session, on_progress).train(False, stop)


class Session:
    """train.Local's counterpart for one worker of a parameter server."""

    def __init__(self, worker: Worker, config: Config, ds: Dataset):
        self.worker = worker
        self.steps = steps_per_epoch(ds, config, worker.num_workers)

    def shard(self, ds: Dataset) -> tuple[Dataset, dict]:
        """This worker's sentences and a record of which they are."""
        start, end = shard_bounds(ds.offsets, self.worker.rank, self.worker.num_workers)
        part = shard(ds, start, end)
        return part, {"kvstore": self.worker.kvstore, "rank": self.worker.rank,
                      "num_workers": self.worker.num_workers, "sentences": [start, end],
                      "tokens": int(part.ids.size), "ids_sha1": ids_sha1(part.ids)}

    def build(self, config: Config, vocab_size: int, ctxs: list) -> tuple:
        """train.build's tables, adam on the servers (the kvstore's ``update_on_kvstore``)."""
        from .train import build

        return build(config, vocab_size, ctxs, self.worker.kv)

    def update(self, trainer, b: Batch) -> None:
        trainer.step(b.rows)  # the servers sum the workers' gradients of their mean loss

    def save_epoch(self, run, pos) -> None:
        """Rank 0 writes ``model.params`` and ``run.json`` only: the optimizer state is on
        the servers, where ``save_states`` cannot reach."""
        if self.worker.rank == 0:
            with arrays.scope(run.config.sparse_grad):
                checkpoint.save(run.net, run.config.workdir_path,
                                {**pos.record, "dataset": checkpoint.dataset_fingerprint(run.ds)})

    def interrupted(self, run, pos, where: str) -> None:
        raise Interrupted(f"interrupted by {run.stop.name} at {where}; a distributed run cannot "
                          "be resumed (rank 0's model.params holds the last finished epoch)",
                          run.stop.signum)

    def finish(self, run, record: dict) -> None:
        record["worker"]["params_sha1"] = params_sha1(run.net, run.ctxs[0])
        workdir = run.config.workdir_path
        if self.worker.rank == 0:
            params.save_record(workdir, {**params.load_record(workdir), **record})
            params.remove_worker_records(workdir, self.worker.num_workers)  # a larger job's
        else:
            params.save_record(workdir, record, name=params.worker_record_name(self.worker.rank))


class RowSparseSession(Session):
    """A worker whose tables are row-sparse on the servers (``--sparse-grad``, the default on
    a CPU): each lookup pulls the rows it reads (model.build_net's ``row_sparse_weights``)
    and each step pushes row-sparse gradients, so a step moves the rows its batch touches,
    not the vocabulary. The servers run lazy adam, catching each pushed center row up to
    dense Adam first (server_adam.py; no CatchUp here: the moments are there)."""

    def __init__(self, worker: Worker, config: Config, ds: Dataset):
        super().__init__(worker, config, ds)
        self.rows = np.zeros(2)  # distinct rows pulled so far: center table, context table
        self.updates = 0

    def build(self, config: Config, vocab_size: int, ctxs: list) -> tuple:
        from .backend import current_mxnet
        from .model import build_net, parameters

        net = build_net(vocab_size, config.embed_size, ctxs, True, row_sparse_weights=True)
        # MXNet 1.9.1 sets the kvstore up at the first lookup's pull, before trainer.step
        # could set the gradient scale, and then refuses any other scale: so the scale is
        # the optimizer's and each step is step(1). The servers sum the workers' pushes:
        # 1 / (B * workers) makes the update follow the mean loss over every worker's batch
        # (every dist batch holds B centers). Adam barely sees the factor; dense dist
        # (Session) scales by 1 / B.
        scale = 1.0 / (config.batch_size * self.worker.num_workers)
        from .server_adam import ServerAdam

        params = parameters(net)
        center = params.index(net[0].weight)  # its kvstore index
        adam = ServerAdam(caught_up=(center,), learning_rate=config.lr, rescale_grad=scale)
        trainer = current_mxnet().gluon.Trainer(params, adam, kvstore=self.worker.kv,
                                                update_on_kvstore=True)
        return net, trainer, None

    def update(self, trainer, b: Batch) -> None:
        self.rows += distinct_rows(b)
        self.updates += 1
        trainer.step(1)

    def finish(self, run, record: dict) -> None:
        mean = self.rows / max(self.updates, 1)
        record["worker"]["rows_per_step"] = {"center": round(float(mean[0]), 1),
                                             "context": round(float(mean[1]), 1)}
        super().finish(run, record)


def distinct_rows(b: Batch) -> np.ndarray:
    """(2,) the distinct rows of the center and the context table that ``b``'s lookups read:
    what a row-sparse step pulls, and pushes back as gradient."""
    words = b.words if b.words is not None else b.parts[0][0]
    return np.array([np.unique(b.center).size, np.unique(words).size])


def shard_bounds(offsets: np.ndarray, rank: int, num_workers: int) -> tuple[int, int]:
    """Sentences ``[start, end)`` of worker ``rank``: contiguous, disjoint, covering every
    sentence, cut where the token count crosses ``rank / num_workers`` of the total.

    offsets: (S + 1,) int64 sentence offsets.
    """
    if not 0 <= rank < num_workers:
        raise UsageError(f"worker rank {rank} is not in 0..{num_workers - 1}")
    total = int(offsets[-1])
    cuts = [int(np.searchsorted(offsets, total * r // num_workers, side="left"))
            for r in (rank, rank + 1)]
    end = len(offsets) - 1 if rank == num_workers - 1 else cuts[1]
    start = 0 if rank == 0 else cuts[0]
    return start, end


def shard(ds: Dataset, start: int, end: int) -> Dataset:
    """The sentences ``[start, end)`` of ``ds`` as a Dataset (ids are a view, no copy)."""
    a, b = int(ds.offsets[start]), int(ds.offsets[end])
    offsets = np.asarray(ds.offsets[start:end + 1], dtype=np.int64) - a
    return Dataset(ds.vocab, ds.ids[a:b], offsets)


def ids_sha1(ids: np.ndarray) -> str:
    """SHA-1 of an id array's int32 bytes, read in slices so a memory map stays unread."""
    h = hashlib.sha1()
    for a in range(0, ids.size, SCAN):
        h.update(np.ascontiguousarray(ids[a:a + SCAN], dtype=np.int32).tobytes())
    return h.hexdigest()


def expected_centers(ids: np.ndarray, offsets: np.ndarray, counts: np.ndarray, t: float,
                     chunk_tokens: int = SCAN) -> float:
    """How many centers subsampling leaves on average: token i of a sentence is a center when
    it is kept (probability p_i = min(1, sqrt(t / f(w)))) and so is another token of its
    sentence, so E = sum_i p_i (1 - prod_{j != i} (1 - p_j)). Read chunk by chunk.

    ids: (N,) int32; offsets: (S + 1,) int64; counts: (V,) int64.
    """
    from .sampling import keep_probability
    from .stream import chunk_bounds

    keep = keep_probability(counts, t)
    bounds = chunk_bounds(offsets, chunk_tokens)
    total = 0.0
    for a, b in zip(bounds[:-1], bounds[1:]):
        lo, hi = int(offsets[a]), int(offsets[b])
        p = keep[np.asarray(ids[lo:hi])]
        sentence = np.repeat(np.arange(b - a), np.diff(np.asarray(offsets[a:b + 1])))
        sure = p >= 1.0
        log_miss = np.log1p(-np.where(sure, 0.0, p))  # log(1 - p_j), 0 for the sure ones
        others_log = np.bincount(sentence, log_miss, b - a)[sentence] - log_miss
        others_sure = np.bincount(sentence, sure, b - a)[sentence] - sure
        none_other = np.where(others_sure > 0, 0.0, np.exp(others_log))
        total += float((p * (1.0 - none_other)).sum())
    return total


def steps_per_epoch(ds: Dataset, config: Config, num_workers: int) -> int:
    """Batches every worker takes per epoch: the same on all of them, so that ``dist_sync``,
    where each step waits for every worker's gradients, never waits for a worker that is done.

    The smallest shard's expected number of centers, in whole batches; every worker computes
    it from the same data, so no communication is needed. A worker whose draw falls short
    draws its shard again; one with more leaves the rest.
    """
    shards = [shard(ds, *shard_bounds(ds.offsets, r, num_workers)) for r in range(num_workers)]
    smallest = min(expected_centers(s.ids, s.offsets, ds.vocab.counts, config.subsample,
                                    config.chunk_tokens) for s in shards)
    steps = int(smallest // config.batch_size)
    if steps < 1:
        raise DataError(f"each of {num_workers} workers has fewer than one batch "
                        f"({config.batch_size}) of training pairs: use a larger corpus, fewer "
                        "workers or a smaller --batch-size")
    return steps


def tables_sha1(tables: dict) -> str:
    """SHA-1 over named float32 tables, by name: equal on two workers exactly when they hold
    the same parameters. tables: name -> (V, E) array, e.g. the keys of ``model.params``."""
    h = hashlib.sha1()
    for name in sorted(tables):
        h.update(name.encode())
        h.update(np.ascontiguousarray(tables[name], dtype=np.float32).tobytes())
    return h.hexdigest()


def params_sha1(net, ctx) -> str:
    """``tables_sha1`` of the network's two tables under their ``model.params`` names."""
    from .model import table
    from .params import CENTER_KEY, CONTEXT_KEY

    return tables_sha1({CENTER_KEY: table(net, 0, ctx), CONTEXT_KEY: table(net, 1, ctx)})
