"""Plain SGD, as the word2vec C tool and gensim train: a rate per pair that falls linearly over
the run, from tables started the C tool's way. The default for skip-gram with hierarchical
softmax (config.resolved; docs/objectives.md has the measurements).

The C tool takes one step per (input word, scored word) pair; a batch takes all its pairs'
gradients at one point and adds them. For most rows the sum is what those steps add up to.
For the second table's busiest rows it is not: the Huffman tree's root is on every path,
thousands of positions in a batch of 512 centers, and at 0.05 a pair that summed step
overshoots and the run diverges. So a second-table row's summed gradient is scaled down to
at most ``NODE_CAP`` positions' worth (capping the first table's rows as well costs quality).

The rate of a step is ``lr * max(MIN_RATE, 1 - done / total)``: ``done`` is the centers
trained before it, ``total`` the run's expected centers (``--epochs`` times the tokens a pass
keeps after subsampling, on average). ``done`` is kept on MXNet's optimizer object, which a
checkpoint pickles with the optimizer, so a resumed run takes the same steps.
"""

from __future__ import annotations

import numpy as np

from . import arrays
from .backend import current_mxnet
from .batches import Batch
from .config import Config
from .model import INIT_SCALE
from .sampling import keep_probability

NODE_CAP = 50.0  # second-table positions a row's summed gradient may weigh in one step
MIN_RATE = 1e-4  # the rate's floor, a fraction of --lr (gensim's 0.0001 of 0.025 is 0.004)
DONE = "w2v_centers_done"  # the optimizer's attribute holding the centers trained


def expected_centers(counts: np.ndarray, subsample: float) -> float:
    """The tokens (centers) one pass keeps on average: counts (V,) by id, <unk> (id 0)
    left out as training leaves it out."""
    return float((counts[1:] * keep_probability(counts, subsample)[1:]).sum())


def row_positions(b: Batch) -> tuple:
    """The second-table rows batch ``b`` looks up and how many weighted positions score each:
    (ids (U,) int32, sorted and distinct: a row_sparse gradient's rows; positions (U,)
    float64). A position counts once whatever its weight, if that is above 0. The work
    follows the batch, not the vocabulary."""
    words, scored, start = [], [], 0
    for ids, g in b.parts:
        n = ids.size * g
        words.append(ids.ravel())
        scored.append((b.weight[start:start + n].reshape(*ids.shape, g) > 0).sum(axis=2).ravel())
        start += n
    words, scored = np.concatenate(words), np.concatenate(scored)
    # one sort of (word, count) keys, as int32 where they fit (numpy sorts those ~10x
    # faster than int64; np.unique's inverse is slower still)
    shift = max(int(scored.max(initial=0)).bit_length(), 1)
    wide = (int(words.max(initial=0)) + 1) << shift >= 2 ** 31
    dtype = np.int64 if wide else np.int32
    keys = np.sort(words.astype(dtype) << shift | scored.astype(dtype))
    words, scored = keys >> shift, keys & ((1 << shift) - 1)
    starts = np.flatnonzero(np.concatenate([[True], words[1:] != words[:-1]]))
    return words[starts].astype(np.int32), np.add.reduceat(scored, starts).astype(np.float64)


def cap_scale(positions: np.ndarray, cap: float = NODE_CAP) -> np.ndarray:
    """float32 factors for rows scored at ``positions`` (any shape): min(1, cap / positions)."""
    return np.minimum(1.0, cap / np.maximum(positions, 1e-9)).astype(np.float32)


def start_tables(net, embed_size: int) -> None:
    """The C tool's start: the first table uniform in +-0.5 / embed_size (Gluon's uniform
    draw, rescaled: the same numbers on every device), the second all zeros."""
    first, second = net[0].weight, net[1].weight
    first.set_data(first.data(first.list_ctx()[0]) * (0.5 / embed_size / INIT_SCALE))
    second.set_data(second.data(second.list_ctx()[0]) * 0)


class LinearSgd:
    """The step of a run trained by SGD, in place of ``trainer.step``: a Gluon Trainer built
    with ``"sgd"`` over [first table, second table] (model.parameters), the gradients (dense
    or row_sparse) of the batch's summed loss."""

    def __init__(self, config: Config, counts: np.ndarray):
        self.lr = config.lr
        self.total = config.epochs * max(expected_centers(counts, config.subsample), 1.0)
        self.cap = NODE_CAP

    def rate(self, done: int) -> float:
        return self.lr * max(MIN_RATE, 1.0 - done / self.total)

    def update(self, trainer, b: Batch) -> None:
        optimizer = trainer._optimizer  # a resumed run's is the one its checkpoint pickled
        done = getattr(optimizer, DONE, 0)
        rows, positions = row_positions(b)
        scale = cap_scale(positions, self.cap)
        if (scale < 1).any():
            for grad in trainer._params[1].list_grad():
                _scale_rows(grad, rows, scale)
        trainer.set_learning_rate(self.rate(done))
        trainer.step(1)  # the loss is summed over the batch: the rate is per pair
        setattr(optimizer, DONE, done + b.rows)


def _scale_rows(grad, rows: np.ndarray, scale: np.ndarray) -> None:
    """Multiply row ``rows[i]`` of ``grad`` (V, E), dense or row_sparse, by ``scale[i]`` in
    place. ``rows`` (U,): the ids the batch looked up, sorted and distinct: a row_sparse
    gradient's rows. Nothing here waits for the device (a row_sparse gradient's own
    indices would)."""
    if grad.stype == "default":
        full = np.ones((grad.shape[0], 1), np.float32)
        full[rows, 0] = scale
        grad *= arrays.from_numpy(full).as_in_context(grad.context)
        return
    mx = current_mxnet()
    factors = np.repeat(scale[:, None], grad.shape[1], axis=1)
    by = mx.nd.sparse.row_sparse_array((factors, rows), shape=grad.shape, ctx=grad.context)
    mx.nd.sparse.elemwise_mul(grad, by).copyto(grad)
