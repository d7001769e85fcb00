"""w2v against gensim on PTB, side by side in one run; prints a table and writes JSON.

    python benchmarks/bench.py [--out benchmarks/results.json] [--scales 1,4,16] [--quick]

Every measured run is a separate child process, so peak RSS is that run's own. WordSim-353
Spearman is computed here (pairs in the vocabulary only; coverage is printed). Exits non-zero
only when something fails, never because a figure is slow.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"

# The chapter's settings, for both tools.
SETTINGS = dict(window=5, negatives=5, embed_size=100, min_count=10, subsample=1e-4, epochs=5,
                batch_size=512, lr=0.002)


# --- WordSim-353 ----------------------------------------------------------------------------

def read_wordsim(path: Path) -> list[tuple[str, str, float]]:
    """(word1, word2, human score) rows of a TSV; lines starting with # are comments."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.strip().split("\t")
        if len(parts) < 3 or line.startswith("#"):
            continue
        try:
            rows.append((parts[0].lower(), parts[1].lower(), float(parts[2])))
        except ValueError:
            continue  # a header line
    return rows


def ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, ties given the mean of the ranks they span. (n,) float64."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    first = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], x.size]
    mean_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    out = np.empty(x.size)
    out[order] = mean_rank[group]
    return out


def spearman(a, b) -> float:
    ra, rb = ranks(np.asarray(a, float)), ranks(np.asarray(b, float))
    return float(np.corrcoef(ra, rb)[0, 1])


def wordsim(index: dict, unit: np.ndarray, rows) -> dict:
    """Spearman of cosine similarity against the human scores, over pairs in ``index``
    (token -> row of ``unit``, (V, E) rows of length 1)."""
    pairs = [(index[a], index[b], s) for a, b, s in rows if a in index and b in index]
    if len(pairs) < 3:
        return {"spearman": float("nan"), "pairs": len(pairs), "coverage": len(pairs) / len(rows)}
    i, j, human = (np.array(c) for c in zip(*pairs))
    cos = np.einsum("ne,ne->n", unit[i], unit[j])
    return {"spearman": round(spearman(cos, human), 4), "pairs": len(pairs),
            "coverage": round(len(pairs) / len(rows), 3)}


def _unit(m: np.ndarray) -> np.ndarray:
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


# --- child-process jobs ---------------------------------------------------------------------

def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def job_prepare(a: dict) -> dict:
    from w2v_cli import dataset
    from w2v_cli.config import Config
    config = Config(workdir=a["workdir"], data_dir=a["data_dir"], corpus=tuple(a["corpus"]),
                    min_count=SETTINGS["min_count"])
    start = time.perf_counter()
    ds = dataset.prepare(config)
    return {"seconds": round(time.perf_counter() - start, 3), "tokens": int(ds.ids.size),
            "vocab": len(ds.vocab)}


def job_train(a: dict) -> dict:
    from w2v_cli import checkpoint, dataset
    from w2v_cli.config import Config
    from w2v_cli.train import train
    ds = dataset.load(Path(a["workdir"]))
    keys = ("window", "negatives", "embed_size", "subsample", "batch_size", "lr")
    kw = {k: SETTINGS[k] for k in keys}
    kw.update(a.get("options", {}))
    config = Config(workdir=a["run_dir"], epochs=a["epochs"], device="cpu", **kw)
    rows = read_wordsim(Path(a["wordsim"])) if a.get("wordsim") else None
    curve = []   # WordSim at each epoch's end, from the checkpoint
    points = []  # [training seconds, WordSim] at every progress report, for time-to-quality
    done = [0.0]  # training seconds of the finished epochs

    def on_progress(p):
        # Both evaluations run inside progress callbacks, whose time train() does not count.
        if rows is None:
            return
        if p.epoch_done:
            tables = checkpoint.load_tables(config.workdir_path, len(ds.vocab))
            curve.append(wordsim(ds.vocab.index, _unit(tables["center"]), rows))
            done[0] += p.seconds
            points.append([round(done[0], 3), curve[-1]["spearman"]])
        else:
            rho = wordsim(ds.vocab.index, _unit(p.center()), rows)["spearman"]
            points.append([round(done[0] + p.seconds, 3), rho])

    record = train(config, ds, on_progress)
    epochs = record["epochs"]
    out = {"epoch_seconds": [e["seconds"] for e in epochs],
           "loss": [round(e["loss"], 4) for e in epochs],
           "train_seconds": record["final"]["train_seconds"],
           "centers_per_sec": record["final"]["centers_per_sec"],
           "words_per_sec": round(ds.ids.size * len(epochs) / record["final"]["train_seconds"], 1),
           "steps_per_sec": round(sum(-(-e["centers"] // config.batch_size) for e in epochs)
                                  / record["final"]["train_seconds"], 2),
           "vocab": len(ds.vocab), "tokens": int(ds.ids.size)}
    # Steady state: the last epoch's chunks were drawn while the one before trained, and its
    # optimizer state exists already.
    last = epochs[-1]
    out["last_epoch_steps_per_sec"] = round(-(-last["centers"] // config.batch_size)
                                            / last["seconds"], 2)
    if curve:
        out["wordsim_curve"] = [c["spearman"] for c in curve]
        out["wordsim_points"] = points
        out["wordsim"] = curve[-1]
    return out


def job_gensim(a: dict) -> dict:
    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec
    from w2v_cli import corpus as corpus_mod
    lines = corpus_mod.read_ptb(Path(a["data_dir"]) / "ptb.zip").lines
    # w2v drops <unk>; give gensim the same tokens.
    sentences = [[t for t in line.split() if t != "<unk>"] for line in lines]
    rows = read_wordsim(Path(a["wordsim"]))

    class Clock(CallbackAny2Vec):
        def __init__(self):
            self.seconds, self.curve, self.t = [], [], 0.0

        def on_epoch_begin(self, model):
            self.t = time.perf_counter()

        def on_epoch_end(self, model):
            self.seconds.append(time.perf_counter() - self.t)
            wv = model.wv
            self.curve.append(wordsim(wv.key_to_index, _unit(wv.vectors), rows))

    start = time.perf_counter()
    model = Word2Vec(sg=1, negative=SETTINGS["negatives"], vector_size=SETTINGS["embed_size"],
                     window=SETTINGS["window"], min_count=SETTINGS["min_count"],
                     sample=SETTINGS["subsample"], workers=os.cpu_count(), seed=0)
    model.build_vocab(sentences)
    vocab_seconds = time.perf_counter() - start
    clock = Clock()
    model.train(sentences, total_examples=model.corpus_count, epochs=a["epochs"],
                callbacks=[clock])
    train_seconds = sum(clock.seconds)
    # Words in the vocabulary, as w2v counts its corpus (ids.npy holds only those).
    words = sum(int(model.wv.get_vecattr(w, "count")) for w in model.wv.index_to_key)
    return {"vocab_seconds": round(vocab_seconds, 3), "epoch_seconds": [round(s, 3) for s in clock.seconds],
            "train_seconds": round(train_seconds, 3),
            "words_per_sec": round(words * a["epochs"] / train_seconds, 1),
            "wordsim_curve": [c["spearman"] for c in clock.curve], "wordsim": clock.curve[-1],
            "wordsim_points": [[round(float(t), 3), c["spearman"]]
                               for t, c in zip(np.cumsum(clock.seconds), clock.curve)],
            "vocab": len(model.wv)}


def job_synthetic(a: dict) -> dict:
    """A corpus over a huge synthetic vocabulary (Zipf counts), prepared in the workdir."""
    from w2v_cli import dataset
    from w2v_cli.vocab import Vocab
    rng = np.random.default_rng(0)
    v = a["vocab"]
    counts = np.maximum((1e7 / np.arange(1, v)).astype(np.int64), 1)
    p = counts / counts.sum()
    ids = (rng.choice(v - 1, size=a["tokens"], p=p) + 1).astype(np.int32)
    offsets = np.arange(0, a["tokens"] + 1, 20, dtype=np.int64)
    offsets[-1] = a["tokens"]
    vocab = Vocab(["<unk>"] + [f"w{i}" for i in range(1, v)], np.r_[0, counts])
    dataset.save(dataset.Dataset(vocab, ids, offsets), Path(a["workdir"]))
    return {}


def job_padded(a: dict) -> dict:
    """PTB's prepared ids under a vocabulary padded to ``vocab`` words with words that never
    occur (count 0: never a center, context or noise word). The same rows are touched as on
    PTB, in tables ``vocab`` rows long: what the vocabulary's size alone costs per step."""
    from w2v_cli import dataset
    from w2v_cli.vocab import Vocab
    ds = dataset.load(Path(a["source"]))
    pad = a["vocab"] - len(ds.vocab)
    vocab = Vocab(list(ds.vocab.tokens) + [f"never{i}" for i in range(pad)],
                  np.r_[ds.vocab.counts, np.zeros(pad, dtype=np.int64)])
    dataset.save(dataset.Dataset(vocab, np.asarray(ds.ids), np.asarray(ds.offsets)),
                 Path(a["workdir"]))
    return {}


JOBS = {"prepare": job_prepare, "train": job_train, "gensim": job_gensim,
        "synthetic": job_synthetic, "padded": job_padded}


def run_job(name: str, **args) -> dict:
    """Run one job in a fresh interpreter; return its figures plus its peak RSS."""
    proc = subprocess.run([sys.executable, __file__, "--job", name, json.dumps(args)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"job {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the benchmark --------------------------------------------------------------------------

def _runs(job: dict) -> str:
    """A job timed in several runs, as ' (median of 0.31, 0.29, 0.44)'; else ''."""
    runs = job.get("runs")
    return f" (median of {', '.join(f'{x:.2f}' for x in runs)})" if runs else ""


def time_to(points, target):
    """Seconds of training until the WordSim measured at ``points`` ([seconds, rho], in time
    order) first reaches ``target`` (None: never)."""
    for t, rho in points:
        if rho >= target:
            return round(float(t), 2)
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("W2V_DATA_DIR", str(SHARED)))
    ap.add_argument("--wordsim", default=str(SHARED / "wordsim353.tsv"))
    ap.add_argument("--out", default=str(HERE / "results.json"))
    ap.add_argument("--scales", default="1,4,16", help="PTB repeated this many times "
                    "('' skips scaling)")
    ap.add_argument("--big-vocab", type=int, default=1_000_000, help="0 skips this line")
    ap.add_argument("--no-gensim", action="store_true")
    ap.add_argument("--job", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.job:
        out = JOBS[args.job[0]](json.loads(args.job[1]))
        out["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(out))
        return 0

    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "load_before": os.getloadavg()[0]}, "settings": SETTINGS}
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="w2v-bench-") as tmp:
        tmp = Path(tmp)
        ptb = tmp / "ptb"
        common = dict(wordsim=args.wordsim, workdir=str(ptb))
        # Three fresh processes, the median reported: a single cold run here swings from
        # 0.3 to 0.5 s with the machine. The last one's dataset is the one trained on.
        preps = [run_job("prepare", workdir=str(tmp / f"prep{k}" if k < 2 else ptb),
                         data_dir=args.data_dir, corpus=[]) for k in range(3)]
        results["prepare"] = {**preps[-1], "runs": [p["seconds"] for p in preps],
                              "seconds": float(np.median([p["seconds"] for p in preps]))}
        runs = {
            # the default on a CPU: sparse gradients, center rows caught up to dense adam,
            # batches trimmed into 3 parts by row length
            "w2v (default)": {},
            "w2v --trim-parts 1": {"trim_parts": 1},  # every row padded to the longest
            "w2v --bucket": {"bucket": True},
            "w2v --dense-grad": {"sparse_grad": False},
            "w2v --dense-grad --bucket": {"sparse_grad": False, "bucket": True},
            "w2v --noise-group 8": {"noise_group": 8},
            "w2v --noise-group 8 --bucket": {"noise_group": 8, "bucket": True},
            "w2v --noise-group 8 --bucket --lr 0.01": {"noise_group": 8, "bucket": True,
                                                       "lr": 0.01},
        }
        results["w2v"] = {}
        for label, options in runs.items():
            _log(f"training {label}")
            results["w2v"][label] = run_job("train", run_dir=str(tmp / "run"), epochs=SETTINGS["epochs"],
                                            options=options, **common)
        if not args.no_gensim:
            _log("training gensim")
            results["gensim"] = run_job("gensim", data_dir=args.data_dir, wordsim=args.wordsim,
                                        epochs=SETTINGS["epochs"])
        if args.big_vocab:
            # Two epochs each, the second timed (see job_train): the first also pays for
            # allocating the optimizer state and drawing its first chunk unoverlapped.
            _log(f"vocabulary of {args.big_vocab:,}: PTB's own first, then PTB's words, Zipf")
            # The reference, PTB's own vocabulary with the same options, right before the two
            # lines it is compared with: this machine's speed drifts from minute to minute.
            results["big_vocab_reference"] = run_job(
                "train", workdir=str(ptb), run_dir=str(tmp / "refrun"), epochs=2,
                options={"sparse_grad": True})
            run_job("padded", source=str(ptb), workdir=str(tmp / "padded"), vocab=args.big_vocab)
            results["big_vocab_ptb_words"] = run_job(
                "train", workdir=str(tmp / "padded"), run_dir=str(tmp / "bigrun"), epochs=2,
                options={"sparse_grad": True})
            # The fast recipe's step is a third of the default's, so the table's size weighs
            # more in it: the same pair of runs with its options.
            fast = {"sparse_grad": True, "noise_group": 8, "bucket": True}
            results["big_vocab_fast_reference"] = run_job(
                "train", workdir=str(ptb), run_dir=str(tmp / "refrun"), epochs=2, options=fast)
            results["big_vocab_fast_ptb_words"] = run_job(
                "train", workdir=str(tmp / "padded"), run_dir=str(tmp / "bigrun"), epochs=2,
                options=fast)
            big = tmp / "big"
            run_job("synthetic", workdir=str(big), vocab=args.big_vocab, tokens=300_000)
            results["big_vocab"] = run_job("train", workdir=str(big), run_dir=str(tmp / "bigrun"),
                                           epochs=2, options={"sparse_grad": True})
        results["scaling"] = scaling(tmp, args, [int(s) for s in args.scales.split(",") if s])
    results["bench_seconds"] = round(time.perf_counter() - wall, 1)
    results["machine"]["load_after"] = os.getloadavg()[0]
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nJSON: {args.out}")
    return 0


def scaling(tmp: Path, args, scales) -> list:
    from w2v_cli import corpus as corpus_mod
    lines = corpus_mod.read_ptb(Path(args.data_dir) / "ptb.zip").lines
    out = []
    for k in scales:
        _log(f"scaling: PTB x{k}")
        path = tmp / f"ptb{k}.txt"
        path.write_text("\n".join(lines * k) + "\n", encoding="utf-8")
        wd = tmp / f"scale{k}"
        prep = run_job("prepare", workdir=str(wd), data_dir=args.data_dir, corpus=[str(path)])
        tr = run_job("train", workdir=str(wd), run_dir=str(tmp / f"scalerun{k}"), epochs=1,
                     options={"sparse_grad": True})
        out.append({"scale": k, "tokens": prep["tokens"], "prepare_seconds": prep["seconds"],
                    "prepare_peak_rss_mb": prep["peak_rss_mb"],
                    "epoch_seconds": tr["epoch_seconds"][0], "train_peak_rss_mb": tr["peak_rss_mb"]})
        path.unlink()
    return out


def _log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def table(r: dict) -> str:
    lines = [f"w2v vs gensim on PTB ({r['machine']['cpus']} CPUs; load average "
             f"{r['machine']['load_before']:.1f} before, {r['machine']['load_after']:.1f} after)",
             f"prepare: {r['prepare']['seconds']:.2f} s{_runs(r['prepare'])}, "
             f"{r['prepare']['tokens']:,} tokens, "
             f"vocab {r['prepare']['vocab']:,}, peak RSS {r['prepare']['peak_rss_mb']:.0f} MB", ""]
    head = f"{'run':38} {'train s':>8} {'s/epoch':>8} {'centers/s':>10} {'words/s':>10} " \
           f"{'loss':>6} {'WS353':>6} {'cover':>6} {'RSS MB':>7}"
    lines += [head, "-" * len(head)]
    for label, x in r["w2v"].items():
        lines.append(f"{label:38} {x['train_seconds']:8.1f} {np.mean(x['epoch_seconds']):8.2f} "
                     f"{x['centers_per_sec']:10,.0f} {x['words_per_sec']:10,.0f} {x['loss'][-1]:6.3f} "
                     f"{x['wordsim']['spearman']:6.3f} {x['wordsim']['coverage']:6.2f} "
                     f"{x['peak_rss_mb']:7.0f}")
    g = r.get("gensim")
    if g:
        lines.append(f"{'gensim 4.3.3':38} {g['train_seconds']:8.1f} {np.mean(g['epoch_seconds']):8.2f} "
                     f"{'':>10} {g['words_per_sec']:10,.0f} {'':>6} {g['wordsim']['spearman']:6.3f} "
                     f"{g['wordsim']['coverage']:6.2f} {g['peak_rss_mb']:7.0f}")
        lines += ["", "ratios w2v/gensim (wall time; words/s) and time-to-quality "
                  "(seconds of training until WS353 >= target; w2v measured every 50 batches, "
                  "gensim at epoch ends):"]
        for label, x in r["w2v"].items():
            target = min(x["wordsim"]["spearman"], g["wordsim"]["spearman"])
            tw = time_to(x["wordsim_points"], target)
            tg = time_to(g["wordsim_points"], target)
            ratio = f"{tw / tg:.1f}x" if tw and tg else "n/a"
            lines.append(f"  {label:38} time {x['train_seconds'] / g['train_seconds']:5.1f}x  "
                         f"words/s {x['words_per_sec'] / g['words_per_sec']:5.2f}x  "
                         f"to WS353 {target:.3f}: w2v {tw} s, gensim {tg} s ({ratio})")
            x["time_to_quality"] = {"target": target, "w2v": tw, "gensim": tg}
    base = r.get("big_vocab_reference") or r["w2v"]["w2v (default)"]
    lines_for = (("big_vocab_ptb_words", "PTB's words", base),
                 ("big_vocab", "Zipf corpus", base),
                 ("big_vocab_fast_ptb_words", "PTB's words, --noise-group 8 --bucket",
                  r.get("big_vocab_fast_reference")))
    for key, what, ref in lines_for:
        b = r.get(key)
        if not b or not ref:
            continue
        if key == "big_vocab_ptb_words":
            lines += ["", f"sparse grads, steps/s in a steady-state epoch vs PTB's vocabulary "
                      f"({base['vocab']:,} words: {base['last_epoch_steps_per_sec']:.1f} steps/s"
                      " by default):"]
        steps, ptb_steps = b["last_epoch_steps_per_sec"], ref["last_epoch_steps_per_sec"]
        vs = f" (PTB {ptb_steps:.1f})" if ref is not base else ""
        lines.append(f"  vocabulary {b['vocab']:,}, {what}: {steps:.1f} steps/s{vs}, "
                     f"PTB/this {ptb_steps / steps:.2f}x, peak RSS {b['peak_rss_mb']:.0f} MB")
    if r["scaling"]:
        lines += ["", f"{'scale':>5} {'tokens':>11} {'prepare s':>10} {'prep RSS MB':>12} "
                  f"{'epoch s':>8} {'train RSS MB':>13}"]
    for s in r["scaling"]:
        lines.append(f"{s['scale']:>4}x {s['tokens']:11,} {s['prepare_seconds']:10.2f} "
                     f"{s['prepare_peak_rss_mb']:12.0f} {s['epoch_seconds']:8.2f} "
                     f"{s['train_peak_rss_mb']:13.0f}")
    lines.append(f"\nbench wall time {r['bench_seconds']} s")
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # a failed run is an error; a slow figure never is
        print(f"bench failed: {e}", file=sys.stderr)
        sys.exit(1)
