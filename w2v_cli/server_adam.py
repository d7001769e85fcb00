"""The parameter servers' optimizer for row-sparse tables: lazy adam, the center table caught up.

MXNet's adam is lazy for a row_sparse gradient: it moves only the rows a step pushed. Dense
Adam also moves every other row along its momentum, and losing that drift on the center
table costs loss and quality (catchup.py; on PTB one epoch ended at 0.520 against 0.491).
One process catches a row up just before a step reads it; a server cannot (it does not
know what the workers will pull), so it catches a row up when a step next pushes it: the
drift over the steps it missed, in the closed form of catchup.py, then Adam's update of
that step, all on the pushed rows. The server's work and memory traffic follow the rows a
step touches, as on the network. The difference from one process: a worker's lookup reads
a row without the drift it has pending (it gets it at the row's next update), and a table
read at the end (model.params) lacks each row's pending drift. The context table stays
lazy, as on one machine.

The servers unpickle this class (``kvstore.set_optimizer``), so it lives in w2v_cli, which
``w2v launch`` runs them from; import it once MXNet is loaded.
"""

from __future__ import annotations

import math
import os
import sys
import traceback

import numpy as np

from . import arrays
from .backend import current_mxnet
from .catchup import DriftSums

_Adam = current_mxnet().optimizer.Adam


class ServerAdam(_Adam):
    """Adam, lazy on row_sparse gradients; the tables whose kvstore index is in
    ``caught_up`` get each pushed row's missed drift before its update (module docstring).
    No weight decay or gradient clipping (w2v uses neither)."""

    def __init__(self, caught_up: tuple = (), **params):
        super().__init__(**params)
        self.caught_up = tuple(caught_up)
        self._last: dict = {}  # index -> (V,) int64: the step each row was last updated at
        self._drift = DriftSums()

    def create_state(self, index, weight):
        # Dense moments where rows are caught up: their rows are gathered and scattered.
        self.lazy_update = index not in self.caught_up
        return super().create_state(index, weight)

    def update(self, index, weight, grad, state):
        try:
            self._update(index, weight, grad, state)
        except BaseException:  # noqa: BLE001  (MXNet would swallow it and train on, unchanged)
            traceback.print_exc()
            print("error: the server's optimizer failed; stopping this server", file=sys.stderr,
                  flush=True)
            os._exit(1)  # the launcher sees the server die and stops the job, naming it

    def _update(self, index, weight, grad, state):
        if index not in self.caught_up or grad.stype != "row_sparse":
            self.lazy_update = True
            return super().update(index, weight, grad, state)
        self._update_count(index)
        step = self._index_update_count[index]
        lr = self._get_lr(index)
        # A server runs this from inside `import mxnet` (ps-lite serves at import): the
        # package's attributes are not all set yet, its submodules are.
        from mxnet import ndarray as nd
        rows = grad.indices.asnumpy().astype(np.int64)  # (n,) the rows pushed
        if rows.size == 0:
            return
        last_all = self._last.setdefault(index, np.zeros(weight.shape[0], np.int64))
        last = last_all[rows]
        seen = last > 0  # a row never updated has zero moments: nothing to catch up
        factors = np.zeros((rows.size, 3), np.float32)
        factors[:, 1:] = 1
        if seen.any():
            factors[seen] = self._drift.factors(last[seen], np.full(seen.sum(), step - 1),
                                                lr, self.beta1, self.beta2)
        last_all[rows] = step
        idx = nd.array(rows, dtype="int64", ctx=weight.context)
        f = nd.array(factors, ctx=weight.context)
        mean, var = state
        m, v = nd.take(mean, idx), nd.take(var, idx)  # (n, E) as at each row's last update
        delta = nd.broadcast_mul(m / (nd.sqrt(v) + self.epsilon), f[:, 0:1])  # the drift
        m, v = nd.broadcast_mul(m, f[:, 1:2]), nd.broadcast_mul(v, f[:, 2:3])  # caught up
        g = grad.data * self.rescale_grad
        m = self.beta1 * m + (1 - self.beta1) * g
        v = self.beta2 * v + (1 - self.beta2) * g * g
        lr_t = lr * math.sqrt(1 - self.beta2 ** step) / (1 - self.beta1 ** step)
        delta = delta + lr_t * m / (nd.sqrt(v) + self.epsilon)
        at = idx.reshape((1, -1))
        for target, value in ((mean, m), (var, v)):
            arrays.scatter_rows(target, at, value)
        # w[rows] -= delta, in place on the row_sparse weight: a lazy sgd step of rate 1.
        step_rows = nd.sparse.row_sparse_array((delta, idx), shape=weight.shape,
                                               ctx=weight.context)
        nd.sgd_update(weight, step_rows, lr=1.0, wd=0.0, rescale_grad=1.0, lazy_update=True,
                      out=weight)
