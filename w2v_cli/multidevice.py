"""One batch split across several devices by rows (``--device gpu:0,1,...``).

Only a one-part batch of one center a group (batches.Padded with OwnNegatives) is split:
config.check refuses the options that make other layouts on several devices.
"""

from __future__ import annotations

from . import arrays
from .backend import current_mxnet as mxnet  # mxnet() would end a sparse run's front end
from .batches import Batch
from .model import part_loss


def forward_backward(net, b: Batch, ctxs: list, lend) -> list:
    """One summed loss per device, each a () array there. The gradients sum over the whole
    batch whatever the split, so ``trainer.step(rows)`` updates as on one device. A batch
    with fewer rows than devices (an epoch's last, at worst) gives each spare device a
    zero-weighted row, so every device holds a fresh (zero) gradient.

    ``lend``: numpy -> MXNet array on cpu(0) (arrays.HostArrays.array or from_numpy).
    """
    mx = mxnet()
    if b.words is not None or b.parts[0][1] != 1:
        raise ValueError(f"a batch of {len(b.parts)} parts of groups of {b.parts[0][1]} trains "
                         f"on one device, not {len(ctxs)}")
    rows = b.center.shape[0]
    used = ctxs[:rows]
    # (rows, W) per-row views of the flat weight and label, cut by rows like the ids
    width = b.parts[0][0].shape[1]
    per_row = [b.center, b.parts[0][0], b.weight.reshape(rows, width),
               b.label.reshape(rows, width)]
    pieces = [arrays.split_rows(lend(x), used) for x in per_row]
    loss = part_loss(net, 1)
    with mx.autograd.record():
        losses = [loss(center, words, weight.reshape((-1,)), label.reshape((-1,)))
                  for center, words, weight, label in zip(*pieces)]
        for c in ctxs[rows:]:
            center, words, weight, label = (arrays.on(x[:1], c) for x in per_row)
            losses.append(loss(center, words, weight.reshape((-1,)), label.reshape((-1,))) * 0.0)
    mx.autograd.backward(losses)
    return losses
