"""Peak memory of `prepare` on the same tokens written on one line and in 20-token lines.

    python benchmarks/prepare_memory.py [--tokens 2000000] [--chunk-tokens 1048576]

Prints the tracemalloc peak of each (what Python allocates, numpy arrays included) and their
ratio; issue 19 asks for the one-line peak within 1.5x of the 20-token-line one.
"""

from __future__ import annotations

import argparse
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np

from w2v_cli import dataset
from w2v_cli.config import Config


def write_corpus(path: Path, n_tokens: int, per_line: int, vocab: int = 10_000) -> None:
    """``n_tokens`` words of a ``vocab``-word vocabulary, ``per_line`` a line (0: one line)."""
    words = np.array([f"w{i}" for i in range(vocab)])
    picked = words[np.random.default_rng(0).integers(0, vocab, n_tokens)]
    step = per_line or n_tokens
    with open(path, "w") as f:
        for i in range(0, n_tokens, step):
            f.write(" ".join(picked[i:i + step]) + "\n")


def peak(corpus: Path, workdir: Path, chunk_tokens: int) -> int:
    config = Config(workdir=str(workdir), corpus=(str(corpus),), min_count=1,
                    chunk_tokens=chunk_tokens)
    tracemalloc.start()
    try:
        dataset.prepare(config)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(n_tokens: int = 2_000_000, chunk_tokens: int = 1 << 20) -> dict:
    """{"one_line": bytes, "lines_of_20": bytes, "ratio": one_line / lines_of_20}."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        out = {}
        for name, per_line in (("one_line", 0), ("lines_of_20", 20)):
            write_corpus(d / f"{name}.txt", n_tokens, per_line)
            out[name] = peak(d / f"{name}.txt", d / f"work-{name}", chunk_tokens)
    out["ratio"] = out["one_line"] / out["lines_of_20"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=2_000_000)
    ap.add_argument("--chunk-tokens", type=int, default=1 << 20)
    args = ap.parse_args()
    r = measure(args.tokens, args.chunk_tokens)
    print(f"prepare peak, {args.tokens:,} tokens, --chunk-tokens {args.chunk_tokens:,}: "
          f"one line {r['one_line'] / 2**20:.1f} MiB, 20-token lines "
          f"{r['lines_of_20'] / 2**20:.1f} MiB, ratio {r['ratio']:.2f}")


if __name__ == "__main__":
    main()
