"""An epoch's counts and progress reports: tokens trained, the loss, the time.

Throughput is one figure everywhere, tokens/sec: center words trained per second of the
epochs' wall time (sampling included, progress reports excluded).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from . import arrays, checkpoint, limits


@dataclass
class Progress:
    """A progress report. ``loss`` is the mean over the batches of this epoch so far."""

    epoch: int          # 1-based
    epochs: int
    batch: int          # batches done in this epoch
    batches: int
    loss: float
    tokens_per_sec: float
    epoch_done: bool = False
    batch_size: int = 0  # centers per batch, for an ETA (batches may be an estimate)
    seconds: float = 0.0  # training time of this epoch so far
    # The center table as it is now, (V, E) float32; reading it waits for the device.
    center: Optional[Callable[[], np.ndarray]] = None
    worker: Optional[tuple] = None  # (rank, num_workers) of a parameter-server worker


class Meter:
    """An epoch's counts for ``run`` (train.Run): tokens (centers) seen, the loss sums (kept
    on the devices and read every log interval, since reading waits for them) and training
    time, progress reports excluded."""

    def __init__(self, run, epoch: int, epoch_stream, partial):
        self.run, self.epoch, self.stream = run, epoch, epoch_stream
        self.tokens = 0
        self.start = time.perf_counter() - (partial.seconds if partial else 0.0)
        self.sums: list = [0.0 for _ in run.ctxs]  # floats first: either front end adds to them
        if partial:
            self.sums[0] = partial.loss_sum
        self.batches = 0

    def add(self, losses: list) -> None:
        self.sums = [acc + loss for acc, loss in zip(self.sums, losses)]

    def loss_sum(self) -> float:
        """The summed loss so far; waits for the devices."""
        return float(sum(x if isinstance(x, float) else arrays.to_numpy(x).item()
                         for x in self.sums))

    def estimate(self, i: int) -> int:
        return max(self.run.edge.steps or self.stream.estimated_batches(), i + 1)

    def report(self, i: int, last: bool) -> None:
        """A log point after batch ``i``: the loss curve, and a progress report."""
        self.batches = i
        n_batches = i if last else self.estimate(i)
        mean = self.loss_sum() / self.tokens
        limits.check_loss(mean, f"epoch {self.epoch}, batch {i}", self.run.config.lr)
        self.run.record["curve"].append([round(self.epoch - 1 + i / n_batches, 4), mean])
        if self.run.on_progress:
            now = time.perf_counter()
            elapsed = now - self.start
            self.run.on_progress(Progress(
                self.epoch, self.run.config.epochs, i, n_batches, mean, self.tokens / elapsed,
                batch_size=self.run.config.batch_size, seconds=elapsed,
                center=self.run.center_table))
            self.start += time.perf_counter() - now  # the report's time is not training's

    def position(self, i: int) -> checkpoint.Position:
        """Where a stop after batch ``i`` stands: the epoch redrawn from its first state."""
        return checkpoint.Position(self.epoch - 1, i, self.stream.start_state, self.loss_sum(),
                                   time.perf_counter() - self.start, self.run.record)

    def where(self, i: int) -> str:
        return f"epoch {self.epoch}/{self.run.config.epochs}, batch {i}/{self.estimate(i)}"

    def result(self) -> dict:
        mean = self.loss_sum() / self.tokens
        limits.check_loss(mean, f"the end of epoch {self.epoch}", self.run.config.lr)
        arrays.wait_all()  # before reading the clock
        seconds = time.perf_counter() - self.start
        return {"epoch": self.epoch, "loss": mean, "seconds": round(seconds, 3),
                "tokens": self.tokens, "tokens_per_sec": round(self.tokens / seconds, 1),
                "batches": self.batches}
