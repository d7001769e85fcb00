"""w2v against gensim on PTB at equal passes: quality on three test sets and wall time.

    python benchmarks/bench.py [--data-dir DIR] [--epochs 5,15] [--seeds 3] [--out FILE]
    BENCH_EPOCHS=1 BENCH_SEEDS=1 BENCH_OBJECTIVES= BENCH_DIST=0 python benchmarks/bench.py  # quick

For every seed and every epoch count, `w2v train --epochs E --lr 0.002 --seed S` (defaults
otherwise) and gensim's skip-gram with the same settings each run as their own process. Both
tools' vectors are scored by w2v's own evaluation code on WordSim-353, the dev half of
SimLex-999 and the dev half of the Google analogies, through `w2v evaluate --json` (gensim's
with `--vectors`). The table goes to stdout as Markdown,
every figure to JSON (--out); progress goes to stderr. Wall time is what a user waits for:
see ``time_w2v`` and ``time_gensim``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# gensim's side of "equal settings"; hs=0 with negative=5 is skip-gram with negative sampling.
GENSIM = dict(sg=1, hs=0, negative=5, vector_size=100, window=5, min_count=10, sample=1e-4,
              workers=2)
# w2v's defaults are these settings already; only the learning rate is stated, as in the README.
W2V_TRAIN = ["--lr", "0.002"]
# Other w2v settings run beside the defaults at every seed and epoch count (a row each).
W2V_RECIPES = {"w2v --noise-group 0 --no-bucket": ["--noise-group", "0", "--no-bucket"]}
# name -> (file under the data dir, what its figure is)
TEST_SETS = {"wordsim353": ("wordsim353.tsv", "rho"),
             "simlex999_dev": ("dev/simlex999-dev.txt", "rho"),
             "analogy_dev": ("dev/questions-words-dev.txt", "accuracy %")}
METRIC_TITLES = {"wordsim353": "WordSim-353 rho", "simlex999_dev": "SimLex-999 dev rho",
                 "analogy_dev": "analogy dev %"}
# What w2v must reach at TARGET_EPOCHS, means over the seeds: at most WALL_RATIO times
# gensim's wall time, and each metric no further below gensim's than its margin.
TARGET_EPOCHS = 15
WALL_RATIO = 2.0
MARGINS = {"simlex999_dev": 0.02, "analogy_dev": 0.3}


# --- the runs -------------------------------------------------------------------------------

def _run(cmd: list[str], what: str, env: dict | None = None) -> tuple[float, str]:
    """Run ``cmd``; return (seconds from spawn to exit, its stdout). Raises when it fails."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def _w2v(*args: str) -> list[str]:
    return [sys.executable, "-m", "w2v_cli", *args]


def _env() -> dict:
    # The bench runs from a clone that may not be installed: w2v_cli comes from this tree.
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + path if path else "")}


def prepare(data_dir: Path, workdir: Path) -> dict:
    """`w2v prepare` on the PTB training split, timed as one process."""
    seconds, _ = _run(_w2v("prepare", "--data-dir", str(data_dir), "--workdir", str(workdir)),
                      "w2v prepare", _env())
    return {"wall": round(seconds, 3)}


def time_w2v(prepared: Path, run_dir: Path, epochs: int, seed: int, pin: str = "",
             extra: tuple = (), base: tuple = tuple(W2V_TRAIN)) -> float:
    """Seconds of one whole `w2v train` process (interpreter start to exit: imports, training,
    checkpoints, the loss plot) in a copy of the prepared workdir (the copy is not timed).
    pin: CPUs for `taskset -c`, or '' for all; base: the options every equal-passes run
    states (W2V_TRAIN); extra: more options."""
    shutil.copytree(prepared, run_dir)
    cmd = _w2v("train", "--workdir", str(run_dir), "--epochs", str(epochs), "--seed", str(seed),
               *base, *extra)
    seconds, _ = _run(["taskset", "-c", pin, *cmd] if pin else cmd, "w2v train", _env())
    return seconds


def time_gensim(data_dir: Path, out: Path, epochs: int, seed: int, params=None) -> dict:
    """Seconds of one whole gensim process (interpreter start, import, reading the PTB train
    split from the zip, vocabulary, training) to exit, less the saving of the vectors, which
    the process times itself and reports. Writes word2vec text to ``out``. params: gensim
    settings that differ from GENSIM."""
    job = {"data_dir": str(data_dir), "out": str(out), "epochs": epochs, "seed": seed,
           "params": params or {}}
    seconds, stdout = _run([sys.executable, __file__, "--gensim-job", json.dumps(job)],
                           "gensim")
    report = json.loads(stdout.strip().splitlines()[-1])
    return {"wall": seconds - report["save_seconds"], **report}


def gensim_job(job: dict) -> dict:
    """The gensim process's work (runs in the child). This module imports only the standard
    library at the top, so the child's imports are gensim's own."""
    import zipfile

    from gensim.models import Word2Vec

    with zipfile.ZipFile(Path(job["data_dir"]) / "ptb.zip") as z:
        text = z.read("ptb/ptb.train.txt").decode("utf-8")
    # w2v drops <unk> (PTB's rare-word marker) before windows are drawn; give gensim the same.
    sentences = [[t for t in line.split() if t != "<unk>"] for line in text.splitlines()]
    model = Word2Vec(sentences, epochs=job["epochs"], seed=job["seed"],
                     **{**GENSIM, **job.get("params", {})})
    start = time.perf_counter()
    model.wv.save_word2vec_format(job["out"])
    return {"save_seconds": time.perf_counter() - start, "vocab": len(model.wv)}


# w2v's --model/--loss and gensim's settings for the same architecture and objective. With
# hierarchical softmax gensim's sample is its own default, 1e-3, at which its formula keeps
# as many tokens a pass as w2v's --subsample default there, 2e-3 (tokens_a_pass).
OBJECTIVES = [("skipgram", "ns", dict(sg=1, hs=0, negative=5)),
              ("skipgram", "hs", dict(sg=1, hs=1, negative=0, sample=1e-3)),
              ("cbow", "ns", dict(sg=0, hs=0, negative=5)),
              ("cbow", "hs", dict(sg=0, hs=1, negative=0, sample=1e-3))]


def tokens_a_pass(prepared: Path) -> dict:
    """The tokens one pass keeps on average after subsampling, each tool by its own formula,
    from the prepared vocabulary's counts (words under min_count and <unk> left out, as both
    tools leave them out): w2v's, sqrt(t / f) (w2v_cli.sgd.expected_centers), at each
    --loss's default threshold; gensim's, (sqrt(f / s) + 1) * s / f, at each ``sample`` the
    bench gives it; both capped at 1. A threshold means more data in gensim's formula than
    in w2v's: this shows how much. {run name: tokens}."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # the tree under test, not an installed copy
    import numpy as np
    from w2v_cli.config import SUBSAMPLE
    from w2v_cli.sgd import expected_centers

    counts = np.asarray(json.loads((prepared / "vocab.json").read_text())["counts"], np.float64)
    kept = counts[1:]
    f = kept / kept.sum()
    out = {f"w2v --loss {loss}": expected_centers(counts, t) for loss, t in SUBSAMPLE.items()}
    for s in sorted({GENSIM["sample"], *(p["sample"] for *_, p in OBJECTIVES if "sample" in p)}):
        out[f"gensim sample={s:g}"] = float((kept * np.minimum(1.0, (np.sqrt(f / s) + 1) * s / f)).sum())
    return out


def objective_tools(model: str, loss: str, params: dict) -> tuple[str, str]:
    """The run names of one combination in the objectives table: w2v's and gensim's."""
    return (f"w2v --model {model} --loss {loss}",
            "gensim " + " ".join(f"{k}={v}" for k, v in params.items()))


def objectives(data_dir: Path, prepared: Path, tmp: Path, plan: list) -> list:
    """Each architecture and objective against gensim's same combination: `w2v train
    --model M --loss L` with nothing else changed. ``plan``: (epochs, seeds) pairs; seeds
    0 .. seeds-1 at that epoch count. Returns runs in the form of ``results["runs"]``."""
    out = []
    for epochs, seeds in plan:
        for seed in range(seeds):
            for model, loss, params in OBJECTIVES:
                w2v_tool, gensim_tool = objective_tools(model, loss, params)
                _log(f"w2v and gensim, --model {model} --loss {loss}, epochs {epochs}, "
                     f"seed {seed}")
                run_dir = tmp / "objective"
                wall = time_w2v(prepared, run_dir, epochs, seed, base=(),  # no --lr: each
                                extra=("--model", model, "--loss", loss))  # its own default
                out.append({"tool": w2v_tool, "epochs": epochs, "seed": seed, "wall": wall,
                            "scores": score(data_dir, ["--workdir", str(run_dir)])})
                shutil.rmtree(run_dir)
                vectors = tmp / "gensim-objective.txt"
                g = time_gensim(data_dir, vectors, epochs, seed, params)
                out.append({"tool": gensim_tool, "epochs": epochs, "seed": seed,
                            "wall": g["wall"],
                            "scores": score(data_dir, ["--vectors", str(vectors)])})
                vectors.unlink()
    return out


def objectives_table(runs: list) -> list[str]:
    """The architectures-and-objectives table as Markdown lines: each combination's w2v and
    gensim figures side by side, mean [min, max] over the seeds run."""
    rows = {(r["tool"], r["epochs"]): r for r in summary_rows(runs)}

    def figures(r):
        return [cell(r["wall"], 1)] + ["n/a" if r[m] is None else
                                       cell(r[m], 1 if m == "analogy_dev" else 3)
                                       for m in TEST_SETS]
    lines = ["", "### Architectures and objectives against gensim's", "",
             "| model | loss | epochs | seeds | w2v wall s | WordSim-353 | SimLex-999 dev | "
             "analogy dev % | gensim wall s | WordSim-353 | SimLex-999 dev | analogy dev % |",
             "|---|---|---:|---:|" + "---:|" * 8]
    for epochs in sorted({e for _, e in rows}):
        for model, loss, params in OBJECTIVES:
            w2v_tool, gensim_tool = objective_tools(model, loss, params)
            if (w2v_tool, epochs) not in rows:
                continue
            w, g = rows[(w2v_tool, epochs)], rows[(gensim_tool, epochs)]
            lines.append(f"| {model} | {loss} | {epochs} | {len(w['seeds'])} | "
                         + " | ".join(figures(w) + figures(g)) + " |")
    return lines


def eval_cost(data_dir: Path, prepared: Path, run_dir: Path) -> dict:
    """What scoring after every epoch costs: a 2-epoch run with the three test sets as
    --eval-* sets; metrics.jsonl's seconds of scoring against the epoch's seconds."""
    shutil.copytree(prepared, run_dir)
    args = ["train", "--workdir", str(run_dir), "--epochs", "2", *W2V_TRAIN]
    for name, (f, _) in TEST_SETS.items():
        args += ["--eval-analogy" if name == "analogy_dev" else "--eval-similarity",
                 str(data_dir / f)]
    _run(_w2v(*args), "w2v train --eval-*", _env())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(run_dir)
    return {"eval_seconds": [r["eval_seconds"] for r in rows],
            "train_seconds": [r["train_seconds"] for r in rows]}


# --- scoring --------------------------------------------------------------------------------

def score(data_dir: Path, source: list[str]) -> dict:
    """Scores from `w2v evaluate --json` (case folded, 3CosAdd: its defaults) on the three test
    sets, of a workdir (``source`` = ["--workdir", DIR]) or of any tool's word2vec file
    (["--vectors", FILE]): both tools go through the one command a user would run.
    Returns {set name: {"value": rho or accuracy in %, "used": items scored, "total": items}}.
    """
    args = ["evaluate", "--json", *source]
    for name, (f, _) in TEST_SETS.items():
        args += ["--analogy" if name == "analogy_dev" else "--similarity", str(data_dir / f)]
    _, stdout = _run(_w2v(*args), "w2v evaluate", _env())
    return parse_scores(json.loads(stdout))


def parse_scores(report: dict) -> dict:
    """`w2v evaluate --json` output -> the bench's per-set figures, in TEST_SETS order."""
    sims, (analogy,) = report["similarity"], report["analogy"]
    out = {}
    for name, r in zip(("wordsim353", "simlex999_dev"), sims):
        out[name] = {"value": r["rho"], "used": r["pairs"], "total": r["total"]}
    acc = analogy["overall"]["accuracy"]
    out["analogy_dev"] = {"value": None if acc is None else 100 * acc,
                          "used": analogy["overall"]["questions"],
                          "total": analogy["overall"]["total"]}
    return out


def check_test_sets(data_dir: Path) -> None:
    """Raises FileNotFoundError naming any test set that is missing."""
    missing = [str(data_dir / f) for f, _ in TEST_SETS.values() if not (data_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"test sets missing: {', '.join(missing)}")


# --- summaries and the table ----------------------------------------------------------------

def summarize(values: list[float]) -> dict:
    """Mean, min and max of a list of figures (one per seed); the spread printed is min-max."""
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "n": len(values)}


def cell(s: dict, digits: int) -> str:
    """'mean [min, max]', or the figure alone when there is one seed."""
    f = f"{{:.{digits}f}}"
    if s["n"] == 1:
        return f.format(s["mean"])
    return f"{f.format(s['mean'])} [{f.format(s['min'])}, {f.format(s['max'])}]"


def summary_rows(runs: list[dict]) -> list[dict]:
    """One row per (tool, epochs), in order of first appearance: wall and every metric
    summarized over the seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["tool"], r["epochs"]), []).append(r)
    rows = []
    for (tool, epochs), rs in groups.items():
        row = {"tool": tool, "epochs": epochs, "seeds": [r["seed"] for r in rs],
               "wall": summarize([r["wall"] for r in rs])}
        for name in TEST_SETS:
            values = [r["scores"][name]["value"] for r in rs]
            row[name] = summarize(values) if None not in values else None
        rows.append(row)
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    """w2v's mean wall time over gensim's, at each epoch count both were run at."""
    mean = {(r["tool"], r["epochs"]): r["wall"]["mean"] for r in rows}
    return [{"epochs": e, "w2v": mean[("w2v", e)], "gensim": mean[("gensim", e)],
             "ratio": mean[("w2v", e)] / mean[("gensim", e)]}
            for tool, e in mean if tool == "w2v" and ("gensim", e) in mean]


def targets(rows: list[dict]) -> list[dict]:
    """The checks of w2v against gensim at TARGET_EPOCHS (none if either tool did not run
    there): the wall-time ratio against WALL_RATIO, each metric of MARGINS against
    gensim's mean less the margin. Each: {"what", "w2v", "bound", "met"}."""
    at = {r["tool"]: r for r in rows if r["epochs"] == TARGET_EPOCHS}
    if not {"w2v", "gensim"} <= at.keys():
        return []
    w2v, gensim = at["w2v"], at["gensim"]
    ratio = w2v["wall"]["mean"] / gensim["wall"]["mean"]
    checks = [{"what": "wall", "w2v": ratio, "bound": WALL_RATIO, "met": ratio <= WALL_RATIO}]
    for name, margin in MARGINS.items():
        if w2v[name] is None or gensim[name] is None:
            continue
        bound = gensim[name]["mean"] - margin
        checks.append({"what": name, "w2v": w2v[name]["mean"], "bound": bound,
                       "gensim": gensim[name]["mean"], "met": w2v[name]["mean"] >= bound})
    return checks


def targets_line(checks: list[dict]) -> str:
    """One line saying which targets were met, with the figures compared."""
    parts = []
    for c in checks:
        verdict = "met" if c["met"] else "NOT met"
        if c["what"] == "wall":
            parts.append(f"wall {c['w2v']:.2f}x gensim's (at most {c['bound']:g}x): {verdict}")
        else:
            d, unit = (1, " points") if c["what"] == "analogy_dev" else (3, "")
            title = METRIC_TITLES[c["what"]].rsplit(" ", 1)[0]
            parts.append(f"{title} {c['w2v']:.{d}f} against gensim's {c['gensim']:.{d}f} - "
                         f"{MARGINS[c['what']]:g}{unit} = {c['bound']:.{d}f}: {verdict}")
    return f"targets at {TARGET_EPOCHS} epochs (means over the seeds): " + "; ".join(parts)


def coverage(runs: list[dict]) -> str:
    """Items scored out of each set's total, e.g. 'WordSim-353 rho 217/353'; every distinct
    count is listed, so a tool whose vocabulary differs shows up."""
    parts = []
    for name, title in METRIC_TITLES.items():
        counts = sorted({(r["scores"][name]["used"], r["scores"][name]["total"]) for r in runs})
        parts.append(f"{title.rsplit(' ', 1)[0]} " + " or ".join(f"{u}/{t}" for u, t in counts))
    return "items scored: " + ", ".join(parts)


def markdown(results: dict) -> str:
    rows = summary_rows(results["runs"])
    seeds = max((len(r["seeds"]) for r in rows), default=0)
    spread = f"mean [min, max] over {seeds} seeds" if seeds > 1 else "1 seed, no spread"
    lines = [f"### Equal passes on PTB: {spread}", "",
             "| run | epochs | wall s | " + " | ".join(METRIC_TITLES.values()) + " |",
             "|---|---:|---:|" + "---:|" * len(METRIC_TITLES)]
    for r in rows:
        label = f"gensim {results['versions'].get('gensim', '')}".strip() \
            if r["tool"] == "gensim" else "w2v --lr 0.002" if r["tool"] == "w2v" else r["tool"]
        metrics = ["n/a" if r[m] is None else cell(r[m], 1 if m == "analogy_dev" else 3)
                   for m in TEST_SETS]
        lines.append(f"| {label} | {r['epochs']} | {cell(r['wall'], 1)} | "
                     + " | ".join(metrics) + " |")
    lines += ["", "| epochs | w2v wall s | gensim wall s | w2v/gensim |", "|---:|---:|---:|---:|"]
    lines += [f"| {x['epochs']} | {x['w2v']:.1f} | {x['gensim']:.1f} | {x['ratio']:.2f}x |"
              for x in ratios(rows)]
    checks = targets(rows)
    if checks:
        lines += ["", targets_line(checks)]
    gensim = {r["epochs"]: r["wall"]["mean"] for r in rows if r["tool"] == "gensim"}
    lines += [f"{r['tool']}: {r['wall']['mean'] / gensim[r['epochs']]:.2f}x gensim's wall time at "
              f"{r['epochs']} epochs" for r in rows
              if r["tool"] not in ("w2v", "gensim") and r["epochs"] in gensim]
    lines += ["", "wall: the whole process, spawn to exit (w2v train on the prepared workdir; "
              "gensim reading the zip, vocabulary and training, its vector save subtracted)",
              coverage(results["runs"]) if results["runs"] else "no runs"]
    lines += [f"w2v prepare (once, shared by every w2v run): {results['prepare']['wall']:.2f} s"]
    if results.get("objectives"):
        lines += objectives_table(results["objectives"]) + [""]
    if results.get("tokens_a_pass"):
        lines.append("tokens a pass after subsampling (on average): " + "; ".join(
            f"{name} {n:,.0f}" for name, n in results["tokens_a_pass"].items()))
    cost = results.get("eval_cost")
    if cost:
        shares = [e / t for e, t in zip(cost["eval_seconds"], cost["train_seconds"])]
        lines.append("scoring after each epoch (--eval-similarity x2, --eval-analogy): "
                     + ", ".join(f"{e:.2f} s" for e in cost["eval_seconds"])
                     + f" against epochs of {', '.join(f'{t:.1f} s' for t in cost['train_seconds'])}"
                     f" ({100 * max(shares):.1f}% at most)")
    cores = results.get("cores")
    if cores:
        lines.append(f"w2v train --epochs 1 on 1 core (taskset -c 0): {cores['1']:.1f} s; "
                     f"on 2 cores (taskset -c 0,1): {cores['2']:.1f} s; "
                     f"speed-up {cores['1'] / cores['2']:.2f}x")
    if results.get("distributed"):
        import dist_bench

        lines += dist_bench.table(results["distributed"]) + [""]
    m = results["machine"]
    lines.append(f"{m['cpus']} CPUs, load average {m['load_before']:.1f} before and "
                 f"{m['load_after']:.1f} after; bench {results['bench_seconds']:.0f} s")
    return "\n".join(lines)


# --- the bench ------------------------------------------------------------------------------

def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for package in ("mxnet", "gensim", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def _epochs(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _plan(text: str) -> list[tuple[int, int]]:
    """'5x3,15' -> [(5, 3), (15, 1)]: epoch counts, each with its number of seeds."""
    out = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        epochs, _, seeds = item.partition("x")
        out.append((int(epochs), int(seeds or 1)))
    if any(e < 1 or n < 1 for e, n in out):
        raise argparse.ArgumentTypeError(f"{text!r}: epochs and seeds must be positive")
    return out


def bench(args) -> dict:
    data_dir = Path(args.data_dir).expanduser()
    check_test_sets(data_dir)
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                           "load_before": os.getloadavg()[0]},
               "versions": _versions(),
               "settings": {"gensim": GENSIM, "w2v_train": W2V_TRAIN,
                            "epochs": args.epochs, "seeds": list(range(args.seeds))},
               "runs": []}
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="w2v-bench-") as tmp:
        tmp = Path(tmp)
        prepared = tmp / "prepared"
        _log("w2v prepare")
        results["prepare"] = prepare(data_dir, prepared)
        results["tokens_a_pass"] = tokens_a_pass(prepared)
        # Seeds outermost and the two tools side by side, so a drift in the machine's speed
        # falls on both.
        for seed in range(args.seeds):
            for epochs in args.epochs:
                _log(f"w2v, epochs {epochs}, seed {seed}")
                run_dir = tmp / "run"
                seconds = time_w2v(prepared, run_dir, epochs, seed)
                results["runs"].append({"tool": "w2v", "epochs": epochs, "seed": seed,
                                        "wall": seconds,
                                        "scores": score(data_dir, ["--workdir", str(run_dir)])})
                shutil.rmtree(run_dir)
                for name, options in (W2V_RECIPES if args.recipes else {}).items():
                    _log(f"{name}, epochs {epochs}, seed {seed}")
                    seconds = time_w2v(prepared, run_dir, epochs, seed, extra=tuple(options))
                    results["runs"].append({"tool": name, "epochs": epochs, "seed": seed,
                                            "wall": seconds, "scores": score(
                                                data_dir, ["--workdir", str(run_dir)])})
                    shutil.rmtree(run_dir)
                _log(f"gensim, epochs {epochs}, seed {seed}")
                out = tmp / "gensim.txt"
                g = time_gensim(data_dir, out, epochs, seed)
                results["runs"].append({"tool": "gensim", "epochs": epochs, "seed": seed,
                                        "wall": g["wall"], "save_seconds": g["save_seconds"],
                                        "vocab": g["vocab"],
                                        "scores": score(data_dir, ["--vectors", str(out)])})
                out.unlink()
        if args.objectives:
            results["objectives"] = objectives(data_dir, prepared, tmp, args.objectives)
        _log("w2v, 2 epochs scored after each (--eval-similarity, --eval-analogy)")
        results["eval_cost"] = eval_cost(data_dir, prepared, tmp / "eval")
        if args.cores and (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
            results["cores"] = {}
            for n, pin in (("1", "0"), ("2", "0,1")):
                _log(f"w2v, 1 epoch on {n} core(s)")
                results["cores"][n] = time_w2v(prepared, tmp / f"cores{n}", 1, 0, pin)
        if args.dist:
            import dist_bench  # beside this file

            _log("w2v launch -n 2, 1 epoch each on PTB and on a 200,000-word corpus")
            results["distributed"] = dist_bench.run(_w2v(), data_dir, tmp, _env())
    results["bench_seconds"] = time.perf_counter() - wall
    results["machine"]["load_after"] = os.getloadavg()[0]
    results["summary"] = summary_rows(results["runs"])
    results["ratios"] = ratios(results["summary"])
    results["targets"] = targets(results["summary"])
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("W2V_DATA_DIR", "~/.cache/w2v"),
                    help="holds ptb.zip, wordsim353.tsv and dev/ (default: $W2V_DATA_DIR)")
    ap.add_argument("--epochs", type=_epochs, default=os.environ.get("BENCH_EPOCHS", "5,15"),
                    help="epoch counts, comma-separated (default: $BENCH_EPOCHS or 5,15)")
    ap.add_argument("--seeds", type=int, default=int(os.environ.get("BENCH_SEEDS", "3")),
                    help="seeds 0..N-1 (default: $BENCH_SEEDS or 3)")
    ap.add_argument("--objectives", type=_plan,
                    default=os.environ.get("BENCH_OBJECTIVES", "5x3,15"),
                    help="the --model/--loss table: epoch counts, each with xN for seeds "
                         "0..N-1 (1 if not given); '' skips it (default: $BENCH_OBJECTIVES "
                         "or 5x3,15)")
    ap.add_argument("--recipes", action=argparse.BooleanOptionalAction,
                    default=os.environ.get("BENCH_RECIPES", "") == "1",
                    help="also run the rows of W2V_RECIPES (the chapter's estimator beside "
                         "the defaults; about 10 minutes more; default: $BENCH_RECIPES=1)")
    ap.add_argument("--no-cores", dest="cores", action="store_false",
                    help="skip the 1-core vs 2-core line")
    ap.add_argument("--no-dist", dest="dist", action="store_false",
                    default=os.environ.get("BENCH_DIST", "1") != "0",
                    help="skip the distributed line (2 workers, 1 server on loopback; about 3 "
                         "minutes; BENCH_DIST=0 skips it too)")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    ap.add_argument("--gensim-job", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.gensim_job:
        print(json.dumps(gensim_job(json.loads(args.gensim_job))))
        return 0
    if not args.epochs or min(args.epochs) < 1 or args.seeds < 1:
        ap.error("--epochs needs positive counts and --seeds at least 1")
    sys.path.insert(0, str(REPO))
    results = bench(args)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(markdown(results))
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # a failed run is an error; a slow figure never is
        print(f"bench failed: {e}", file=sys.stderr)
        sys.exit(1)
