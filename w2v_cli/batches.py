"""A step's batch: how its centers are grouped (a grouping) and what each center is scored
against (an objective). Any grouping works with any objective.

A batch is one or more parts. Part p holds G_p groups of g centers and, for each group, W_p
words: the contexts (label 1) and noise words (label 0) its centers are scored against. Its
scores are one (G_p, W_p, g) product of the words' context vectors with the centers' vectors
(model.batch_loss), and the loss is SigmoidBCELoss at every position, weighted: the weights
make the summed loss of a batch the sum over its centers of the chapter's masked mean loss
(every real position of a row weighs 1 / its length; padding weighs 0).

Groupings, which rows share a part and how wide it is:
  - :class:`Padded`: one part, every row padded to the longest (the chapter; the reference).
  - :class:`Trimmed`: rows sorted by length and cut into at most ``parts`` parts, each padded
    to its own longest row, at the cuts that leave the fewest padded positions.
Objectives, what a center is scored against:
  - :class:`OwnNegatives`: its contexts and the --negatives noise words each context drew
    (the chapter); one center a group.
  - :class:`SharedNegatives`: groups of --noise-group centers share --group-noise noise words,
    weighted as --negatives per context word (a cheaper estimate of the same loss).
  - :class:`SkipGramPaths` (--loss hs): each context word's vector against the nodes of its
    center's Huffman path (huffman.py), as the word2vec C tool's skip-gram does: a group is
    one row, its g "centers" are the row's contexts, its words the center's path nodes.
  - :class:`CbowNegatives` (--model cbow): the mean of a row's context vectors against its
    center (label 1) and --negatives noise words drawn per center (label 0).
  - :class:`CbowPaths` (--model cbow --loss hs): the mean of the contexts against the nodes
    of the center's path.
CBOW's input side is a mean: a part's ``center`` holds the ids of each row's contexts and
``mix`` their weights, 1 / n_ctx at real contexts and 0 at padding, so the mean is over a
row's real contexts only (model.input_vectors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

import numpy as np

from . import huffman, sampling
from .config import Config
from .examples import Rows

LOSS_LENGTHS = 16  # flat loss lengths a multi-part batch may take per padded shape
TRIM_PARTS = 3  # parts of a trimmed batch: fewer padded positions against more operator calls


@dataclass
class Part:
    """One part's numbers. center: (G * g,) int32 ids of the first table, or with ``mix``
    (G * g, C) int32 ids whose rows are mixed with the weights ``mix`` (G * g, C) float32
    (CBOW's mean of the contexts). words: (G, W) int32 ids of the second table; weight,
    label: (G, W, g) float32."""

    center: np.ndarray
    words: np.ndarray
    weight: np.ndarray
    label: np.ndarray
    mix: Optional[np.ndarray] = None

    @property
    def group(self) -> int:
        return self.weight.shape[2]


@dataclass
class Batch:
    """What a step trains on.

    center: (R, 1) int32, the parts' centers in order (R >= rows: a group's padding rows are
    id 0 with weight 0); with ``mix`` (R, 1, C) float32, center is (R, C) and each center
    vector is the mix of those C rows of the first table (the parts' C padded with weight 0).
    parts: (ids (G_p, W_p) int32, g_p) per part. weight, label: (M,) float32, every part's
    (G_p, W_p, g_p) positions flattened in order, then zeros. With more than one part,
    ``words`` (U,) int32 lists the distinct ids of all parts (sorted) and ``slots`` holds
    each part's ids as positions in it (``words[slots[p]] == parts[p][0]``), so the context
    table is looked up once a step.
    """

    center: np.ndarray
    parts: list
    weight: np.ndarray
    label: np.ndarray
    rows: int
    words: Optional[np.ndarray] = None
    slots: Optional[list] = None
    mix: Optional[np.ndarray] = None

    def arrays(self) -> list:
        """The numpy arrays a device needs, in model.batch_loss's order."""
        ids = [self.words] + self.slots if self.words is not None else [self.parts[0][0]]
        mix = [] if self.mix is None else [self.mix]
        return [self.center, self.weight, self.label, *ids, *mix]


def join(parts: list, rows: int) -> Batch:
    """One Batch of ``parts`` (Part each), ``rows`` real centers among them."""
    if parts[0].mix is None:
        center, mix = np.concatenate([p.center for p in parts])[:, None].astype(np.int32), None
    else:  # each part's contexts padded to the widest part's, with weight 0
        c = max(p.center.shape[1] for p in parts)
        center = np.concatenate([np.pad(p.center, ((0, 0), (0, c - p.center.shape[1])))
                                 for p in parts]).astype(np.int32)
        mix = np.concatenate([np.pad(p.mix, ((0, 0), (0, c - p.mix.shape[1])))
                              for p in parts])[:, None, :].astype(np.float32)
    batch = _join(parts, rows, center)
    batch.mix = mix
    return batch


def _join(parts: list, rows: int, center: np.ndarray) -> Batch:
    weight = np.concatenate([p.weight.ravel() for p in parts]).astype(np.float32)
    label = np.concatenate([p.label.ravel() for p in parts]).astype(np.float32)
    ids = [(p.words.astype(np.int32), p.group) for p in parts]
    if len(parts) == 1:
        return Batch(center, ids, weight, label, rows)
    # MXNet's MKLDNN kernels keep a primitive per input shape, never freed: the flat loss runs
    # on to the next multiple of 1/16 of the size padded to the widest part (a bound that
    # depends on the batch's shape only), so it sees at most 16 lengths per padded shape.
    padded = center.size * max(p.words.shape[1] for p in parts)
    quantum = -(-padded // LOSS_LENGTHS)
    tail = np.zeros(-(-weight.size // quantum) * quantum - weight.size, np.float32)
    flat = np.concatenate([w.ravel() for w, _ in ids])
    words, slots = np.unique(flat, return_inverse=True)
    ends = np.cumsum([w.size for w, _ in ids])
    slots = [slots[end - w.size:end].reshape(w.shape).astype(np.int32)
             for (w, _), end in zip(ids, ends)]
    return Batch(center, ids, np.concatenate([weight, tail]), np.concatenate([label, tail]),
                 rows, words.astype(np.int32), slots)


# --- groupings ---------------------------------------------------------------------------

class Padded:
    """One part: every row padded to the batch's longest, as the chapter builds batches."""

    def split(self, length: np.ndarray) -> list:
        """[(row indices (n,) int64, width)] for rows of ``length`` ((b,) int64)."""
        return [(np.arange(length.size), max(int(length.max()), 1))]


class Trimmed:
    """Rows sorted by length, cut into at most ``parts`` runs padded to their own longest."""

    def __init__(self, parts: int = TRIM_PARTS):
        self.parts = parts

    def split(self, length: np.ndarray) -> list:
        order = np.argsort(length, kind="stable")
        length = length[order]
        ends = np.flatnonzero(np.diff(length)).tolist() + [length.size - 1]
        out, start = [], 0
        for end in cheapest_cuts(length, ends, self.parts):
            out.append((order[start:end + 1], max(int(length[end]), 1)))
            start = end + 1
        return out


def cheapest_cuts(length: np.ndarray, ends: list, parts: int) -> list:
    """The runs' last rows: the subset of ``ends`` (ending with the last row) of at most
    ``parts`` cuts that minimizes the padded size sum(rows * longest) of the runs.
    ``length``: (b,) sorted. A dynamic program over the (at most 2 * window) distinct lengths.
    """
    m = len(ends)
    # best[p][j]: (cost, cuts) covering rows up to ends[j] with p + 1 runs
    best = [[((ends[j] + 1) * int(length[ends[j]]), [ends[j]]) for j in range(m)]]
    for _ in range(1, min(parts, m)):
        prev, row = best[-1], []
        for j in range(m):
            options = [(prev[i][0] + (ends[j] - ends[i]) * int(length[ends[j]]),
                        prev[i][1] + [ends[j]]) for i in range(j)]
            row.append(min(options, default=prev[j], key=lambda o: o[0]))
        best.append(row)
    return min((level[m - 1] for level in best), key=lambda o: (o[0], len(o[1])))[1]


# --- objectives --------------------------------------------------------------------------

class OwnNegatives:
    """Each row scores its contexts and its own noise words (drawn with the examples)."""

    def part(self, rows: Rows, idx: np.ndarray, width: int,
             rng: Optional[np.random.Generator] = None) -> Part:
        length = rows.length[idx]
        j = np.arange(width)[None, :]
        real = j < length[:, None]
        weight = real / np.maximum(length, 1)[:, None]
        label = j < rows.n_ctx[idx, None]
        return Part(rows.center[idx], rows.items[idx, :width], weight[:, :, None],
                    label[:, :, None])


class SharedNegatives:
    """Groups of ``group`` consecutive rows share ``size`` noise words (--noise-group).

    A context scores against its own center only; each noise word against every center of
    its group. A row's loss stays the mean over its n contexts and n * ``negatives`` noise
    words: the shared words stand in for those (minus any that are the row's own contexts,
    which the chapter would redraw).
    """

    def __init__(self, counts: np.ndarray, group: int, size: int, negatives: int):
        self.cdf = sampling.Inverse(np.cumsum(sampling.noise_distribution(counts)))
        self.group, self.size, self.negatives = group, size, negatives

    def part(self, rows: Rows, idx: np.ndarray, width: int,
             rng: Optional[np.random.Generator] = None) -> Part:
        groups = -(-idx.size // self.group)
        noise = sampling.draw(self.cdf, groups * self.size, rng).reshape(groups, self.size)
        return share(rows.center[idx], rows.items[idx, :width], rows.n_ctx[idx], noise,
                     self.negatives)


def share(center: np.ndarray, items: np.ndarray, n_ctx: np.ndarray, noise: np.ndarray,
          negatives: int) -> Part:
    """The shared-noise part of rows ``center`` (n,) with contexts ``items`` (n, C) (``n_ctx``
    each), in G groups of g consecutive rows, group i scoring ``noise[i]`` ((G, S) int32).

    Words of group i: its rows' C context slots each, then its S noise words: (G, g * C + S).
    The last group is filled with padding rows (id 0, weight 0).
    """
    groups, size = noise.shape
    n, width = items.shape
    g = -(-n // groups)
    pad = groups * g - n

    def padded(x):
        return np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x

    center, items, n_ctx = padded(center), padded(items), padded(n_ctx)
    mask = np.arange(width)[None, :] < n_ctx[:, None]  # (G * g, C)
    their_noise = np.repeat(noise, g, axis=0)  # (G * g, S)
    ok = ~(items[:, :, None] == their_noise[:, None, :]).any(axis=1)
    scale = np.where(n_ctx > 0, 1 / (np.maximum(n_ctx, 1) * (1 + negatives)), 0)
    per_noise = negatives * n_ctx / np.maximum(ok.sum(axis=1), 1) * scale  # (G * g,)
    weight = np.zeros((groups, g * width + size, g), np.float32)
    label = np.zeros_like(weight)
    # contexts: slot c of row j of a group is word p = j * C + c, scored against center j
    p = np.arange(g * width)
    weight[:, p, p // width] = (mask * scale[:, None]).reshape(groups, g * width)
    label[:, p, p // width] = mask.reshape(groups, g * width)
    # noise words: every one against every center of the group
    weight[:, g * width:] = (ok * per_noise[:, None]).reshape(groups, g, size).transpose(0, 2, 1)
    words = np.concatenate([items.reshape(groups, g * width), noise], axis=1)
    return Part(center, words.astype(np.int32), weight, label)


class SkipGramPaths:
    """Hierarchical softmax for skip-gram, as the word2vec C tool trains it: each context
    word's vector (first table) against the inner nodes of its center's Huffman path
    (second table), labelled 1 - code. A group is one row: its g "centers" are the row's
    context slots, its words the center's path. A row's loss is the sum over its contexts
    of -log p(center | context), each the sum over the path's nodes: every (context,
    center) pair weighs 1, as each is one step of the C tool's (and sgd.py's rate is per
    pair)."""

    def __init__(self, counts: np.ndarray):
        self.tree = huffman.build(counts)
        self.targets = self.tree.targets

    def part(self, rows: Rows, idx: np.ndarray, width: int,
             rng: Optional[np.random.Generator] = None) -> Part:
        center, n_ctx = rows.center[idx], rows.n_ctx[idx]
        depth = max(int(self.tree.length[center].max()), 1)
        on_path = np.arange(depth)[None, :] < self.tree.length[center][:, None]  # (G, D)
        real = np.arange(width)[None, :] < n_ctx[:, None]  # (G, g)
        weight = (on_path[:, :, None] & real[:, None, :]).astype(np.float32)
        label = np.broadcast_to(self.targets[center, :depth, None], weight.shape)
        return Part(rows.items[idx, :width].ravel(), self.tree.nodes[center, :depth],
                    weight, label)


def context_mean(rows: Rows, idx: np.ndarray, width: int) -> tuple:
    """CBOW's input: rows ``idx``'s contexts (n, width) int32 and the weights of their mean,
    (n, width) float32, 1 / n_ctx at a row's real contexts and 0 at its padding."""
    n_ctx = rows.n_ctx[idx]
    real = np.arange(width)[None, :] < n_ctx[:, None]
    return rows.items[idx, :width], real / np.maximum(n_ctx, 1)[:, None]


class CbowNegatives:
    """CBOW with negative sampling: the mean of a row's contexts against its center (label
    1) and ``negatives`` noise words drawn per center from the batch's generator (label 0),
    as the C tool and gensim draw per center for CBOW. A noise word equal to the center
    weighs 0 (the C tool skips it). A row's loss is the mean over its 1 + k positions."""

    def __init__(self, counts: np.ndarray, negatives: int):
        self.cdf = sampling.Inverse(np.cumsum(sampling.noise_distribution(counts)))
        self.negatives = negatives

    def part(self, rows: Rows, idx: np.ndarray, width: int,
             rng: Optional[np.random.Generator] = None) -> Part:
        center = rows.center[idx]
        k = self.negatives
        noise = sampling.draw(self.cdf, idx.size * k, rng).reshape(idx.size, k)
        words = np.concatenate([center[:, None], noise], axis=1)
        weight = np.concatenate([np.ones((idx.size, 1)), noise != center[:, None]], axis=1)
        label = np.zeros(words.shape, np.float32)
        label[:, 0] = 1
        ids, mix = context_mean(rows, idx, width)
        return Part(ids, words, (weight / (1 + k))[:, :, None], label[:, :, None], mix)


class CbowPaths:
    """CBOW with hierarchical softmax: the mean of a row's contexts against the inner nodes
    of its center's Huffman path, labelled 1 - code. A row's loss is -log p(center |
    contexts): the sum over the path's nodes."""

    def __init__(self, counts: np.ndarray):
        self.tree = huffman.build(counts)
        self.targets = self.tree.targets

    def part(self, rows: Rows, idx: np.ndarray, width: int,
             rng: Optional[np.random.Generator] = None) -> Part:
        center = rows.center[idx]
        depth = max(int(self.tree.length[center].max()), 1)
        weight = np.arange(depth)[None, :] < self.tree.length[center][:, None]
        ids, mix = context_mean(rows, idx, width)
        return Part(ids, self.tree.nodes[center, :depth], weight[:, :, None],
                    self.targets[center, :depth, None], mix)


# --- a grouping and an objective together ------------------------------------------------

class Layout:
    """Turns each step's Rows into a Batch: ``grouping`` splits the rows into parts,
    ``objective`` fills each part. ``seed``: (seed, rank) for the per-batch noise of
    shared negatives: batch i of epoch e draws from a generator seeded with
    (seed, rank, e, i), so a resumed run, which draws the epoch again, gets the same words.
    """

    def __init__(self, grouping, objective, seed: tuple = (0,)):
        self.grouping, self.objective, self.seed = grouping, objective, tuple(seed)

    def batch(self, rows: Rows, rng: Optional[np.random.Generator] = None) -> Batch:
        parts = [self.objective.part(rows, idx, width, rng)
                 for idx, width in self.grouping.split(rows.length)]
        return join(parts, len(rows))

    def epoch(self, epoch: int, steps: Iterable[Rows]) -> Iterator[Batch]:
        """The batches of ``steps``, the Rows of epoch ``epoch`` (1-based)."""
        for i, rows in enumerate(steps):
            yield self.batch(rows, np.random.default_rng([*self.seed, epoch, i]))


def layout_for(config: Config, counts: np.ndarray, n_devices: int, rank: int = 0) -> Layout:
    """The layout a run trains with. Several devices split a batch by groups, so they take
    one padded part; one device trims the chapter's batches (the same loss, less padding).
    Shared negatives keep one part a batch: trimming changes which rows share noise, and
    its quality is not measured."""
    seed = (config.seed, rank)
    if config.model == "cbow":  # one part: trimming by contexts leaves the words' width
        objective = CbowPaths(counts) if config.loss == "hs" else \
            CbowNegatives(counts, config.negatives)
        return Layout(Padded(), objective, seed)
    if config.loss == "hs":  # one part, one hybridized call a step: faster than trimming
        # by contexts into parts, whose gathers, slices and concatenation cost more than
        # the padding they save (PTB: 75,000-80,000 against 68,000-70,000 tokens/s)
        return Layout(Padded(), SkipGramPaths(counts), seed)
    if config.noise_group:
        objective = SharedNegatives(counts, config.noise_group, config.group_noise,
                                    config.negatives)
        return Layout(Padded(), objective, (config.seed, rank))
    grouping = Trimmed() if n_devices == 1 else Padded()
    return Layout(grouping, OwnNegatives(), (config.seed, rank))
