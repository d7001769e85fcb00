"""Lazy Adam made dense: catch rows up on the steps a row-sparse update skipped.

With row_sparse gradients MXNet's adam updates only the rows a batch touched (lazy_update).
Dense Adam also moves every other row at every step: its gradient is zero there, but its
moments are not, so the row keeps drifting along its momentum while both moments decay.
On PTB losing that drift on the center table cost much of its word-similarity quality; on
the context table it cost little.

A row's drift over the steps it missed has a closed form, so it can be applied in one go just
before the row is read again. Take a row last updated at Adam step ``a`` with moments ``m``
and ``v``; dense Adam at each step ``s = a + j`` (``j = 1 .. g``, no gradient) does
``m *= b1``, ``v *= b2`` and ``w -= lr_s * m / (sqrt(v) + eps)``, with the bias-corrected
``lr_s = lr * sqrt(1 - b2**s) / (1 - b1**s)``. So, with ``r = b1 / sqrt(b2)``::

    w -= m / (sqrt(v) + eps) * sum_{j=1..g} lr_{a+j} r**j
    m *= b1**g;  v *= b2**g

exact except that dense Adam's epsilon grows as ``eps * b2**(-j/2)`` relative to sqrt(v)
(1e-8 against moments of ~1e-4 here: below float32 rounding). The sum is a difference of
one table, ``S[s] = sum_{j>=1} lr_{s+j} r**j``: ``S[a] - r**g * S[a+g]``.

Before each step the batch's own center rows are caught up (their ids are known in numpy, so
nothing waits for the device), then lazy adam updates them as dense Adam would. The rows of
the step after it that this step leaves alone can be caught up in the same call, to where
they will stand after it: then every other step needs no catch-up (one call's fixed cost of
operators and Python saved every other step). Rows no batch
read since are caught up by :meth:`CatchUp.flush`, before anything reads the table, so the
vectors a user sees are dense Adam's (to float rounding).

A catch-up in one go and the same steps caught up in two pieces differ in float32 rounding.
So a checkpoint inside an epoch holds the table and its moments as they are, with
:attr:`CatchUp.last`, and the vectors for queries come from :meth:`CatchUp.caught_up`, a
copy: the run resumed from it catches each row up over the same steps as a run never
stopped, and ends with the same bits.
"""

from __future__ import annotations

import math

import numpy as np

from . import arrays
from .arrays import HostArrays
from .backend import current_mxnet

FLUSH_ROWS = 1 << 16  # rows caught up at once by flush()
TAIL = 400  # terms beyond the last step in S: r**400 < 1e-18 for adam's default betas


class CatchUp:
    """Keeps one embedding table of a lazy-adam ``trainer`` where dense Adam would have it.

    ``param``: the Gluon Parameter (a (V, E) table with a row_sparse gradient, on one device).
    Call :meth:`rows` with the ids a step will read and update (and those of the step after
    it, when known), before that step's forward;
    :meth:`flush` (or :meth:`caught_up`) before reading the table; a checkpoint saves the table
    as it is, with :attr:`last`. Issues MXNet operations only: nothing here waits for the
    device.
    """

    def __init__(self, trainer, param):
        self.trainer = trainer
        self.param = param
        self.index = trainer._param2idx[param.name]
        # Adam step after which each row was last updated (or caught up); 0: never.
        self.last = np.zeros(param.shape[0], dtype=np.int64)
        self._drift = DriftSums()
        self._block = None  # _caught_up_rows(eps), built at the first catch-up
        self._ready = None  # (upcoming, its rows) of the last call, caught up ahead (rows)

    def _count(self) -> int:
        """Adam steps taken on the table so far (restored with the optimizer on resume)."""
        return self.trainer._optimizer._index_update_count.get(self.index, 0)

    def resumed(self, last: np.ndarray | None = None) -> None:
        """After loading a checkpoint: ``last`` as it was saved ((V,) int64), or None for a
        checkpoint without it (saved flushed: every row is where dense Adam left it, and rows
        with zero moments were never updated and are left out of later flushes)."""
        done = self._count()
        if last is not None:
            if last.shape != self.last.shape or last.dtype != np.int64 or not (
                    last.size == 0 or (last.min() >= 0 and last.max() <= done)):
                raise ValueError(f"the catch-up positions do not fit the table and Adam's "
                                 f"{done} steps")
            self.last[:] = last
            return
        if not done:
            return
        mean, var = (x.asnumpy() for x in self._moments())  # once per resume
        self.last[:] = np.where(np.any((mean != 0) | (var != 0), axis=1), done, 0)

    def rows(self, ids: np.ndarray, upcoming: np.ndarray | None = None,
             host: HostArrays | None = None) -> None:
        """Catch up the rows of ``ids`` (any shape, repeats allowed) before the next step,
        which updates them.

        ``upcoming``: the ids the step after it will read. Its rows that this step does not
        update are caught up now as well, to where they will stand after this step (the step
        leaves them alone, so the result is the same), and the next call, with ``upcoming``
        itself as its ``ids``, has nothing left to do: one catch-up every other step.
        ``host``: where to keep the arrays handed to MXNet (backend.HostArrays; default:
        each keeps itself, as backend.from_numpy's do).
        """
        if self._ready is not None and ids is self._ready[0]:
            self.last[self._ready[1]] = self._count() + 1  # this step updates them
            self._ready = None
            return
        rows = np.unique(ids)
        done = self._count()
        self._ready = None
        if upcoming is None:
            self._catch_up(rows, done, host)
        else:
            coming = np.unique(upcoming)
            ahead = np.setdiff1d(coming, rows, assume_unique=True)
            self._catch_up(np.concatenate([rows, ahead]),
                           np.concatenate([np.full(rows.size, done, dtype=np.int64),
                                           np.full(ahead.size, done + 1, dtype=np.int64)]),
                           host)
            self._ready = (upcoming, coming)
        self.last[rows] = done + 1

    def behind(self) -> np.ndarray:
        """(n,) int64: the rows not caught up to the last step taken."""
        # A row never updated (last 0) has zero moments: dense Adam never moved it either.
        return np.flatnonzero((self.last > 0) & (self.last < self._count()))

    def flush(self) -> None:
        """Catch up every row to the last step taken, FLUSH_ROWS rows at a time (the
        temporaries are a few (rows, E) arrays: bounded for a large vocabulary)."""
        behind, done = self.behind(), self._count()
        for start in range(0, behind.size, FLUSH_ROWS):
            self._catch_up(behind[start:start + FLUSH_ROWS], done)

    def caught_up(self):
        """A copy of the table with every row caught up, the same bits :meth:`flush` would
        leave in it; the table, its moments and :attr:`last` stay as they are."""
        table = self.param.data().copy()
        behind, done = self.behind(), self._count()
        for start in range(0, behind.size, FLUSH_ROWS):
            self._catch_up(behind[start:start + FLUSH_ROWS], done, into=table)
        return table

    def _catch_up(self, rows: np.ndarray, upto, host: HostArrays | None = None,
                  into=None) -> None:
        """Apply the steps ``last[rows] + 1 .. upto`` (those ``rows`` missed); ``upto``: one
        step count, or one per row. ``into``: a copy of the table to write the rows into
        instead (the table, the moments and ``last`` are left alone)."""
        upto = np.broadcast_to(np.asarray(upto, dtype=np.int64), rows.shape)
        last = self.last[rows]
        if into is None:
            self.last[rows] = np.where(last > 0, upto, 0)  # 0 stays 0: no moments to apply
        missed = upto - last
        behind = (last > 0) & (missed > 0)  # a row never updated has nothing to catch up
        if not behind.any():
            return
        rows, last, upto, missed = rows[behind], last[behind], upto[behind], missed[behind]
        opt = self.trainer._optimizer
        factors = self._drift.factors(last, upto, opt.learning_rate, opt.beta1, opt.beta2)
        self._apply(rows, factors, opt.epsilon, host, into)

    def _apply(self, rows: np.ndarray, factors: np.ndarray, eps: float,
               host: HostArrays | None, into=None) -> None:
        """w[rows] -= m / (sqrt(v) + eps) * drift; m[rows] *= b1**g; v[rows] *= b2**g.

        rows: (n,) int64; factors: (n, 3) float32 columns drift, b1**g, b2**g. ``into``: a
        copy of the table that gets the new rows of w instead (m and v stay).
        """
        weight = self.param.data()
        ctx = weight.context
        mean, var = self._moments()
        # Zero-copy, as nd.array would wait for every queued operation.
        lend = host.array if host else arrays.from_numpy
        idx, f = (lend(x).as_in_context(ctx) for x in (rows, factors))
        if self._block is None or self._block.eps != eps:
            self._block = _caught_up_rows(eps)
        at = idx.reshape((1, -1))
        targets = (weight, mean, var) if into is None else (into,)
        for target, value in zip(targets, self._block(weight, mean, var, idx, f)):
            arrays.scatter_rows(target, at, value)

    def _moments(self):
        """Adam's (mean, var) arrays for the table, as the updater holds them."""
        updater = self.trainer._updaters[0]
        return updater.states[self.index]


class DriftSums:
    """The table ``S[s] = sum_{j>=1} lr_{s+j} r**j`` of the module docstring, grown as a run's
    step count grows, and the catch-up factors it gives."""

    def __init__(self):
        self._sums = np.zeros(0)
        self._key = None

    def factors(self, last: np.ndarray, upto: np.ndarray, lr: float, b1: float,
                b2: float) -> np.ndarray:
        """(n, 3) float32 columns drift, b1**g, b2**g for rows last updated at Adam steps
        ``last`` ((n,) int64, each > 0) caught up to steps ``upto`` ((n,) int64), g = upto -
        last: ``w -= m / (sqrt(v) + eps) * drift; m *= b1**g; v *= b2**g``."""
        sums = self.sums(int(upto.max()), lr, b1, b2)
        missed = upto - last
        drift = sums[last] - (b1 / math.sqrt(b2)) ** missed * sums[upto]
        return np.stack([drift, b1 ** missed, b2 ** missed], axis=1).astype(np.float32)

    def sums(self, upto: int, lr: float, b1: float, b2: float) -> np.ndarray:
        """S[s] for s = 0 .. at least ``upto`` (float64), cached per settings."""
        key = (lr, b1, b2)
        if key != self._key or self._sums.size <= upto:
            n = max(2 * upto, 1024)
            s = np.arange(1, n + TAIL + 1, dtype=np.float64)
            lrs = lr * np.sqrt(1 - b2 ** s) / (1 - b1 ** s)  # lrs[k] = lr_{k+1}
            r = b1 / math.sqrt(b2)
            sums = np.zeros(n + TAIL + 1)
            # A loop over steps (not tokens), run again only when the run's step count
            # doubles: O(steps) in all. A closed-form cumsum would divide by r**k, which
            # underflows after a few thousand steps.
            for k in range(n + TAIL - 1, -1, -1):  # S[k] = r * (lr_{k+1} + S[k+1])
                sums[k] = r * (lrs[k] + sums[k + 1])
            self._sums, self._key = sums[:n + 1], key
        return self._sums


def _caught_up_rows(eps: float):
    """A hybridized block: (weight, mean, var, idx, factors) -> the rows ``idx`` of the three
    tables caught up: (w - m / (sqrt(v) + eps) * drift, m * b1**g, v * b2**g), each (n, E).
    factors: (n, 3) columns drift, b1**g, b2**g. One cached graph call from Python instead of
    ten operator calls: with the fast settings the main thread spends most of a step issuing
    operators."""
    mx = current_mxnet()

    class CaughtUpRows(mx.gluon.HybridBlock):
        def hybrid_forward(self, F, weight, mean, var, idx, factors):
            drift, decay1, decay2 = (F.slice_axis(factors, axis=1, begin=k, end=k + 1)
                                     for k in range(3))
            w, m, v = (F.take(x, idx) for x in (weight, mean, var))
            return (w - F.broadcast_mul(m / (F.sqrt(v) + eps), drift),
                    F.broadcast_mul(m, decay1), F.broadcast_mul(v, decay2))

    block = CaughtUpRows()
    block.eps = eps
    block.hybridize()
    return block
