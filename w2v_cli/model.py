"""The Gluon network: two embedding tables, a batch_dot forward and the masked loss.

net[0] holds the center vectors v, net[1] the context (and noise) vectors u, or with
hierarchical softmax the Huffman tree's inner-node vectors. For CBOW a "center" vector is the
mean of a row's context vectors, taken from net[0] (:func:`input_vectors`). Every batch
layout (batches.py) is scored by :func:`batch_loss`: each part's (G, W, g) scores are one
``batch_dot`` of its words' u with its centers' v, and the loss is SigmoidBCELoss weighted by
the batch. :func:`skip_gram` and :func:`masked_loss` are the chapter's own forward and loss,
kept as the reference the layouts are tested against.
"""

from __future__ import annotations

import functools
import weakref

import numpy as np

from . import arrays
from .backend import current_mxnet as _mx
from .params import CENTER_KEY, CONTEXT_KEY  # noqa: F401  (net[0], net[1] in model.params)

INIT_SCALE = 0.07  # Gluon's default Uniform(0.07), as the chapter's net.initialize() uses


def build_net(vocab_size: int, embed_size: int, ctx, sparse_grad: bool = False,
              row_sparse_weights: bool = False):
    """A Sequential of the center table (net[0]) and the context table (net[1]), each
    (vocab_size, embed_size) float32, initialized on ``ctx`` (one context or a list). With
    ``sparse_grad`` the gradients are row_sparse; build it inside ``arrays.scope(True)``.

    ``row_sparse_weights`` (a parameter-server worker with sparse gradients): the tables are
    ``gluon.contrib.nn.SparseEmbedding``, whose row_sparse weights live on the servers and
    whose forward pulls the rows it reads. It stands in for ``nn.Embedding(sparse_grad=True)``
    there only because that aborts in ps-lite on MXNet 1.9.1 (dense weight, sparse gradient);
    it is not a HybridBlock, so :func:`batch_loss` runs it eagerly. Read its tables with
    :func:`table` or :func:`saved_tables`, which pull every row first."""
    mx = _mx()
    nn = mx.gluon.nn
    net = nn.Sequential()
    for _ in range(2):
        net.add(mx.gluon.contrib.nn.SparseEmbedding(vocab_size, embed_size)
                if row_sparse_weights else
                nn.Embedding(vocab_size, embed_size, sparse_grad=sparse_grad))
    if mx.util.is_np_array():
        net.initialize(mx.init.Uniform(INIT_SCALE), ctx=ctx)
        return net
    # The legacy front end draws its uniforms with another kernel; draw them as the numpy
    # front end does (Gluon initializes on the CPU, then copies to the devices: a GPU's
    # generator gives other numbers), so the same seed gives the same starting tables on
    # every path and device.
    net.initialize(mx.init.Zero(), ctx=ctx)
    for block in net:
        with mx.util.np_array(True):
            w = mx.np.random.uniform(-INIT_SCALE, INIT_SCALE, block.weight.shape, ctx=mx.cpu())
        w = w.as_nd_ndarray()
        block.weight.set_data(w.tostype("row_sparse") if row_sparse_weights else w)
    return net


def parameters(net) -> list:
    """The two tables' parameters in the order a Trainer takes them, [center, context]: the
    optimizer's state indices 0 and 1, and the kvstore's keys. Given a ParameterDict, Gluon's
    Trainer sorts it by name, and names count up across a process (embedding10 sorts before
    embedding9): a process that built other nets first would give the tables the other
    indices, and a checkpoint's Adam moments would load into the wrong table."""
    return [net[0].weight, net[1].weight]


def skip_gram(center, items, embed_v, embed_u):
    """The chapter's forward: scores of each center against its contexts and noise words.

    center: (b, 1) ids; items: (b, L) ids. Returns (b, 1, L).
    """
    v = embed_v(center)  # (b, 1, E)
    u = embed_u(items)   # (b, L, E)
    return arrays.batch_dot(v, u, transpose_b=True)


def masked_loss(pred, label, mask):
    """The chapter's loss: per-example binary cross-entropy over the unmasked positions.

    pred, label, mask: (b, L). Returns (b,). SigmoidBCELoss averages over all L positions
    (masked ones count as 0), so rescaling by L / mask.sum(1) gives the mean over real ones.
    """
    return _bce(arrays.numpy_front_end())(pred, label, mask) * mask.shape[1] / mask.sum(axis=1)


def batch_loss(net, batch, lent: list):
    """The summed loss of ``batch`` (batches.Batch), a () array on the device of ``lent``:
    the batch's arrays there, in ``Batch.arrays()`` order."""
    center, weight, label, *ids = lent
    mixed = batch.mix is not None
    mix = ids.pop() if mixed else None
    if batch.words is None:
        g = batch.parts[0][1]
        loss = part_loss(net, g, mixed) if _hybridizable(net) else \
            functools.partial(_eager_part_loss, net, g)
        return loss(center, ids[0], weight, label, *([mix] if mixed else []))
    return _parts_loss(net, batch, center, weight, label, ids, mix)


def _hybridizable(net) -> bool:
    """False for tables that pull their rows from a parameter server (SparseEmbedding)."""
    return isinstance(net[0], _mx().gluon.HybridBlock)


def _eager_part_loss(net, group: int, center, words, weight, label, mix=None):
    """:func:`part_loss`'s computation, operator by operator: for tables that cannot be
    traced into a graph. Same arrays and shapes as part_loss; returns ()."""
    v = input_vectors(net[0], center, mix)  # (G * g, 1, E)
    scores = group_scores(net[1](words), v, group, v.shape[2])
    return _summed_bce(_bce(arrays.numpy_front_end()), scores, label, weight, group)


def _summed_bce(loss, scores, label, weight, group: int):
    """The weighted SigmoidBCELoss of ``scores`` summed over every position: (G, W, g)
    scores, or any array of n * ``group`` positions; label and weight: (n * group,). Fed as
    (n, group) rows, the loss's mean runs over a real axis (on a 1-D array it is a mean over
    no axis, an operator call 2-2.5x slower on the CPU); times ``group``, the row means sum
    to the sum over positions."""
    rows = (-1, group)
    return loss(scores.reshape(rows), label.reshape(rows), weight.reshape(rows)).sum() * group


def input_vectors(embed_v, center, mix=None, batch_dot=None):
    """(R, 1, E): the first table's rows of ``center`` (R, 1), or with ``mix`` (R, 1, C) the
    mix of the rows of ``center`` (R, C): CBOW's mean of the contexts, padding weighted 0.

    Backward, every context of a CBOW row takes the whole gradient of the row's mean, not
    1 / n_ctx of it, as the word2vec C tool and gensim (``cbow_mean=1``) update them; padding
    takes none. Measured on PTB against the mean's true gradient: docs/objectives.md."""
    v = embed_v(center)
    if mix is None:
        return v
    batch_dot = batch_dot or arrays.batch_dot
    total = batch_dot((mix > 0).astype("float32"), v)  # the contexts' sum: the gradient's path
    # forward total - total + mean is the mean exactly. (Stopping total - mean in one piece
    # crashes the legacy front end's eager backward with row_sparse gradients, MXNet 1.9.1.)
    stop = arrays.stop_gradient
    return total - stop(total) + batch_dot(mix, stop(v))


def _parts_loss(net, batch, center, weight, label, ids, mix=None):
    """A batch of several parts: one lookup per table, then each part's rows from those."""
    words, slots = ids[0], ids[1:]
    v = input_vectors(net[0], center, mix)  # (R, 1, E)
    u = net[1](words)   # (U, E): a sparse lookup's backward walks the whole table, so once
    e = v.shape[2]
    scores, start = [], 0
    for (part_ids, g), part_slots in zip(batch.parts, slots):
        n = part_ids.shape[0] * g
        v_p = v if n == v.shape[0] else arrays.slice_rows(v, start, start + n)
        scores.append(group_scores(arrays.take(u, part_slots), v_p, g, e).reshape((-1,)))
        start += n
    pad = label.shape[0] - sum(x.shape[0] for x in scores)
    if pad:
        scores.append(arrays.zeros(pad, v.context))
    # The parts' g differ: one row of every position.
    return _summed_bce(_bce(arrays.numpy_front_end()), arrays.concat(scores), label, weight,
                       label.shape[0])


def group_scores(u, v, g: int, e: int, batch_dot=None):
    """(G, W, g): u (G, W, E) against v (G * g, 1, E), each group's words with its centers."""
    batch_dot = batch_dot or arrays.batch_dot
    if g == 1:  # v's rows read as (E, 1) columns: a free reshape, no transposed operand
        return batch_dot(u, v.reshape((-1, e, 1)))
    return batch_dot(u, v.reshape((-1, g, e)), transpose_b=True)


def part_loss(net, group: int, mixed: bool = False):
    """The hybridized loss of a one-part batch of groups of ``group`` centers: called with
    center (G * g, 1), words (G, W), weight and label ((G * W * g,) float32), gives ().
    ``mixed``: called with a fifth array, mix (G * g, 1, C), and center (G * g, C): each
    center vector is that mix of C rows (input_vectors).

    One cached graph call a step instead of ~15 operator calls from Python. One per net,
    group size, mixing and front end (a graph is traced for one kind of array)."""
    blocks = _PART_LOSS.setdefault(net, {})
    key = (group, mixed, arrays.numpy_front_end())
    if key not in blocks:
        blocks[key] = _part_loss_class(mixed)(net[0], net[1], group)
        blocks[key].hybridize()
    return blocks[key]


_PART_LOSS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # net -> {key: block}


@functools.lru_cache(maxsize=None)
def _part_loss_class(mixed: bool = False):
    """The block class of part_loss (defined once MXNet is loaded); ``mixed``: the one
    whose centers are mixes of rows (CBOW)."""
    gluon = _mx().gluon

    class PartLoss(gluon.HybridBlock):
        def __init__(self, embed_v, embed_u, group):
            super().__init__()
            self.embed_v, self.embed_u, self.group = embed_v, embed_u, group
            self.embed_size = embed_v.weight.shape[1]
            self.loss = gluon.loss.SigmoidBCELoss()

        def hybrid_forward(self, F, center, words, weight, label, mix=None):
            # F's batch_dot: hybridized, this traces symbols.
            batch_dot = F.npx.batch_dot if _mx().util.is_np_array() else F.batch_dot
            v = input_vectors(self.embed_v, center, mix, batch_dot)
            scores = group_scores(self.embed_u(words), v, self.group, self.embed_size,
                                  batch_dot)
            return _summed_bce(self.loss, scores, label, weight, self.group)

    if not mixed:
        return PartLoss

    class MixedPartLoss(PartLoss):
        def hybrid_forward(self, F, center, words, weight, label, mix):
            return super().hybrid_forward(F, center, words, weight, label, mix)

    return MixedPartLoss


@functools.lru_cache(maxsize=None)
def _bce(numpy_front_end: bool):
    """The sigmoid loss, hybridized: one cached graph call instead of ~8 operator calls a
    step. One per front end, since a graph is traced for one kind of array."""
    loss = _mx().gluon.loss.SigmoidBCELoss()
    loss.hybridize()
    return loss


def table(net, which: int, ctx) -> np.ndarray:
    """(V, E) float32: table ``which`` (0 center, 1 context) on ``ctx``, as numpy."""
    weight = net[which].weight
    return arrays.to_numpy(weight.data(ctx) if weight._stype == "default" else
                           _pull_all(weight, ctx))


def saved_tables(net) -> dict:
    """What ``net.save_parameters`` writes, dense: ``{"0.weight": (V, E), "1.weight":
    (V, E)}`` float32 arrays of the active front end on the CPU."""
    cpu = _mx().cpu()
    return {name: p._reduce() if p._stype == "default" else _pull_all(p, cpu)
            for name, p in net._collect_params_with_prefix().items()}


def _pull_all(param, ctx):
    """(V, E) dense on ``ctx``: every row of a row_sparse ``param`` (SparseEmbedding, which
    holds only the rows its last lookup pulled) from the servers, once every queued push has
    been answered (in dist_sync, after the servers' update of that step)."""
    mx = _mx()
    mx.nd.waitall()
    rows = mx.nd.arange(0, param.shape[0], dtype="int64", ctx=ctx)
    return param.row_sparse_data(rows).tostype("default")
