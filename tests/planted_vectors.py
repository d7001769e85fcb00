"""Hand-made vectors whose neighbours and analogies are known exactly.

Axes: (royal, male, female, fruit, young). king - man + woman lands on queen by construction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from w2v_cli.vectors import Vectors
from w2v_cli.vocab import Vocab

TOKENS = ["<unk>", "king", "queen", "man", "woman", "prince", "princess", "apple", "pear"]
MATRIX = np.array([
    [0, 0, 0, 0, 0],      # <unk>
    [1, 1, 0, 0, 0],      # king
    [1, 0, 1, 0, 0],      # queen
    [0, 1, 0, 0, 0],      # man
    [0, 0, 1, 0, 0],      # woman
    [1, 1, 0, 0, 1],      # prince
    [1, 0, 1, 0, 1],      # princess
    [0, 0, 0, 1, 0],      # apple
    [0, 0, 0, 1, 0.5],    # pear
], dtype=np.float32)


def planted_vocab() -> Vocab:
    return Vocab(TOKENS, np.array([0, 80, 70, 60, 50, 40, 30, 20, 10]), {"min_count": 1})


def planted_vectors() -> Vectors:
    return Vectors(planted_vocab(), MATRIX)


def write_model(workdir: Path, vocab: Vocab, center: np.ndarray, context=None) -> None:
    """A workdir holding vocab.json and model.params with the given (V, E) tables, as if trained."""
    from w2v_cli.backend import mxnet
    from w2v_cli.model import CENTER_KEY, CONTEXT_KEY

    mx = mxnet()  # numpy mode, as training saves the parameters

    workdir.mkdir(parents=True, exist_ok=True)
    vocab.save(workdir / "vocab.json")
    context = np.zeros_like(center) if context is None else context
    mx.nd.save(str(workdir / "model.params"),
               {CENTER_KEY: mx.nd.array(center), CONTEXT_KEY: mx.nd.array(context)})
