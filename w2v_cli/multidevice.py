"""One batch split across several devices by groups (``--device gpu:0,1,...``).

Any one-part batch is split (batches.Padded with any objective): each device takes whole
groups, a group being the centers that share words (one center with its own noise words,
--noise-group centers sharing noise, a skip-gram row's contexts against its center's path).
Trimmed batches of several parts are one device's: batches.layout_for pads on several.
"""

from __future__ import annotations

from . import arrays
from .backend import current_mxnet as mxnet  # mxnet() would end a sparse run's front end
from .batches import Batch
from .model import part_loss


def forward_backward(net, b: Batch, ctxs: list, lend) -> list:
    """One summed loss per device, each a () array there. The gradients sum over the whole
    batch whatever the split, so an update takes the step one device would. A batch with
    fewer groups than devices (an epoch's last, at worst) gives each spare device a
    zero-weighted group, so every device holds a fresh (zero) gradient.

    ``lend``: numpy -> MXNet array on cpu(0) (arrays.HostArrays.array or from_numpy).
    """
    mx = mxnet()
    if b.words is not None:
        raise ValueError(f"a batch of {len(b.parts)} parts trains on one device, not "
                         f"{len(ctxs)}")
    words, group = b.parts[0]
    groups = words.shape[0]
    mixed = b.mix is not None
    # Every array with the groups on its first axis, so a cut falls between groups:
    # center (G, g * C), words (G, W), weight and label (G, W * g), mix (G, g * C).
    per_group = [x.reshape(groups, -1) for x in
                 (b.center, words, b.weight, b.label, *([b.mix] if mixed else []))]
    # and back to part_loss's shapes on each device
    shapes = [(-1,) + b.center.shape[1:], (-1, words.shape[1]), (-1,), (-1,),
              *([(-1,) + b.mix.shape[1:]] if mixed else [])]
    used = ctxs[:groups]
    pieces = [arrays.split_rows(lend(x), used) for x in per_group]
    loss = part_loss(net, group, mixed)
    with mx.autograd.record():
        losses = [loss(*(x.reshape(s) for x, s in zip(piece, shapes)))
                  for piece in zip(*pieces)]
        for c in ctxs[groups:]:
            spare = (arrays.on(x[:1], c).reshape(s) for x, s in zip(per_group, shapes))
            losses.append(loss(*spare) * 0.0)
    mx.autograd.backward(losses)
    return losses
