"""Quality while training: score the vectors after every epoch, stop early, keep the best.

After each epoch the run scores its center table with ``evaluate.score``, which is what
``w2v evaluate --json`` prints, with its defaults (case folded, 3CosAdd), on the
``--eval-similarity`` and ``--eval-analogy`` sets. The sets are read once, before training
starts and before anything in the workdir changes, so a bad file stops nothing half done.

Where things live:

- The rows are part of the run record (``record["quality"]``), which every checkpoint saves:
  a resumed run carries on from its checkpoint's rows, best epoch and stop counter.
- ``metrics.jsonl`` mirrors those rows, one JSON object a line. It is rewritten whole and
  atomically (fileio) after each checkpoint rather than appended to: a crash leaves the old
  file or the new one, never part of a line, and never a row for an epoch that the
  checkpoints do not hold (a resume rewrites it from the checkpoint's rows). The file is a
  few hundred bytes an epoch, so rewriting it costs nothing.
- ``best.params``: when an epoch scores best so far (and the run keeps the best), a hard link
  to that epoch's parameters (a copy where links do not work), so pruning its checkpoint
  folder does not lose them. At the end ``model.params`` is linked to it, after ``run.json``
  records its SHA-1: a crash between the two leaves the last epoch's parameters, which a
  checkpoint still vouches for, not a file that fails its check.

The score followed (by ``--early-stop`` and ``--keep best``) is the first similarity set's
Spearman rho, else the first analogy set's overall accuracy; higher is better, an equal score
is no improvement, and "n/a" (fewer than 2 pairs or no question in the vocabulary) never is.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import evaluate, fileio
from .config import Config
from .errors import UsageError
from .evaluate import AnalogyQuestions, SimilarityPairs
from .params import PARAMS_FILE
from .vectors import MISSING, Vectors

METRICS_FILE = "metrics.jsonl"
BEST_FILE = "best.params"


def keep_of(config: Config) -> str:
    """Which epoch model.params holds at the end: ``best`` or ``last`` (the default follows
    --early-stop)."""
    return config.keep or ("best" if config.early_stop else "last")


@dataclass
class EvalSets:
    """The test sets, read and checked: similarity pairs and analogy questions, in the order
    given. Each is keyed by its path as given, which is also its ``file`` in the scores."""

    similarity: list[SimilarityPairs]
    analogy: list[AnalogyQuestions]

    @classmethod
    def read(cls, config: Config) -> EvalSets:
        """Read every set of ``config``; DataError for one that is missing or malformed."""
        return cls([evaluate.read_similarity(p) for p in config.eval_similarity],
                   [evaluate.read_analogies(p) for p in config.eval_analogy])

    def __bool__(self) -> bool:
        return bool(self.similarity or self.analogy)

    def check_followed(self, config: Config, vocab) -> None:
        """UsageError when --early-stop or --keep best would follow a set of which nothing
        can be scored with ``vocab`` (fewer than 2 pairs, or no question, with every word in
        it): its score would be n/a after every epoch, so nothing could improve."""
        option = ("--early-stop" if config.early_stop else
                  "--keep best" if keep_of(config) == "best" else None)
        if not self or option is None:
            return
        probe = Vectors(vocab, np.ones((len(vocab), 1), dtype=np.float32))
        if self.similarity:
            first = self.similarity[0]
            found = [probe.find_all(words, fold_case=True) != MISSING
                     for words in (first.words1, first.words2)]
            usable, what = int((found[0] & found[1]).sum()) >= 2, "2 pairs"
        else:
            first = self.analogy[0]
            ids = probe.find_all([w for row in first.words for w in row], fold_case=True)
            usable, what = bool((ids.reshape(-1, 4) != MISSING).all(axis=1).any()), "a question"
        if not usable:
            raise UsageError(f"{option} follows {first.path}, which has not {what} with every "
                             "word in the vocabulary: its score cannot change; give a set "
                             "that fits this corpus first")

    @property
    def followed(self) -> Optional[str]:
        """The set whose score decides the best epoch and the early stop."""
        first = (self.similarity or self.analogy or [None])[0]
        return first.path if first else None


def headline(result: dict) -> Optional[float]:
    """One number for a set's result: rho for similarity, overall accuracy for analogies."""
    return result["rho"] if "rho" in result else result["overall"]["accuracy"]


class Monitor:
    """Scores a run (train.Run) after each epoch and keeps its quality state in the run record.

    ``on_scores(row, quality)``: called after each epoch's row is saved, for the CLI to print.
    """

    def __init__(self, config: Config, sets: EvalSets,
                 on_scores: Optional[Callable[[dict, dict], None]] = None):
        self.config, self.sets, self.on_scores = config, sets, on_scores
        self.keep = keep_of(config)

    # -- hooks of the training loop --

    def after_epoch(self, run, epoch: int, done: dict) -> bool:
        """Score the center table after ``epoch`` (its record line ``done``); add the row to
        the run record. Returns True when training should stop here (early stop)."""
        if not self.sets:
            return False
        start = time.perf_counter()
        vectors = Vectors(run.ds.vocab, run.center_table())
        scores = evaluate.score(vectors, self.sets.similarity, self.sets.analogy)
        seconds = time.perf_counter() - start
        row = {"epoch": epoch, "step": sum(e["batches"] for e in run.record["epochs"]),
               "loss": done["loss"],
               "scores": {r["file"]: headline(r) for r in scores["similarity"] + scores["analogy"]},
               "eval_seconds": round(seconds, 3), "train_seconds": done["seconds"],
               "similarity": {r["file"]: r for r in scores["similarity"]},
               "analogy": {r["file"]: r for r in scores["analogy"]}}
        q = run.record.setdefault("quality", {})
        q.pop("stopped", None)  # a resumed early-stopped run goes on
        if q.get("followed") != self.sets.followed:  # a new run, or other sets on resume
            q.update(followed=self.sets.followed, since=epoch - 1, best=None)
        q["rows"] = [r for r in q.get("rows", []) if r["epoch"] < epoch] + [row]
        value, best = row["scores"][self.sets.followed], q["best"]
        if value is not None and (best is None or value > best["score"]):
            q["best"] = best = {"epoch": epoch, "score": value}
        n = self.config.early_stop
        flat = epoch - (best["epoch"] if best else q["since"])
        if n and flat >= n and epoch < self.config.epochs:
            q["stopped"] = {"epoch": epoch, "flat": flat}
            return True
        return False

    def saved(self, run, epoch: int) -> None:
        """After ``epoch``'s checkpoint: rewrite metrics.jsonl, link best.params, report."""
        workdir = run.config.workdir_path
        q = run.record.get("quality") or {}
        rows = q.get("rows", [])
        if rows:
            fileio.write_bytes(workdir / METRICS_FILE, "".join(
                json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))
        else:  # a previous run's, now that this run's first checkpoint replaced its own
            (workdir / METRICS_FILE).unlink(missing_ok=True)
        best = q.get("best") if self.keep == "best" else None
        if best is None:
            (workdir / BEST_FILE).unlink(missing_ok=True)
        elif best["epoch"] == epoch:  # model.params: this epoch's checkpoint, just saved
            fileio.link_or_copy(workdir / PARAMS_FILE, workdir / BEST_FILE)
        if self.on_scores and rows and rows[-1]["epoch"] == epoch:
            self.on_scores(rows[-1], q)

    def resumed(self, run) -> None:
        """A crash right after the best epoch's checkpoint can leave best.params behind it:
        that checkpoint is then the one resumed from, so link it again."""
        best = (run.record.get("quality") or {}).get("best")
        pos = run.pos
        if self.keep == "best" and best and best["epoch"] == pos.epoch and not pos.batch:
            fileio.link_or_copy(pos.path / PARAMS_FILE, run.config.workdir_path / BEST_FILE)

    def finish(self, run, record: dict) -> None:
        """Before run.json is written: the epoch model.params will hold (``quality.kept``)
        and, when that is the best epoch's, its SHA-1 for run.json."""
        q = record.get("quality")
        if not q:
            return
        last = record["epochs"][-1]["epoch"]
        best = q.get("best") if self.keep == "best" else None
        path = run.config.workdir_path / BEST_FILE
        if best and best["epoch"] != last and not path.is_file():
            best = None  # removed by hand: the last epoch's parameters are all there is
        q["kept"] = {"epoch": best["epoch"] if best else last, "why": "best" if best else "last"}
        if best and best["epoch"] != last:
            record["params_sha1"] = fileio.sha1_of(path)

    def finished(self, run, record: dict) -> None:
        """After run.json is written: link model.params to the best epoch's parameters. In
        this order a crash between the two leaves the last epoch's, which a checkpoint still
        vouches for, rather than parameters that fail run.json's SHA-1 check."""
        kept = (record.get("quality") or {}).get("kept")
        if kept and kept["epoch"] != record["epochs"][-1]["epoch"]:
            workdir = run.config.workdir_path
            fileio.link_or_copy(workdir / BEST_FILE, workdir / PARAMS_FILE)


# -- text for the CLI and curves for the plot ----------------------------------------------

def format_row(row: dict, epochs: int) -> list[str]:
    """One line per set of a metrics row, as the CLI prints them on stderr."""
    lines = []
    for file, r in row["similarity"].items():
        rho = "n/a" if r["rho"] is None else f"{r['rho']:.4f}"
        lines.append(f"epoch {row['epoch']}/{epochs}  {Path(file).name}: Spearman rho {rho} "
                     f"over {r['pairs']}/{r['total']} pairs")
    for file, r in row["analogy"].items():
        o = r["overall"]
        acc = "n/a" if o["accuracy"] is None else f"{100 * o['accuracy']:.2f}%"
        lines.append(f"epoch {row['epoch']}/{epochs}  {Path(file).name}: analogy accuracy {acc} "
                     f"({o['correct']}/{o['questions']} of {o['total']} questions, "
                     f"3Cos{r['method'].capitalize()})")
    lines[-1] += f"  ({row['eval_seconds']:.2f} s)"
    return lines


def summary(record: dict) -> list[str]:
    """What the run's quality came to: the early stop and the epoch model.params holds."""
    q = record.get("quality")
    if not q or not q.get("rows"):
        return []
    best, kept = q.get("best"), q.get("kept", {})
    name = Path(q["followed"]).name
    lines = []
    if q.get("stopped"):
        s = q["stopped"]
        lines.append(f"stopped early after epoch {s['epoch']}/{record['config']['epochs']}: "
                     f"{name} has not improved for {s['flat']} epoch" + "s" * (s["flat"] != 1))
    if best:
        lines.append(f"best {name} score {best['score']:.4f} at epoch {best['epoch']}; "
                     f"model.params holds epoch {kept.get('epoch')} ({kept.get('why')})")
    return lines


def curves(record: dict) -> dict[str, list[tuple[int, float]]]:
    """Each set's scores by epoch, for the plot: {file name: [(epoch, score)]}, n/a left out."""
    out: dict[str, list[tuple[int, float]]] = {}
    for row in (record.get("quality") or {}).get("rows", []):
        for file, value in row["scores"].items():
            if value is not None:
                out.setdefault(Path(file).name, []).append((row["epoch"], value))
    return out
