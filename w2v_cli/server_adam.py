"""The parameter servers' optimizer for row-sparse tables: adam, dense on some tables.

MXNet's adam is lazy for every row_sparse gradient (it moves only the rows a step pushed),
and lazy adam on the center table costs loss and quality (catchup.py; the figures in
docs/distributed.md). A worker cannot catch the servers' rows up, so the servers
update the center table densely (every row, from the pushed rows' gradient and every row's
moments: one process's Adam) and the context table lazily, as one process does. The dense
update costs the servers O(V x E) a step; what moves over the network stays row-sparse.

The servers unpickle this class (``kvstore.set_optimizer``), so it lives in w2v_cli, which
``w2v launch`` runs them from; import it once MXNet is loaded.
"""

from __future__ import annotations

from .backend import current_mxnet

_Adam = current_mxnet().optimizer.Adam


class ServerAdam(_Adam):
    """Adam, lazy except on the parameters whose kvstore index is in ``dense``."""

    def __init__(self, dense: tuple = (), **params):
        super().__init__(**params)
        self.dense = tuple(dense)

    def create_state(self, index, weight):
        self.lazy_update = index not in self.dense  # dense moments for a dense update
        return super().create_state(index, weight)

    def update(self, index, weight, grad, state):
        self.lazy_update = index not in self.dense
        super().update(index, weight, grad, state)
