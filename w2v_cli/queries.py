"""Many ``similar`` and ``analogy`` queries against one loaded model.

Each answer is a plain dict, the same one ``--json`` prints: a query with a word outside the
vocabulary becomes ``{"query": ..., "error": ...}`` so that the other queries still get
their answers. The queries that can be answered are scored together in one batch.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError, W2VError
from .vectors import Vectors


def _error(query, e: W2VError) -> dict:
    return {"query": query, "error": str(e), "exit_code": e.exit_code}


def _resolve(vectors: Vectors, queries: list, words_of, width: int) -> tuple[list, np.ndarray]:
    """Ids of each query's words. Returns (per query: an error dict or None,
    (answerable, width) int64 ids of the answerable queries, in order)."""
    errors, ok_ids = [], []
    for q in queries:
        try:
            ok_ids.append([vectors.id_of(w) for w in words_of(q)])
            errors.append(None)
        except W2VError as e:
            errors.append(_error(q, e))
    return errors, np.array(ok_ids, dtype=np.int64).reshape(-1, width)


def _merge(vectors, queries, errors, top, scores, answer) -> list[dict]:
    """The answers in query order: error dicts where lookups failed, else answer(query, hits)."""
    out, row = [], 0
    for query, err in zip(queries, errors):
        if err is not None:
            out.append(err)
            continue
        out.append(answer(query, [{"word": vectors.tokens[j], "score": round(float(s), 6)}
                                  for j, s in zip(top[row], scores[row])]))
        row += 1
    return out


def similar(vectors: Vectors, words: list[str], k: int) -> list[dict]:
    """Nearest neighbours of each word: [{"query": word, "neighbors": [{"word", "score"}]}]
    in query order, scores being cosine similarities, best first."""
    vectors.check_k(k, excluded=1)
    errors, ids = _resolve(vectors, words, lambda w: [w], width=1)
    top, sims = vectors.most_similar_ids(ids[:, 0], k)
    return _merge(vectors, words, errors, top, sims,
                  lambda word, hits: {"query": word, "neighbors": hits})


def _three(query: list[str]) -> list[str]:
    if len(query) != 3:
        raise UsageError(f"an analogy needs 3 words A B C, got {len(query)}: "
                         f"{' '.join(query)!r}")
    return query


def analogies(vectors: Vectors, triples: list, k: int, method: str = "add") -> list[dict]:
    """Answers to "a is to b as c is to ?" for each [a, b, c]: [{"query": [a, b, c],
    "method": method, "answers": [{"word", "score"}]}], best first."""
    triples = [list(t) for t in triples]
    errors, ids = _resolve(vectors, triples, _three, width=3)
    top, scores = vectors.analogy_ids(ids[:, 0], ids[:, 1], ids[:, 2], k=k, method=method)
    return _merge(vectors, triples, errors, top, scores,
                  lambda query, hits: {"query": query, "method": method, "answers": hits})


def format_similar(result: dict, header: bool) -> list[str]:
    """Text lines for one ``similar`` answer (not for errors)."""
    lines = [f"{result['query']}:"] if header else []
    return lines + [f"cosine sim={h['score']:.3f}: {h['word']}" for h in result["neighbors"]]


def format_analogy(result: dict, header: bool) -> list[str]:
    """Text lines for one ``analogy`` answer (not for errors)."""
    a, b, c = result["query"]
    label = "cosine sim" if result["method"] == "add" else "3cosmul"
    lines = [f"{a} : {b} :: {c} : ?"] if header else []
    return lines + [f"{label}={h['score']:.3f}: {h['word']}" for h in result["answers"]]
