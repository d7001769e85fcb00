"""Scale benchmark: prepare and one epoch on PTB-like corpora of 1x, 10x, 100x PTB's size.

    python benchmarks/scale.py --data-dir /work/shared/data --scales 1 10 100

A corpus of scale k is PTB's training sentences repeated k times, each copy in a fresh
random order (seeded), so the vocabulary and word frequencies are PTB's. Each stage runs in
a fresh process that reports its wall time and its peak memory, sampled every 10 ms:
``anon`` is private memory (what the process really holds), ``rss`` adds the pages of the
memory-mapped id files that happen to be resident (page cache, reclaimable). Streaming
should show time growing linearly with the corpus and ``anon`` staying flat.
One line per stage on stdout; the figures are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def make_corpus(ptb_zip: Path, scale: int, path: Path, seed: int = 0) -> int:
    """Write PTB's training sentences ``scale`` times, each copy shuffled. Returns tokens."""
    with zipfile.ZipFile(ptb_zip) as z:
        lines = z.read("ptb/ptb.train.txt").decode("utf-8").splitlines()
    rng = np.random.default_rng(seed)
    tokens = sum(len(line.split()) for line in lines) * scale
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(scale):
            order = rng.permutation(len(lines))
            f.write("\n".join(lines[i] for i in order) + "\n")
    return tokens


def _status_kb(field: str) -> int:
    m = re.search(field + r":\s+(\d+)", Path("/proc/self/status").read_text())
    return int(m.group(1)) if m else 0


def child(stage: str, corpus: str, workdir: str, chunk_tokens: int, settings: dict) -> dict:
    """Run one stage in this process and measure it."""
    sys.path.insert(0, str(REPO))
    from w2v_cli import dataset, train
    from w2v_cli.config import Config

    config = Config(workdir=workdir, corpus=(corpus,), epochs=1, chunk_tokens=chunk_tokens,
                    device="cpu", log_interval=10**9, **settings)
    if stage == "epoch":
        train.mxnet()  # import MXNet before measuring: its startup is not the epoch's cost
    peaks = {"anon": 0, "rss": 0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peaks["anon"] = max(peaks["anon"], _status_kb("RssAnon"))
            peaks["rss"] = max(peaks["rss"], _status_kb("VmRSS"))
            time.sleep(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    if stage == "prepare":
        ds = dataset.prepare(config)
        tokens = int(ds.vocab.counts.sum())
        extra = {"vocab": len(ds.vocab)}
    else:
        ds = dataset.load(config.workdir_path)
        record = train.train(config, ds)
        tokens = int(ds.ids.size)
        extra = {"tokens": record["epochs"][0]["tokens"], "loss": record["final"]["loss"]}
    seconds = time.perf_counter() - start
    stop.set()
    thread.join()
    return {"stage": stage, "tokens": tokens, "seconds": round(seconds, 2),
            "tokens_per_sec": round(tokens / seconds), "peak_anon_mb": round(peaks["anon"] / 1024, 1),
            "peak_rss_mb": round(peaks["rss"] / 1024, 1), **extra}


def run_stage(stage: str, corpus: Path, workdir: Path, chunk_tokens: int,
              settings: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    out = subprocess.run([sys.executable, __file__, "--child", stage, "--corpus", str(corpus),
                          "--workdir", str(workdir), "--chunk-tokens", str(chunk_tokens),
                          *(a for kv in settings for a in ("--set", kv))],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{stage} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("W2V_DATA_DIR", "~/.cache/w2v"))
    p.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--stages", nargs="+", default=["prepare", "epoch"],
                   choices=["prepare", "epoch"])
    p.add_argument("--epoch-max-scale", type=int, default=10**9,
                   help="Skip the epoch above this scale (an epoch of 100x PTB takes long).")
    p.add_argument("--chunk-tokens", type=int, default=1 << 20)
    p.add_argument("--tmp", default=None, help="Where to write the generated corpora.")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="A Config setting for both stages, e.g. --set batch_size=4096.")
    p.add_argument("--child", choices=["prepare", "epoch"], help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        settings = {}
        for kv in args.set:
            key, _, value = kv.partition("=")
            settings[key] = json.loads(value)
        print(json.dumps(child(args.child, args.corpus, args.workdir, args.chunk_tokens,
                               settings)))
        return
    ptb = Path(args.data_dir).expanduser() / "ptb.zip"
    print(f"# scale benchmark: chunk_tokens={args.chunk_tokens} {' '.join(args.set)}, "
          f"{os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="w2v-scale-") as tmp:
        for scale in args.scales:
            corpus = Path(tmp) / f"ptb-x{scale}.txt"
            make_corpus(ptb, scale, corpus)
            workdir = Path(tmp) / f"work-x{scale}"
            for stage in args.stages:
                if stage == "epoch" and scale > args.epoch_max_scale:
                    continue
                r = run_stage(stage, corpus, workdir, args.chunk_tokens, args.set)
                print(f"{scale:>4}x PTB  {stage:<8} {r['tokens']:>11,} tokens  "
                      f"{r['seconds']:>8.2f} s  {r['tokens_per_sec']:>10,} tokens/s  "
                      f"peak anon {r['peak_anon_mb']:>7.1f} MB  rss {r['peak_rss_mb']:>7.1f} MB",
                      flush=True)
            corpus.unlink()


if __name__ == "__main__":
    main()
