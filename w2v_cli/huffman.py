"""The Huffman tree of hierarchical softmax, built from the vocabulary counts.

Built the way the word2vec C tool builds it (``CreateBinaryTree``), so the same counts give
the same tree, and no file is needed: the vocabulary is enough.

- The leaves are the real words (ids 1..V-1; ``<unk>``, id 0, is dropped from training and
  left out), taken in the C tool's vocabulary order: count descending, ties by id.
- Two queues: the leaves from the least frequent up, and the inner nodes in the order they
  were made. Each merge takes the two smallest nodes; a leaf is taken before an inner node
  only when its count is strictly smaller (so ties go to the inner node, as in the C tool).
- Inner node ``i`` is the ``i``-th merge: 0..V-3, the root is the last one, V-3. They are
  rows of the second embedding table.
- Code bits: the second node of a merge (the larger) gets bit 1, the first bit 0. A word's
  path runs from the root down: ``nodes[w, d]`` is the inner node at depth d and
  ``codes[w, d]`` the bit of the branch taken from it.
- The C tool trains ``sigmoid(u_node . v)`` towards ``1 - code`` (its gradient is
  ``1 - code - sigmoid(f)``), so :attr:`Tree.targets` holds ``1 - code``: the label of each
  node of the path in the SigmoidBCELoss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DataError


@dataclass
class Tree:
    """Each word's path from the root.

    nodes: (V, D) int32 inner-node ids (0 past a path's end); codes: (V, D) float32 bits (0
    past the end); length: (V,) int64 nodes on each path (0 for ``<unk>``). D: the longest.
    """

    nodes: np.ndarray
    codes: np.ndarray
    length: np.ndarray

    @property
    def targets(self) -> np.ndarray:
        """(V, D) float32: the label of each path node, 1 - code (0 past the end)."""
        real = np.arange(self.nodes.shape[1])[None, :] < self.length[:, None]
        return np.where(real, 1 - self.codes, 0).astype(np.float32)


def build(counts: np.ndarray) -> Tree:
    """The tree of ``counts`` ((V,) int64 by id, V >= 3: at least two real words)."""
    counts = np.asarray(counts, dtype=np.int64)
    n = counts.size - 1  # leaves: every word but <unk>
    if n < 2:
        raise DataError("hierarchical softmax needs at least two words in the vocabulary")
    # order[r]: the id of the word of rank r, most frequent first; leaf r of the C tool.
    order = 1 + np.lexsort((np.arange(n), -counts[1:]))
    count = np.concatenate([counts[order], np.zeros(n - 1, np.int64)])
    parent = np.zeros(2 * n - 1, np.int64)
    bit = np.zeros(2 * n - 1, np.int8)
    leaf, inner = n - 1, n  # the two queues' heads: leaves up from the rarest, inner nodes
    for a in range(n - 1):  # one merge per inner node: O(V), no heap needed
        pair = []
        for _ in range(2):
            if leaf >= 0 and (inner >= n + a or count[leaf] < count[inner]):
                pair.append(leaf)
                leaf -= 1
            else:
                pair.append(inner)
                inner += 1
        count[n + a] = count[pair[0]] + count[pair[1]]
        parent[pair] = n + a
        bit[pair[1]] = 1
    return _paths(order, parent, bit, n)


def _paths(order: np.ndarray, parent: np.ndarray, bit: np.ndarray, n: int) -> Tree:
    """Walk every leaf up to the root at once (one numpy step per level), then store the
    paths root first, by word id."""
    root = 2 * n - 2
    up_nodes, up_bits = [], []
    at = np.arange(n)
    length = np.zeros(n, np.int64)
    live = np.ones(n, bool)
    while live.any():
        up_bits.append(np.where(live, bit[at], 0))
        at = np.where(live, parent[at], root)
        up_nodes.append(np.where(live, at - n, 0))
        length += live
        live &= at != root
    up_nodes, up_bits = np.stack(up_nodes, 1), np.stack(up_bits, 1)  # (n, D), leaf first
    d = np.arange(up_nodes.shape[1])[None, :]
    src = np.clip(length[:, None] - 1 - d, 0, None)  # each row's first length[i] reversed
    real = d < length[:, None]
    v = n + 1
    nodes = np.zeros((v, up_nodes.shape[1]), np.int32)
    codes = np.zeros((v, up_nodes.shape[1]), np.float32)
    nodes[order] = np.where(real, np.take_along_axis(up_nodes, src, 1), 0)
    codes[order] = np.where(real, np.take_along_axis(up_bits, src, 1), 0)
    lengths = np.zeros(v, np.int64)
    lengths[order] = length
    return Tree(nodes, codes, lengths)
