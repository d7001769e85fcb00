"""What a working directory holds: corpus, vocabulary, settings, epochs, losses, throughput,
and what the other commands would refuse (a missing array, a model of another vocabulary).

Reads only the JSON files (``vocab.json``, ``run.json``); never loads MXNet or the arrays.
"""

from __future__ import annotations

from pathlib import Path

from . import params
from .config import NS_OPTIONS
from .dataset import IDS_FILE, OFFSETS_FILE, VOCAB_FILE
from .errors import DataError, ModelError
from .vocab import Vocab

LOSS_PLOT_FILE = "loss.png"
# The run's training settings. Not min_count: a train run carries the Config default, not
# what prepare used; the vocabulary line shows that one, from vocab.json.
SETTINGS = ("model", "loss", "embed_size", "window", "negatives", "noise_group", "group_noise",
            "subsample", "sample_once", "batch_size", "optimizer", "lr",
            "epochs", "seed", "bucket", "sparse_grad")


def describe(workdir: Path) -> dict:
    """A summary of ``workdir``: {"workdir", "files", "dataset", "run"}; "run" is None before
    training. Raises DataError when there is no prepared dataset."""
    if not (workdir / VOCAB_FILE).is_file():
        raise DataError(f"no prepared dataset in {workdir}: run `w2v prepare` first")
    vocab = Vocab.load(workdir / VOCAB_FILE)
    dataset = {"source": vocab.meta.get("source", {}), "vocab_size": len(vocab),
               "min_count": vocab.meta.get("min_count"), **vocab.meta.get("stats", {})}
    problems = []
    try:
        run, problems = _readable(params.load_record(workdir), workdir / params.RUN_FILE)
    except ModelError as e:
        run = None
        if (workdir / params.RUN_FILE).exists():
            problems.append(str(e))
    names = (VOCAB_FILE, IDS_FILE, OFFSETS_FILE, params.PARAMS_FILE, params.RUN_FILE,
             LOSS_PLOT_FILE)
    files = {n: (workdir / n).stat().st_size for n in names if (workdir / n).is_file()}
    return {"workdir": str(workdir), "files": files, "dataset": dataset, "run": run,
            "problems": problems + _problems(files, vocab, run)}


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _epoch(e) -> bool:
    return isinstance(e, dict) and "epoch" in e and _number(e.get("loss")) \
        and all(_number(e[k]) for k in ("seconds", "tokens", "centers") if k in e)


# The run.json fields the summary reads: (whether a value can be read, what it must be).
RUN_FIELDS = {
    "config": (lambda v: isinstance(v, dict), "an object"),
    "dataset": (lambda v: isinstance(v, dict), "an object"),
    "epochs": (lambda v: isinstance(v, list) and all(map(_epoch, v)),
               "a list of objects, each with an epoch and numbers for loss, seconds and tokens"),
}


def _readable(run: dict, path: Path) -> tuple[dict, list[str]]:
    """``run`` without the fields of RUN_FIELDS it holds in another shape, and a problem
    naming each: a damaged field hides only itself, not the rest of the summary."""
    bad = [k for k, (ok, _) in RUN_FIELDS.items() if k in run and not ok(run[k])]
    return ({k: v for k, v in run.items() if k not in bad},
            [f'{path}: "{k}" is not {RUN_FIELDS[k][1]}; it is left out' for k in bad])


def _problems(files: dict, vocab: Vocab, run) -> list[str]:
    """What the other commands would refuse, found from the file list, its sizes and the
    JSON files alone (not the arrays: this stays fast for any corpus)."""
    out = [f"{name} is missing: run `w2v prepare` again" for name in (IDS_FILE, OFFSETS_FILE)
           if name not in files]
    stats = vocab.meta.get("stats", {})
    need = {IDS_FILE: 4 * stats.get("kept_tokens", 0),  # (N,) int32 after a header
            OFFSETS_FILE: 8 * (stats.get("sentences", -1) + 1)}  # (S + 1,) int64
    out += [f"{name} is {files[name]} bytes, too short to hold {need[name]} bytes of data: it is "
            "damaged, run `w2v prepare` again" for name in need
            if name in files and files[name] < need[name]]
    if run is None:
        return out
    if params.PARAMS_FILE not in files:
        out.append(f"{params.PARAMS_FILE} is missing: run `w2v train`")
    else:  # two (V, E) float32 tables after a header
        embed = (run.get("config") or {}).get("embed_size")
        tables = 2 * 4 * len(vocab) * embed if isinstance(embed, int) else 0
        if files[params.PARAMS_FILE] < tables:
            out.append(f"{params.PARAMS_FILE} is {files[params.PARAMS_FILE]} bytes, too short "
                       f"for two {len(vocab)} x {embed} tables: it is damaged, run `w2v train` "
                       "again")
    trained_on = (run.get("dataset") or {}).get("vocab_sha1")
    if trained_on and trained_on != params.vocab_sha1(vocab):
        out.append(f"the model was trained on another vocabulary than {VOCAB_FILE} holds now "
                   "(was `w2v prepare` run again?): run `w2v train`")
    return out


def _source_text(source: dict) -> str:
    if source.get("kind") == "ptb":
        return f"PTB {source.get('split', 'train')} split ({source.get('path', '?')})"
    if source.get("kind") == "files":
        files = source.get("files", [])
        shown = ", ".join(f["path"] for f in files[:3]) + (" ..." if len(files) > 3 else "")
        return f"{len(files)} file(s): {shown}"
    return "unknown"


def format_lines(info: dict) -> list[str]:
    """The summary as aligned ``name  value`` lines for a terminal."""
    ds, run = info["dataset"], info["run"]
    rows = [("workdir", info["workdir"]), ("corpus", _source_text(ds["source"]))]
    if "sentences" in ds:
        rows.append(("dataset", (f"{ds['sentences']} sentences, {ds['tokens']} tokens "
                                f"({ds['kept_tokens']} kept)")))
    rows.append(("vocabulary", f"{ds['vocab_size']} words (min count {ds['min_count']})"))
    if run is None:
        rows.append(("model", "not trained yet (run `w2v train`)"))
    else:
        cfg = run.get("config", {})
        epochs = run.get("epochs", [])
        done = len(epochs) if "epochs" in run else "?"  # "?": left out by _readable
        planned = cfg.get("epochs", done)
        state = "complete" if run.get("complete") else "incomplete"
        rows.append(("epochs", f"{done} of {planned} done ({state})"))
        rows.append(("settings", ", ".join(f"{k.replace('_', '-')} {cfg[k]}"
                                           for k in SETTINGS if k in cfg and _applies(k, cfg))))
        rows.append(("device", str(run.get("device", "?"))))
        if epochs:
            rows.append(("loss", "  ".join(f"{e['epoch']}: {e['loss']:.4f}" for e in epochs)))
            seconds = sum(e.get("seconds", 0) for e in epochs)
            # "centers": the name in run records written before tokens/sec was the one name
            tokens = sum(e.get("tokens", e.get("centers", 0)) for e in epochs)
            if seconds > 0:
                rows.append(("throughput", (f"{tokens / seconds:,.0f} tokens/sec "
                                           f"({seconds:.1f} s of training)")))
    rows.append(("files", ", ".join(f"{n} ({_size(s)})" for n, s in info["files"].items())))
    rows += [("problem", p) for p in info.get("problems", [])]
    width = max(len(name) for name, _ in rows)
    return [f"{name:<{width}}  {value}" for name, value in rows]


def _applies(name: str, cfg: dict) -> bool:
    """Whether setting ``name`` shaped the run of ``cfg``: not the noise options with
    hierarchical softmax, nor a noise group's size without noise groups."""
    if cfg.get("loss") == "hs" and name in NS_OPTIONS:
        return False
    return name != "group_noise" or bool(cfg.get("noise_group"))


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
