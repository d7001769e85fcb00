"""`make bench`'s distributed line (issue 22): 2 workers and 1 server on loopback, one epoch
with --subsample 0, on PTB's vocabulary and on a synthetic 200,000-word one.

Each worker's tokens/sec comes from its run record; the bytes a step moves from the distinct
rows it read (``rows_per_step`` in the record: each pulled before the step and pushed back as
gradient, E float32 and an int64 id a row) against what dense tables move (both whole tables
each way). bench.py calls :func:`run` and prints :func:`table`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

SYNTHETIC_WORDS = 200_000
SYNTHETIC_TOKENS = 600_000
SENTENCE = 20
EMBED = 100  # w2v's default --embed-size, which the runs keep
ID_BYTES = 8  # row ids travel as int64


def synthetic_corpus(path: Path, words: int = SYNTHETIC_WORDS, tokens: int = SYNTHETIC_TOKENS,
                     seed: int = 0) -> None:
    """A Zipf-like corpus in which every one of ``words`` words appears: each word once, the
    rest drawn with probability ~ 1 / rank, shuffled, in sentences of SENTENCE words."""
    rng = np.random.default_rng(seed)
    weight = 1.0 / np.arange(1, words + 1)
    drawn = rng.choice(words, size=tokens - words, p=weight / weight.sum())
    ids = rng.permutation(np.concatenate([np.arange(words), drawn]))
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, tokens, SENTENCE):
            f.write(" ".join(f"w{i}" for i in ids[start:start + SENTENCE]) + "\n")


def _job(w2v: list, workdir: Path, env: dict) -> list[dict]:
    """One epoch, 2 workers and 1 server on loopback; the two workers' run records."""
    train = [*w2v, "train", "--workdir", str(workdir), "--kvstore", "dist_sync",
             "--device", "cpu", "--epochs", "1", "--subsample", "0"]
    proc = subprocess.run([*w2v, "launch", "-n", "2", "--log-dir", str(workdir / "logs"),
                           "--", *train], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"w2v launch failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return [json.loads((workdir / n).read_text()) for n in ("run.json", "run.rank1.json")]


def run(w2v: list, data_dir: Path, tmp: Path, env: dict) -> list[dict]:
    """Both jobs; a row each: vocabulary, per-worker tokens/sec, rows and bytes a step."""
    jobs = {"PTB": ["--data-dir", str(data_dir)]}
    corpus = tmp / "synthetic.txt"
    synthetic_corpus(corpus)
    jobs["synthetic"] = ["--corpus", str(corpus), "--min-count", "1"]
    rows = []
    for name, source in jobs.items():
        workdir = tmp / f"dist-{name}"
        subprocess.run([*w2v, "prepare", "--workdir", str(workdir), *source], check=True,
                       capture_output=True, env=env)
        records = _job(w2v, workdir, env)
        rows.append(summary(name, records))
    return rows


def summary(name: str, records: list[dict]) -> dict:
    """One table row from the workers' run records."""
    vocab = records[0]["vocab_size"]
    per_step = records[0]["worker"]["rows_per_step"]
    touched = per_step["center"] + per_step["context"]
    return {"corpus": name, "vocab": vocab,
            "tokens_per_sec": [r["final"]["tokens_per_sec"] for r in records],
            "steps": records[0]["epochs"][0]["batches"], "rows_per_step": per_step,
            "sparse_bytes": 2 * touched * (EMBED * 4 + ID_BYTES),
            "dense_bytes": 2 * 2 * vocab * EMBED * 4}


def table(rows: list[dict]) -> list[str]:
    """The distributed line as Markdown lines."""
    lines = ["", "### Distributed: 2 workers + 1 server on loopback, 1 epoch, --subsample 0", "",
             "| corpus | vocabulary | tokens/sec per worker | distinct rows a step (center / "
             "context) | bytes a step, row-sparse (dense) |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        rps = r["rows_per_step"]
        lines.append(f"| {r['corpus']} | {r['vocab']:,} | "
                     + " / ".join(f"{t:,.0f}" for t in r["tokens_per_sec"])
                     + f" | {rps['center']:,.0f} / {rps['context']:,.0f} | "
                     f"{r['sparse_bytes'] / 1e6:.2f} MB ({r['dense_bytes'] / 1e6:.0f} MB) |")
    speeds = [min(r["tokens_per_sec"]) for r in rows]
    lines.append(f"tokens/sec of the slower job's workers over the faster's: "
                 f"{min(speeds) / max(speeds):.2f} (within 2x: "
                 + ("yes" if max(speeds) <= 2 * min(speeds) else "no") + "); bytes: pulled "
                 "and pushed by a worker, E float32 and an int64 id a row")
    return lines


if __name__ == "__main__":  # on its own: python benchmarks/dist_bench.py DATA_DIR TMP
    import os

    here = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(here)}
    out = run([sys.executable, "-m", "w2v_cli"], Path(sys.argv[1]), Path(sys.argv[2]), env)
    print("\n".join(table(out)))
