"""Plots: the training loss curve (PNG) and a 2-D PCA map of words and their neighbours
(PNG, SVG or PDF, by the file's suffix).

matplotlib is an optional extra (``pip install 'w2v[plot]'``); without it these functions
raise MissingExtraError. Figures are built with the object API (``matplotlib.figure.Figure``),
not pyplot, so no global figure state is left behind, and no display is needed.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from . import fileio
from .errors import MissingExtraError, UsageError
from .vectors import Vectors

INSTALL_HINT = "install it with `pip install 'w2v[plot]'` (or `pip install matplotlib`)"


def require_matplotlib():
    """matplotlib's Figure class; MissingExtraError saying what to install when it is missing."""
    try:
        return importlib.import_module("matplotlib.figure").Figure
    except ImportError as e:
        raise MissingExtraError(f"plotting needs matplotlib, which cannot be imported ({e}); "
                                f"{INSTALL_HINT}") from None


FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}  # a plot file's suffix -> format


def plot_format(path: str | Path) -> str:
    """The format a plot is written in: by ``path``'s suffix (FORMATS), PNG for a name without
    one (``-``, a FIFO); UsageError for any other suffix, which would mislabel the file."""
    name = Path(path).name if str(path) != fileio.STDOUT else ""
    suffix = name[name.rfind("."):].lower() if "." in name else ""  # ".svg" and "a.svg." too
    if suffix and suffix not in FORMATS:
        raise UsageError(f"--output {path}: a plot is written as PNG, SVG or PDF, chosen by "
                         f"the suffix ({', '.join(FORMATS)}); {suffix} is none of them")
    return FORMATS.get(suffix, "png")


def _save(fig, path: Path) -> None:
    kind = plot_format(path)

    def write(tmp: Path) -> None:  # a full disk becomes a StorageError, the old file stays
        with open(tmp, "wb") as f:
            fig.savefig(f, format=kind, dpi=120)
    fileio.atomic_write(path, write)


def loss_curve(curve, path: str | Path, epochs: int | None = None, title: str = "",
               scores: dict | None = None, marked: int | None = None) -> Path:
    """Draw the running mean loss against training progress in epochs, as the d2l chapter's
    animator does. curve: sequence of [epoch_fraction, loss] pairs (epoch_fraction 0.5 is
    halfway through the first epoch). scores: {set name: [(epoch, score)]}, drawn in a
    second panel below, on the same epochs (quality.curves); marked: an epoch to mark in
    both (the one model.params holds). Returns the path written."""
    points = np.asarray(curve, dtype=np.float64).reshape(-1, 2)
    if len(points) == 0:
        raise UsageError("no loss values to plot (the run record has no curve)")
    Figure = require_matplotlib()
    fig = Figure(figsize=(6, 6.5) if scores else (6, 4))
    if scores:
        ax, below = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    else:
        ax, below = fig.add_subplot(), None
    # One line per epoch: the running mean restarts with each epoch, so joining the last
    # point of one epoch to the first of the next would draw a drop that never happened.
    epoch_of = np.ceil(points[:, 0] - 1e-9).astype(int)
    for e in np.unique(epoch_of):
        seg = points[epoch_of == e]
        ax.plot(seg[:, 0], seg[:, 1], marker=".", color="tab:blue")
    ax.set_ylabel("loss (running mean in each epoch)")
    ax.set_title(title or ("training loss, and the scores after each epoch" if scores
                           else "training loss"))
    ax.set_xlim(0, epochs or max(1.0, float(np.ceil(points[:, 0].max()))))
    ax.grid(True, alpha=0.3)
    if below is not None:
        for name, pairs in scores.items():
            xy = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
            below.plot(xy[:, 0], xy[:, 1], marker="o", label=name)
        below.set_ylabel("score (rho or accuracy)")
        below.grid(True, alpha=0.3)
        below.legend(loc="best", fontsize=8)
    for a in (ax, below):
        if a is not None and marked is not None:
            a.axvline(marked, color="gray", linestyle="--", linewidth=1)
    (below if below is not None else ax).set_xlabel(
        "epoch" + ("" if marked is None else f" (dashed: epoch {marked}, kept in model.params)"))
    fig.tight_layout()
    path = Path(path)
    _save(fig, path)
    return path


def pca_2d(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows onto their first two principal components.

    matrix: (n, E). Returns (coords (n, 2) float64, explained (2,) share of the variance);
    a missing component (n < 3 or rank 1) is zeros.
    """
    x = np.asarray(matrix, dtype=np.float64)
    x = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    coords = np.zeros((len(x), 2))
    explained = np.zeros(2)
    m = min(2, len(s))
    coords[:, :m] = u[:, :m] * s[:m]
    total = float((s ** 2).sum())
    if total > 0:
        explained[:m] = s[:m] ** 2 / total
    return coords, explained


def word_map(vectors: Vectors, words: list[str], k: int, path: str | Path) -> dict:
    """Plot ``words`` and their k nearest neighbours on the first two principal components of
    their unit vectors, each point labelled with its word.

    Returns {"words": the plotted words (queries first), "queries": how many of them are
    queries, "coords": (n, 2), "explained": (2,), "path": Path}.
    """
    if not words:
        raise UsageError("give at least one word to plot")
    Figure = require_matplotlib()
    query_ids = np.array([vectors.id_of(w) for w in words], dtype=np.int64)
    query_ids = query_ids[np.sort(np.unique(query_ids, return_index=True)[1])]
    top, _ = vectors.most_similar_ids(query_ids, k)
    flat = top.ravel()
    seen_first = flat[np.sort(np.unique(flat, return_index=True)[1])]  # unique, in order
    ids = np.concatenate([query_ids, seen_first[~np.isin(seen_first, query_ids)]])
    labels = [vectors.tokens[i] for i in ids]
    coords, explained = pca_2d(vectors.unit[ids])

    n_q = len(query_ids)
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    ax.scatter(coords[n_q:, 0], coords[n_q:, 1], color="tab:blue", s=18, label="neighbours")
    ax.scatter(coords[:n_q, 0], coords[:n_q, 1], color="tab:red", s=36, label="query words")
    for i, (label, (x, y)) in enumerate(zip(labels, coords)):
        ax.annotate(label, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=9,
                    color="tab:red" if i < n_q else "black",
                    fontweight="bold" if i < n_q else "normal")
    ax.set_xlabel(f"PC1 ({100 * explained[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * explained[1]:.0f}% of variance)")
    ax.set_title(f"{', '.join(labels[:n_q])} and {k} nearest neighbours each (PCA)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    _save(fig, path)
    return {"words": labels, "queries": n_q, "coords": coords, "explained": explained,
            "path": path}
