"""Intrinsic evaluation: word similarity (Spearman rho) and analogies (accuracy per section).

Both read the usual public formats. Similarity files (WordSim-353, SimLex-999, MEN) hold
``word1 word2 ... score`` lines, tab- or space-separated, ``#`` comments; analogy files are
the Google ``questions-words.txt`` format, ``: section`` headers then ``a b c d`` lines.
A pair or question with a word outside the vocabulary is skipped and counted, not guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError
from .vectors import MISSING, Vectors

# ---- Spearman -------------------------------------------------------------------------------

def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of x, ties given the mean of the ranks they span. x: (n,). Returns (n,) float64."""
    x = np.asarray(x)
    order = np.argsort(x, kind="stable")
    _, inverse, counts = np.unique(x[order], return_inverse=True, return_counts=True)
    # the tie group g spans sorted positions start[g] .. start[g] + counts[g] - 1 (0-based)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    mean_rank = start + (counts + 1) / 2.0
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = mean_rank[inverse]
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho with ties: the Pearson correlation of the tie-averaged ranks.

    x, y: (n,) with n >= 2. NaN when either side is constant.
    """
    rx, ry = rankdata(x), rankdata(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denom = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


# ---- similarity -----------------------------------------------------------------------------

@dataclass
class SimilarityPairs:
    """Word pairs with human scores. words1, words2: n strings; scores: (n,) float64."""

    path: str
    words1: list[str]
    words2: list[str]
    scores: np.ndarray


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_similarity(path: str | Path) -> SimilarityPairs:
    """Read ``word1 word2 score`` lines. The score is the first number after the two words, so
    SimLex-999 (``word1 word2 POS SimLex999 ...``) reads as it is. Blank lines and ``#``
    comments are skipped, and so is a first line with no number (a column header)."""
    path = Path(path)
    lines = _read_lines(path)
    w1, w2, scores = [], [], []
    seen_data = False
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split()
        field, score = next(((f, v) for f in fields[2:] if (v := _number(f)) is not None),
                            ("", None))
        if score is None or len(fields) < 3:
            if not seen_data:  # a header such as "word1 word2 SimLex999"
                seen_data = True
                continue
            raise DataError(f"{path}:{number}: expected `word1 word2 score`, got {text!r}")
        seen_data = True
        if not np.isfinite(score):
            raise DataError(f"{path}:{number}: the score must be a finite number, got {field!r}")
        w1.append(fields[0])
        w2.append(fields[1])
        scores.append(score)
    if not scores:
        raise DataError(f"{path} holds no `word1 word2 score` lines")
    return SimilarityPairs(str(path), w1, w2, np.array(scores, dtype=np.float64))


def evaluate_similarity(vectors: Vectors, pairs: SimilarityPairs, fold_case: bool = True) -> dict:
    """Spearman rho between human scores and cosine similarity over the pairs in vocabulary.

    Returns {"file", "rho", "pairs" (used), "skipped" (out of vocabulary), "total"}; rho is
    None when fewer than 2 pairs are usable.
    """
    i1 = vectors.find_all(pairs.words1, fold_case)
    i2 = vectors.find_all(pairs.words2, fold_case)
    ok = (i1 != MISSING) & (i2 != MISSING)
    cosines = (vectors.unit[i1[ok]] * vectors.unit[i2[ok]]).sum(axis=1)
    used = int(ok.sum())
    rho = spearman(pairs.scores[ok], cosines) if used >= 2 else None
    if rho is not None and np.isnan(rho):
        rho = None
    return {"file": pairs.path, "rho": rho, "pairs": used, "skipped": len(ok) - used,
            "total": len(ok)}


# ---- analogies ------------------------------------------------------------------------------

NO_SECTION = "(no section)"


@dataclass
class AnalogyQuestions:
    """Questions a:b :: c:d. words: (n, 4) strings in a list of 4-lists; section: (n,) int
    index into ``sections``."""

    path: str
    sections: list[str] = field(default_factory=list)
    words: list[list[str]] = field(default_factory=list)
    section: list[int] = field(default_factory=list)


def read_analogies(path: str | Path) -> AnalogyQuestions:
    """Read the Google analogy format: ``: name`` starts a section, then ``a b c d`` lines."""
    path = Path(path)
    q = AnalogyQuestions(str(path))
    current = None
    for number, line in enumerate(_read_lines(path), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith(":"):
            q.sections.append(text[1:].strip() or f"section {len(q.sections) + 1}")
            current = len(q.sections) - 1
            continue
        fields = text.split()
        if len(fields) != 4:
            raise DataError(f"{path}:{number}: expected 4 words `a b c d`, got {text!r}")
        if current is None:
            q.sections.append(NO_SECTION)
            current = len(q.sections) - 1
        q.words.append(fields)
        q.section.append(current)
    if not q.words:
        raise DataError(f"{path} holds no `a b c d` questions")
    return q


def evaluate_analogies(vectors: Vectors, questions: AnalogyQuestions, fold_case: bool = True,
                       method: str = "add") -> dict:
    """Top-1 accuracy of b - a + c (or 3CosMul) = d, per section and overall.

    A question counts only when all four words are in the vocabulary; ``coverage`` is the
    share of questions that counted. The whole set is scored in chunked matrix products.
    Returns {"file", "method", "sections": [{"section", "correct", "questions", "total",
    "accuracy", "coverage"}], "overall": {...same keys but section}}.
    """
    ids = vectors.find_all([w for row in questions.words for w in row], fold_case).reshape(-1, 4)
    section = np.array(questions.section, dtype=np.int64)
    ok = (ids != MISSING).all(axis=1)
    correct = np.zeros(len(ids), dtype=bool)
    if ok.any():
        a, b, c, d = ids[ok].T
        top, _ = vectors.analogy_ids(a, b, c, k=1, method=method)
        correct[ok] = top[:, 0] == d
    n_sections = len(questions.sections)
    per = {name: np.bincount(section, weights=w, minlength=n_sections).astype(np.int64)
           for name, w in (("correct", correct), ("questions", ok), ("total", None))}

    def summary(right: int, used: int, total: int) -> dict:
        return {"correct": right, "questions": used, "total": total,
                "accuracy": right / used if used else None,
                "coverage": used / total if total else None}

    sections = [{"section": name, **summary(int(per["correct"][s]), int(per["questions"][s]),
                                            int(per["total"][s]))}
                for s, name in enumerate(questions.sections)]
    overall = summary(int(correct.sum()), int(ok.sum()), len(ok))
    return {"file": questions.path, "method": method, "sections": sections, "overall": overall}


# ---- both -----------------------------------------------------------------------------------

def score(vectors: Vectors, similarity=(), analogy=(), method: str = "add",
          fold_case: bool = True) -> dict:
    """Every score ``w2v evaluate --json`` prints, as the dict it prints.

    similarity, analogy: paths, or sets already read (``read_similarity``,
    ``read_analogies``), so a caller scoring after every epoch reads its files once.
    Returns {**vectors.source, "similarity": [evaluate_similarity results],
    "analogy": [evaluate_analogies results]}, the sets in the order given.
    """
    pairs = [p if isinstance(p, SimilarityPairs) else read_similarity(p) for p in similarity]
    questions = [q if isinstance(q, AnalogyQuestions) else read_analogies(q) for q in analogy]
    return {**vectors.source,
            "similarity": [evaluate_similarity(vectors, p, fold_case) for p in pairs],
            "analogy": [evaluate_analogies(vectors, q, fold_case, method) for q in questions]}


# ---- text report ----------------------------------------------------------------------------

def format_similarity(result: dict) -> str:
    rho = "n/a" if result["rho"] is None else f"{result['rho']:.3f}"
    return (f"{result['file']}: Spearman rho {rho} over {result['pairs']} pairs "
            f"({result['skipped']} of {result['total']} skipped: out of vocabulary)")


def format_analogies(result: dict) -> list[str]:
    rows = [(s["section"], s) for s in result["sections"]] + [("overall", result["overall"])]
    width = max(len(name) for name, _ in rows)
    lines = [f"{result['file']}: analogy accuracy (3Cos{result['method'].capitalize()})"]
    for name, s in rows:
        acc = "   n/a" if s["accuracy"] is None else f"{100 * s['accuracy']:5.1f}%"
        lines.append(f"  {name:<{width}}  {acc}  {s['correct']:>5}/{s['questions']:<5}  "
                     f"coverage {s['questions']}/{s['total']}")
    return lines


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path} cannot be read: {e}") from None
