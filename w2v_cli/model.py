"""The Gluon network: two embedding tables, a batch_dot forward and the masked loss.

Two front ends run the same blocks. Dense gradients use MXNet's numpy front end (``mx.np``,
``npx.batch_dot``). Sparse row gradients (``sparse_grad=True``) need the legacy NDArray front
end: under ``npx.set_np()`` Gluon refuses to allocate a row_sparse gradient ("mxnet.numpy.zeros
does not support stype = row_sparse"). So :func:`frontend` switches the numpy-array semantics
off for the scope of a sparse run, and :func:`skip_gram` calls ``nd.batch_dot``, the legacy
name of the same batch_dot operator.
"""

from __future__ import annotations

import contextlib
import functools
import weakref

import numpy as np

from .backend import current_mxnet as _mx
from .backend import mxnet

INIT_SCALE = 0.07  # Gluon's default Uniform(0.07), as the chapter's net.initialize() uses

CENTER_KEY = "0.weight"   # parameter names in the saved .params file
CONTEXT_KEY = "1.weight"


def frontend(sparse_grad: bool):
    """A context in which to build and train the net: the legacy NDArray front end for sparse
    gradients, the numpy front end (unchanged) otherwise."""
    mx = mxnet()
    return mx.util.np_array(False) if sparse_grad else contextlib.nullcontext()


def arrays():
    """The array module of the active front end: ``mx.nd`` or ``mx.np``."""
    mx = _mx()
    return mx.np if mx.util.is_np_array() else mx.nd


def build_net(vocab_size: int, embed_size: int, ctx, sparse_grad: bool = False):
    """A Sequential of the center table (net[0]) and the context table (net[1]), each
    (vocab_size, embed_size) float32, initialized on ``ctx``. With ``sparse_grad`` the
    gradients are row_sparse; build it inside ``frontend(True)``."""
    mx = _mx()
    nn = mx.gluon.nn
    net = nn.Sequential()
    net.add(nn.Embedding(vocab_size, embed_size, sparse_grad=sparse_grad),
            nn.Embedding(vocab_size, embed_size, sparse_grad=sparse_grad))
    if mx.util.is_np_array():
        net.initialize(mx.init.Uniform(INIT_SCALE), ctx=ctx)
        return net
    # The legacy front end draws its uniforms with another kernel; draw them as the numpy
    # front end does (Gluon initializes on the CPU, then copies to the devices: a GPU's
    # generator gives other numbers), so the same seed gives the same starting tables on
    # either path and every device.
    net.initialize(mx.init.Zero(), ctx=ctx)
    for block in net:
        with mx.util.np_array(True):
            w = mx.np.random.uniform(-INIT_SCALE, INIT_SCALE, block.weight.shape, ctx=mx.cpu())
        block.weight.set_data(w.as_nd_ndarray())
    return net


def skip_gram(center, items, embed_v, embed_u):
    """Scores of each center against its contexts and noise words.

    center: (b, 1) ids; items: (b, L) ids. Returns (b, 1, L), as the chapter's.
    """
    batch_dot = _batch_dot()
    v = embed_v(center)  # (b, 1, E)
    u = embed_u(items)   # (b, L, E)
    # u @ v.T, with v's (1, E) rows read as (E, 1) columns by a free reshape: the fastest of
    # the equivalent forms measured on the CPU (v @ u.T with transpose_b is ~1.2x slower,
    # materializing u.swapaxes(1, 2) ~15x slower); see benchmarks/README.md.
    # The (b, L, 1) result is read as the chapter's (b, 1, L), also a free reshape.
    return batch_dot(u, v.reshape((-1, v.shape[2], 1))).reshape((-1, 1, u.shape[1]))


def grouped_scores(embed_v, embed_u, group: int):
    """A block scoring every word of a group against every center of the group
    (--noise-group), on the tables ``embed_v``, ``embed_u`` (net[0], net[1], shared).

    Called with center: (G * g, 1) ids, g = ``group`` consecutive centers a group, and
    words: (G, W) ids, each group's contexts and noise words (batches.share_noise). Returns
    (G, W, g): one batch_dot over G groups instead of one per center.
    """
    return _grouped_blocks()[0](embed_v, embed_u, group)


def grouped_loss(net, group: int):
    """A block giving a noise-group batch's loss summed over its groups, (): the scores of
    :func:`grouped_scores` through SigmoidBCELoss weighted by the batch's mask. Called with
    center, words (as grouped_scores), weight and label ((G, W, g) float32).

    Hybridized: one cached graph call a step instead of ~15 operator calls from Python
    (main-thread CPU 3.9 -> 3.1 ms a step on PTB, benchmarks/README.md). One per net, group
    size and front end (a graph is traced for one kind of array).
    """
    blocks = _GROUPED.setdefault(net, {})
    key = (group, _mx().util.is_np_array())
    if key not in blocks:
        blocks[key] = _grouped_blocks()[1](net[0], net[1], group)
        blocks[key].hybridize()
    return blocks[key]


_GROUPED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # net -> {key: block}


@functools.lru_cache(maxsize=None)
def _grouped_blocks():
    """The block classes of grouped_scores and grouped_loss (defined once MXNet is loaded)."""
    gluon = _mx().gluon

    class GroupedScores(gluon.HybridBlock):
        def __init__(self, embed_v, embed_u, group):
            super().__init__()
            self.embed_v, self.embed_u, self.group = embed_v, embed_u, group
            self.embed_size = embed_v.weight.shape[1]

        def hybrid_forward(self, F, center, words):
            # F's batch_dot, not _batch_dot(): hybridized, this traces symbols.
            batch_dot = F.npx.batch_dot if _mx().util.is_np_array() else F.batch_dot
            v = self.embed_v(center).reshape((-1, self.group, self.embed_size))  # (G, g, E)
            return batch_dot(self.embed_u(words), v, transpose_b=True)

    class GroupedLoss(gluon.HybridBlock):
        def __init__(self, embed_v, embed_u, group):
            super().__init__()
            self.scores = GroupedScores(embed_v, embed_u, group)
            self.loss = gluon.loss.SigmoidBCELoss()

        def hybrid_forward(self, F, center, words, weight, label):
            return self.loss(self.scores(center, words), label, weight).sum()

    return GroupedScores, GroupedLoss


def skip_gram_trimmed(center, words, slots, length, embed_v, embed_u):
    """:func:`skip_gram` over a trimmed batch (batches.trim): parts of rows of one width each.

    center: (b, 1) ids; words: (U,) the batch's distinct context and noise ids; slots: one
    (n_p, w_p) array per part, n_1 + n_2 + ... = b, the rows in ``center``'s order, each
    position's index into ``words``. Returns (length,): each part's scores from its own
    batch_dot, flat, one part after another, then zeros up to ``length`` (>= sum n_p * w_p;
    see batches.trim).

    The context table is looked up once, for ``words``, and each part gathers its rows from
    that (U, E) array. With sparse gradients each lookup's backward walks the whole table
    (MXNet's CPU kernel marks and prefix-sums a V-long array per call, ~3.5 ms at a million
    rows), so one lookup a step, not one per part, keeps the cost of a step near that of a
    small vocabulary (benchmarks/README.md). Reshaping one (N, E) lookup into the parts
    instead would copy its whole gradient back.
    """
    mx = _mx()
    xp = arrays()
    batch_dot = _batch_dot()
    v = embed_v(center)  # (b, 1, E)
    u = embed_u(words)   # (U, E)
    e = v.shape[2]
    # Each part's centers as a slice (split_v2 measured ~3x slower, forward and backward).
    ends = np.cumsum([x.shape[0] for x in slots]).tolist()
    if len(slots) == 1:
        vs = [v]
    elif xp is mx.np:
        vs = [mx.npx.slice(v, (end - x.shape[0], None, None), (end, None, None))
              for x, end in zip(slots, ends)]
    else:
        vs = [mx.nd.slice_axis(v, axis=0, begin=end - x.shape[0], end=end)
              for x, end in zip(slots, ends)]
    take = (lambda s: mx.np.take(u, s, axis=0)) if xp is mx.np else (lambda s: mx.nd.take(u, s))
    scores = [batch_dot(take(x), v_p.reshape((-1, e, 1))).reshape((-1,))
              for x, v_p in zip(slots, vs)]
    pad = length - sum(x.size for x in slots)
    if pad:
        scores.append(xp.zeros((pad,), ctx=v.context))
    if len(scores) == 1:
        return scores[0]
    return xp.concatenate(scores) if xp is mx.np else mx.nd.concat(*scores, dim=0)


def _batch_dot():
    """The batch_dot of the active front end: ``npx.batch_dot`` or its legacy ``nd`` name."""
    mx = _mx()
    return mx.npx.batch_dot if mx.util.is_np_array() else mx.nd.batch_dot


def masked_loss(pred, label, mask):
    """Per-example binary cross-entropy averaged over the unmasked positions.

    pred, label, mask: (b, L). Returns (b,). SigmoidBCELoss averages over all L positions
    (masked ones count as 0), so rescaling by L / mask.sum(1) gives the mean over real ones.
    """
    return _bce(_mx().util.is_np_array())(pred, label, mask) * mask.shape[1] / mask.sum(axis=1)


def weighted_loss(pred, label, weight):
    """Binary cross-entropy times ``weight``, averaged over every axis but the first.

    pred, label, weight: (b, ...) of one shape (trimmed, (N,): one example per position).
    Returns (b,)."""
    return _bce(_mx().util.is_np_array())(pred, label, weight)


@functools.lru_cache(maxsize=None)
def _bce(numpy_front_end: bool):
    """The sigmoid loss, hybridized: one cached graph call instead of ~8 operator calls from
    Python a step. One per front end, since a graph is traced for one kind of array."""
    loss = _mx().gluon.loss.SigmoidBCELoss()
    loss.hybridize()  # measured: 3-5% faster steps, the same losses to 6 digits
    return loss
