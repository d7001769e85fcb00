"""Plots: the training loss curve (PNG) and a 2-D PCA map of words and their neighbours
(PNG, SVG or PDF, by the file's suffix).

matplotlib is an optional extra (``pip install 'w2v[plot]'``); without it these functions
raise MissingExtraError. Figures are built with the object API (``matplotlib.figure.Figure``),
not pyplot, so no global figure state is left behind, and no display is needed.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from . import fileio
from .errors import MissingExtraError, UsageError, W2VError
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


class InlinePlotter:
    """Draws the loss curve in this process (matplotlib imported on first use)."""

    def loss_curve(self, **request) -> Path:
        """:func:`loss_curve` with these keyword arguments; W2VError on failure."""
        return loss_curve(**request)

    def close(self) -> None:
        pass


class PlotProcess:
    """Draws the loss curve in a child process started before training.

    Importing matplotlib costs about a second; started before MXNet is imported, the child
    spends it on the other core. It then waits on its stdin for one request (the keyword
    arguments of :func:`loss_curve`, as JSON), draws, answers one JSON line on stdout
    (``{"path": ...}`` or ``{"error": ..., "missing_extra": bool}``) and exits. It runs in
    its own session, so a Ctrl-C meant for training never reaches it; when this process
    ends without asking (an error, a signal, SIGKILL) its stdin closes and it exits.
    """

    TIMEOUT = 120.0  # seconds to wait for a drawing before giving up on it

    def __init__(self, python: str = sys.executable, env: dict | None = None):
        self._proc = subprocess.Popen(
            [python, "-m", "w2v_cli.plots"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, env=env, start_new_session=True)

    def loss_curve(self, **request) -> Path:
        """Have the child draw :func:`loss_curve` with these keyword arguments (``path`` as
        text); returns its path, or raises MissingExtraError / W2VError saying why not."""
        request = {**request, "path": str(request["path"])}
        try:
            out = self._proc.communicate(json.dumps(request), timeout=self.TIMEOUT)[0]
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            raise W2VError(f"the plotting process gave no answer in {self.TIMEOUT:.0f} s") \
                from None
        except OSError:  # it ended before reading the request
            out = ""
        lines = out.strip().splitlines()
        try:
            answer = json.loads(lines[-1]) if lines else {}
        except ValueError:
            answer = {}
        if "path" in answer:
            return Path(answer["path"])
        if "error" in answer:
            kind = MissingExtraError if answer.get("missing_extra") else W2VError
            raise kind(answer["error"])
        # The child broke down (it could not import w2v_cli, it crashed): draw it here.
        return loss_curve(**{**request, "path": Path(request["path"])})

    def close(self) -> None:
        """End the child if it is still waiting (closing its stdin ends it)."""
        proc = self._proc
        if proc.poll() is None:
            try:
                proc.communicate(timeout=5)  # EOF on its stdin: it exits without drawing
            except (subprocess.TimeoutExpired, OSError, ValueError):
                proc.kill()
                proc.wait()


def loss_plotter(*, in_child: bool):
    """A PlotProcess when ``in_child`` (start it before importing MXNet), else an
    InlinePlotter (also when no process can be started). Either way:
    ``.loss_curve(**kwargs)``, then ``.close()``."""
    if in_child:
        try:
            return PlotProcess()
        except OSError:  # no interpreter to start, no processes left: draw here
            pass
    return InlinePlotter()


def _serve() -> None:
    """The child of PlotProcess: import matplotlib, draw the one request read from stdin."""
    try:
        require_matplotlib()
        failure = None
    except MissingExtraError as e:
        failure = e
    text = sys.stdin.read()
    if not text.strip():  # the parent ended without asking
        return
    try:
        if failure:
            raise failure
        answer = {"path": str(loss_curve(**json.loads(text)))}
    except W2VError as e:
        answer = {"error": str(e), "missing_extra": isinstance(e, MissingExtraError)}
    except Exception as e:  # noqa: BLE001 - the parent reports it; no traceback here
        answer = {"error": f"{type(e).__name__}: {e}", "missing_extra": False}
    sys.stdout.write(json.dumps(answer) + "\n")


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


if __name__ == "__main__":
    _serve()
