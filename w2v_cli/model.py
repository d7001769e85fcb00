"""The Gluon network: two embedding tables, a batch_dot forward and the masked loss."""

from __future__ import annotations

import functools

from .backend import mxnet

INIT_SCALE = 0.07  # Gluon's default Uniform(0.07), as the chapter's net.initialize() uses

CENTER_KEY = "0.weight"   # parameter names in the saved .params file
CONTEXT_KEY = "1.weight"


def build_net(vocab_size: int, embed_size: int, ctx):
    """A Sequential of the center table (net[0]) and the context table (net[1]), each
    (vocab_size, embed_size) float32, initialized on ``ctx``."""
    mx = mxnet()
    nn = mx.gluon.nn
    net = nn.Sequential()
    net.add(nn.Embedding(vocab_size, embed_size), nn.Embedding(vocab_size, embed_size))
    net.initialize(mx.init.Uniform(INIT_SCALE), ctx=ctx)
    return net


def skip_gram(center, items, embed_v, embed_u):
    """Scores of each center against its contexts and noise words.

    center: (b, 1) ids; items: (b, L) ids. Returns (b, 1, L).
    """
    npx = mxnet().npx
    v = embed_v(center)  # (b, 1, E)
    u = embed_u(items)   # (b, L, E)
    # transpose_b avoids materializing u.swapaxes(1, 2): several times faster on the CPU.
    return npx.batch_dot(v, u, transpose_b=True)


def masked_loss(pred, label, mask):
    """Per-example binary cross-entropy averaged over the unmasked positions.

    pred, label, mask: (b, L). Returns (b,). SigmoidBCELoss averages over all L positions
    (masked ones count as 0), so rescaling by L / mask.sum(1) gives the mean over real ones.
    """
    return _bce()(pred, label, mask) * mask.shape[1] / mask.sum(axis=1)


@functools.lru_cache(maxsize=None)
def _bce():
    return mxnet().gluon.loss.SigmoidBCELoss()
