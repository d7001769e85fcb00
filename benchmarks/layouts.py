"""Epoch time of each batch layout on PTB, for one or several source trees side by side.

    python benchmarks/layouts.py --data-dir DIR [--tree PATH ...] [--rounds 3] [--epochs 2]

Each round runs every layout once in every tree, alternating trees, so a drift in the
machine's speed falls on all of them; each run is a whole `w2v train --epochs E` process in a
fresh copy of one prepared workdir. The figure is the median over rounds of the last epoch's
seconds as run.json records them (training only: start-up, sampling of the first chunk and
the loss plot are the bench's wall time, not this). Used to check that a change to the
training core is no slower, layout by layout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Explicit options, so a layout means the same in every tree whatever its defaults.
LAYOUTS = {
    "--noise-group 0 (sparse, trimmed)": ["--noise-group", "0", "--no-bucket"],
    "--noise-group 0 --bucket": ["--noise-group", "0", "--bucket"],
    "--noise-group 0 --dense-grad": ["--noise-group", "0", "--no-bucket", "--dense-grad"],
    "--noise-group 8 --no-bucket": ["--noise-group", "8", "--no-bucket"],
    "--noise-group 8 --bucket (the default)": ["--noise-group", "8", "--bucket"],
}


def run(tree: Path, prepared: Path, work: Path, epochs: int, options: list[str]) -> dict:
    """One `w2v train` process from ``tree``; returns its last epoch's line of run.json."""
    shutil.copytree(prepared, work)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "w2v_cli", "train", "--workdir", str(work), "--epochs",
           str(epochs), "--device", "cpu", *options]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree)
    if proc.returncode != 0:
        raise RuntimeError(f"{tree}: {' '.join(options)} failed:\n{proc.stderr[-2000:]}")
    last = json.loads((work / "run.json").read_text())["epochs"][-1]
    shutil.rmtree(work)
    return last


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("W2V_DATA_DIR", "~/.cache/w2v"))
    ap.add_argument("--tree", action="append", default=[],
                    help="a source tree holding w2v_cli/ (repeatable; default: this one)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args(argv)
    trees = [Path(t).resolve() for t in args.tree] or [Path(__file__).resolve().parent.parent]
    seconds: dict = {(t, name): [] for t in trees for name in LAYOUTS}
    losses: dict = {}
    with tempfile.TemporaryDirectory(prefix="w2v-layouts-") as tmp:
        prepared = Path(tmp) / "prepared"
        subprocess.run([sys.executable, "-m", "w2v_cli", "prepare", "--workdir", str(prepared),
                        "--data-dir", str(Path(args.data_dir).expanduser())], check=True,
                       env={**os.environ, "PYTHONPATH": str(trees[0])}, capture_output=True)
        for r in range(args.rounds):
            for name, options in LAYOUTS.items():
                for t in trees:
                    last = run(t, prepared, Path(tmp) / "work", args.epochs, options)
                    seconds[t, name].append(last["seconds"])
                    losses[t, name] = last["loss"]
                    print(f"round {r + 1}: {t.name} {name}: {last['seconds']:.2f} s",
                          file=sys.stderr)
    head = "| layout | " + " | ".join(f"{t.name} s/epoch (median; runs)" for t in trees)
    print(head + (" | ratio |" if len(trees) == 2 else " |"))
    print("|---" * (len(trees) + 1 + (len(trees) == 2)) + "|")
    for name in LAYOUTS:
        cells = [f"{statistics.median(seconds[t, name]):.2f} "
                 f"({', '.join(f'{x:.1f}' for x in seconds[t, name])}); loss "
                 f"{losses[t, name]:.4f}" for t in trees]
        ratio = ""
        if len(trees) == 2:
            a, b = (statistics.median(seconds[t, name]) for t in trees)
            ratio = f" {b / a:.3f} |"
        print(f"| {name} | " + " | ".join(cells) + " |" + ratio)
    return 0


if __name__ == "__main__":
    sys.exit(main())
