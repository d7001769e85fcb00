"""An in-memory oracle for `prepare`: what the streaming path must give, in plain Python.

Written independently of w2v_cli's code (a Counter and list comprehensions), so the tests
compare two ways of computing the same dataset rather than one way with itself.
"""

from __future__ import annotations

from collections import Counter

UNK = "<unk>"


def sentences_of(text: str) -> list[list[str]]:
    """Tokens per line; only \\n and \\r\\n end a line, and empty lines are no sentences."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return [s for s in (line.split() for line in lines) if s]


def reference(text: str, min_count: int, max_vocab: int = 0) -> dict:
    """{"tokens", "counts", "ids", "offsets"} as lists: <unk> at id 0, then the words seen at
    least ``min_count`` times by count (ties in order of first appearance), at most
    ``max_vocab`` of them; rare words (and any literal <unk>) dropped from the ids."""
    sents = sentences_of(text)
    counter = Counter(t for s in sents for t in s)  # keys in order of first appearance
    words = [w for w, c in counter.items() if c >= min_count and w != UNK]
    words.sort(key=lambda w: -counter[w])  # stable: first appearance among equal counts
    if max_vocab > 0:
        words = words[:max_vocab]
    index = {w: i + 1 for i, w in enumerate(words)}
    unk = sum(counter.values()) - sum(counter[w] for w in words)
    ids, offsets = [], [0]
    for s in sents:
        ids.extend(index[t] for t in s if t in index)
        offsets.append(len(ids))
    return {"tokens": [UNK] + words, "counts": [unk] + [counter[w] for w in words],
            "ids": ids, "offsets": offsets}
