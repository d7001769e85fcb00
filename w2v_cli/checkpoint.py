"""A run on disk: checkpoints to resume from, plus ``model.params`` and ``run.json`` to query.

Layout in the working directory::

    checkpoints/step-EEEEE-BBBBBBBB/   one complete checkpoint: EEEEE epochs done and
        model.params                   BBBBBBBB batches of the next one (0 at an epoch end)
        trainer.states                 Adam's state, as ``trainer.save_states`` pickles it but
        state-N.npy                    with each state array in a file of its own
        catchup.npy                    sparse runs: CatchUp.last, (V,) int64 (optional: a
                                       checkpoint before version 3 has none)
        state.json                     position, RNG states, settings, run record, SHA-1s
    model.params                       the latest parameters (a hard link into the checkpoint,
                                       or, inside an epoch of a sparse run, a caught-up copy)
    run.json                           the run record: settings and per-epoch metrics

A sparse run's checkpoint holds the center table and Adam's moments as training has them,
idle rows not caught up to dense Adam (catchup.py), with each row's position in
``catchup.npy``: a run resumed from it catches every row up over the same steps as a run never
stopped, so it ends with the same bits. Where rows are behind (inside an epoch: an epoch's end
catches every row up) the ``model.params`` to query is the caught-up copy, written beside the
checkpoint, its SHA-1 in state.json's ``query_params``.

A checkpoint folder is written under a temporary name and renamed only once every file in it
is fsynced, so a folder with its final name is always complete; ``state.json`` also holds the
SHA-1 of the other two files, so a later bit flip is caught rather than trained on. The
newest KEEP checkpoints are kept. ``model.params`` and ``run.json`` are replaced atomically
after the checkpoint, so a crash leaves the previous pair or the new one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from . import arrays, fileio, limits
from .backend import current_mxnet
from .config import Config
from .config import default as config_default
from .errors import ResumeError, first_line
from .fileio import sha1_of
from .model import saved_tables
from .optstate import TRAINER_FILE, load_states, save_states
from .params import PARAMS_FILE, save_record, vocab_sha1

log = logging.getLogger(__name__)  # one-line notes; the CLI shows them as "note: ..."

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"
STATE_FORMAT = "w2v-checkpoint"
# 3: the table and moments of a sparse run as they are, with catchup.npy (2: caught up;
# 1: adam's state arrays inside trainer.states, not in state-N.npy files)
STATE_VERSION = 3
CATCHUP_FILE = "catchup.npy"
KEEP = 2
# What a checkpoint that predates a setting ran with, where that differs from today's default.
LEGACY = {"noise_group": 0, "bucket": False, "optimizer": "adam"}

# Settings that change what a run computes: resuming with any of them changed is an error.
# The others (epochs, device, log_interval, paths, speed knobs) may change between resumes.
MODEL_SETTINGS = ("model", "loss", "embed_size", "window", "negatives", "noise_group", "group_noise",
                  "subsample", "sample_once", "seed",
                  "batch_size", "optimizer", "lr", "chunk_tokens",  # chunks decide each epoch's draws
                  "bucket",  # decides each epoch's batches
                  "sparse_grad")  # lazy or dense adam, and the front end of Adam's state


def save(net, workdir: Path, record: dict) -> None:
    """Write ``model.params`` then ``run.json`` (no checkpoint: a dist run's rank 0). A net
    whose tables live on the parameter servers (row_sparse) is pulled whole first."""
    tables = saved_tables(net)
    limits.check_tables(tables.values(), f"after epoch {len(record.get('epochs', []))}")
    _save_tables(tables, workdir / PARAMS_FILE)
    save_record(workdir, {**record, "params_sha1": sha1_of(workdir / PARAMS_FILE)})


def _save_tables(tables: dict, path: Path) -> None:
    """``tables`` (model.saved_tables) to ``path``, atomically: ``save_parameters``' file."""
    mx = current_mxnet()  # a sparse run calls these in its legacy front end
    with fileio.atomic_path(path) as tmp:
        try:
            arrays.save(tmp, tables)
        except (OSError, mx.base.MXNetError) as e:
            raise fileio.storage_error(path, fileio.os_reason(e)) from None


def _save_caught_up(net, catch, path: Path) -> None:
    """Write to ``path`` the file ``net.save_parameters`` would, with ``catch``'s table caught
    up (CatchUp.caught_up) and the run's own table left as it is."""
    mx = current_mxnet()
    try:
        # save_parameters' own names and arrays ("0.weight": ...), one table swapped.
        tables = {name: catch.caught_up() if p is catch.param else p._reduce()
                  for name, p in net._collect_params_with_prefix().items()}
        arrays.save(path, tables)
    except (OSError, mx.base.MXNetError) as e:
        raise fileio.storage_error(path, fileio.os_reason(e)) from None


# ----------------------------------------------------------------------------- checkpoints

@dataclass
class Position:
    """Where a run stands: ``epoch`` epochs done, ``batch`` batches into the next one.

    ``rng_state``: numpy Generator state at the start of epoch ``epoch + 1`` (before its
    examples and shuffle were drawn), so that epoch can be redrawn and its first ``batch``
    batches skipped. ``loss_sum`` / ``seconds``: the partial epoch's totals so far.
    """

    epoch: int = 0
    batch: int = 0
    rng_state: Optional[dict] = None
    loss_sum: float = 0.0
    seconds: float = 0.0
    record: dict = field(default_factory=dict)
    path: Optional[Path] = None


def mx_seed(seed: int, epoch: int) -> int:
    """The seed mx.random gets at the start of ``epoch``. MXNet 1.x has no way to read its RNG
    state back, so training reseeds it every epoch; the state is then a function of
    (seed, epoch), which is what a checkpoint records."""
    return (seed * 1_000_003 + epoch) % (2 ** 31)


def dataset_fingerprint(ds) -> dict:
    """What a checkpoint remembers of its dataset, to refuse resuming on another one."""
    return {"vocab_size": len(ds.vocab), "vocab_sha1": vocab_sha1(ds.vocab),
            "tokens": int(ds.ids.size), "sentences": int(ds.n_sentences)}


def unfinished(workdir: Path) -> Optional[str]:
    """A description of the unfinished run in ``workdir`` (None if there is none)."""
    for d in _checkpoint_dirs(workdir):
        try:
            state = _read_state(d)
        except ResumeError:
            continue
        epochs = state.get("config", {}).get("epochs") if isinstance(state.get("config"),
                                                                     dict) else None
        if state.get("record", {}).get("complete") or state.get("epoch") == epochs:
            return None
        return f"{state.get('epoch')} of {epochs} epochs done"
    return None


def _checkpoint_dirs(workdir: Path) -> list[Path]:
    """Complete checkpoint folders, newest first (temporary ones start with a dot)."""
    root = workdir / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")),
                  key=lambda p: p.name, reverse=True)


def save_checkpoint(workdir: Path, net, trainer, config: Config, ds, pos: Position,
                    catch=None) -> Path:
    """Write one checkpoint folder, then ``model.params`` and ``run.json``; prune old ones.

    ``catch``: a sparse run's CatchUp, saved as it is (its rows behind stay behind in the
    checkpoint, and ``model.params`` gets them caught up)."""
    mx = current_mxnet()  # a sparse run calls these in its legacy front end
    limits.check_params(net, f"after {pos.epoch} epochs and {pos.batch} batches")
    root = workdir / CHECKPOINT_DIR
    final = root / f"step-{pos.epoch:05d}-{pos.batch:08d}"
    with contextlib.ExitStack() as then:
        query = None  # a caught-up model.params, renamed into place once the checkpoint is
        if catch is not None and catch.behind().size:
            query = then.enter_context(fileio.atomic_path(workdir / PARAMS_FILE))
            _save_caught_up(net, catch, query)
        with fileio.atomic_dir(final) as tmp:
            try:
                net.save_parameters(str(tmp / PARAMS_FILE))
                arrays = save_states(trainer, tmp)
                if catch is not None:
                    np.save(tmp / CATCHUP_FILE, catch.last, allow_pickle=False)
                    arrays.append(CATCHUP_FILE)
            except (OSError, mx.base.MXNetError) as e:
                raise fileio.storage_error(final, fileio.os_reason(e)) from None
            state = {
                "format": STATE_FORMAT, "version": STATE_VERSION,
                "epoch": pos.epoch, "batch": pos.batch,
                "numpy_rng": pos.rng_state, "mx_seed": mx_seed(config.seed, pos.epoch + 1),
                "loss_sum": pos.loss_sum, "seconds": pos.seconds,
                "config": config.to_dict(), "dataset": dataset_fingerprint(ds),
                "files": {name: sha1_of(tmp / name)
                          for name in (PARAMS_FILE, TRAINER_FILE, *arrays)},
                "query_params": sha1_of(query) if query else None,
                "record": pos.record,
            }
            try:  # atomic_dir fsyncs it with the rest, then renames the whole folder
                (tmp / STATE_FILE).write_text(
                    json.dumps(state, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            except OSError as e:
                raise fileio.storage_error(final, e.strerror or str(e)) from None
        for old in _superseded(workdir, final, pos.record.get("run")):
            shutil.rmtree(old, ignore_errors=True)
    if query is None:
        fileio.link_or_copy(final / PARAMS_FILE, workdir / PARAMS_FILE)
    save_record(workdir, {**pos.record, "checkpoint": f"{CHECKPOINT_DIR}/{final.name}",
                          "params_sha1": state["query_params"] or state["files"][PARAMS_FILE],
                          "dataset": state["dataset"]})
    return final


def start_run(workdir: Path) -> str:
    """Remove the temporary files a killed writer left and return a new run's id, for its
    record's ``run``. The previous run's checkpoints stay until this run has written its
    first complete one (see :func:`_superseded`), so a run that fails before that leaves
    them, and ``--resume``, as they were. Call only while holding the workdir lock."""
    for folder in (workdir, workdir / CHECKPOINT_DIR):
        fileio.remove_stale_temps(folder)
    return os.urandom(8).hex()


def _superseded(workdir: Path, final: Path, run: Optional[str]) -> list[Path]:
    """The checkpoint folders to remove once ``final`` is complete: every one of another
    run (whatever its name: a new run's first checkpoint can sort before the old run's),
    any of this run named after ``final``, and this run's beyond the newest KEEP."""
    ours = []
    gone = []
    for d in _checkpoint_dirs(workdir):
        if d == final:
            continue
        try:
            same = _read_state(d).get("record", {}).get("run") == run
        except (ResumeError, AttributeError):
            same = False
        (ours if same and d.name < final.name else gone).append(d)
    return gone + ours[KEEP - 1:]


def _read_state(d: Path) -> dict:
    path = d / STATE_FILE
    state = fileio.read_json(path, "checkpoint state", ResumeError, f"{path} is missing")
    fileio.check_format(path, state, STATE_FORMAT, STATE_VERSION, "checkpoint", ResumeError,
                        oldest=1)
    return state


def _verify(d: Path) -> dict:
    """The state of checkpoint folder ``d`` if it is complete and intact, else ResumeError."""
    state = _read_state(d)
    files = state.get("files")
    if not isinstance(files, dict):
        raise ResumeError(f"{d / STATE_FILE} lists no files")
    # The two files every checkpoint has, then the state arrays it lists (format 2).
    for name in (PARAMS_FILE, TRAINER_FILE,
                 *(n for n in files if n not in (PARAMS_FILE, TRAINER_FILE))):
        try:
            ok = sha1_of(d / name) == files.get(name)
        except OSError:
            ok = False
        if not ok:
            raise ResumeError(f"{d / name} is missing or does not match its SHA-1")
    for key, kind in (("epoch", int), ("batch", int), ("config", dict), ("record", dict),
                      ("numpy_rng", dict), ("dataset", dict)):
        if not isinstance(state.get(key), kind):
            raise ResumeError(f"{d / STATE_FILE}: {key!r} is missing or malformed")
    return state


def latest(workdir: Path) -> tuple[Path, dict, list[str]]:
    """The newest intact checkpoint: (folder, state, notes on newer ones that were skipped).

    A checkpoint written by a newer w2v is an error, not something to skip past."""
    notes = []
    for d in _checkpoint_dirs(workdir):
        try:
            return d, _verify(d), notes
        except ResumeError as e:
            if "newer w2v" in str(e):
                raise
            notes.append(f"skipped {d.name}: {e}")
    raise ResumeError(f"no complete checkpoint to resume in {workdir / CHECKPOINT_DIR}"
                      + (f" ({'; '.join(notes)})" if notes else "")
                      + ": run `w2v train` without --resume to start a new run")


def _setting_diffs(saved: dict, current: dict, names=MODEL_SETTINGS) -> list[str]:
    """One line for each of the model settings ``names`` whose ``current`` value differs
    from the checkpoint's settings ``saved`` (those that decide nothing left out)."""
    # A checkpoint from before a setting existed ran with its default.
    saved = {k: saved.get(k, LEGACY.get(k, config_default(k))) for k in MODEL_SETTINGS}
    # Without noise groups their size decides nothing.
    unused = ({"group_noise"} if not (saved["noise_group"] or current.get("noise_group"))
              else set())
    if saved["loss"] == current.get("loss", saved["loss"]) == "hs":  # no noise words at all
        unused.add("negatives")
    return [f"--{k.replace('_', '-')} is {current[k]!r} but the checkpoint has {saved[k]!r}"
            for k in names if saved[k] != current[k] and k not in unused]


def _refuse(diffs: list[str]) -> None:
    if diffs:
        raise ResumeError("cannot resume: " + "; ".join(diffs) + ". Resume with the checkpoint's "
                          "settings (leave those options out) or start a new run without "
                          "--resume")


def check_given(saved: dict, given: dict) -> None:
    """Raise ResumeError for a model setting named in ``given`` (the options a user gave)
    that differs from the checkpoint's ``saved`` settings: said before the settings' mix is
    judged, so `--resume --model cbow` is told that the run is skip-gram, not that noise
    groups need skip-gram."""
    _refuse(_setting_diffs(saved, given, [k for k in MODEL_SETTINGS if given.get(k) is not None]))


def check_resume(saved: dict, config: Config, fingerprint: dict, saved_fingerprint: dict) -> None:
    """Raise ResumeError naming every model setting, or dataset property, that differs."""
    diffs = _setting_diffs(saved, config.to_dict())
    for key, what in (("vocab_size", "vocabulary size"), ("vocab_sha1", "vocabulary"),
                      ("tokens", "number of tokens"), ("sentences", "number of sentences")):
        if saved_fingerprint.get(key) != fingerprint[key]:
            diffs.append(f"the dataset's {what} differs from the checkpoint's "
                         f"({fingerprint[key]} now, {saved_fingerprint.get(key)} then; was "
                         "`w2v prepare` run again?)")
            break
    _refuse(diffs)


def resume(workdir: Path, config: Config, ds, net, trainer, ctx, catch=None) -> Position:
    """Load the newest intact checkpoint into ``net``, ``trainer`` and a sparse run's CatchUp
    ``catch`` (after checking that it was trained with the same model settings and dataset)
    and return where it stands."""
    mx = current_mxnet()  # a sparse run calls these in its legacy front end
    for folder in (workdir, workdir / CHECKPOINT_DIR):
        fileio.remove_stale_temps(folder)  # what a killed writer left; we hold the lock
    d, state, notes = latest(workdir)
    check_resume(state["config"], config, dataset_fingerprint(ds), state["dataset"])
    if state["epoch"] > config.epochs or (state["epoch"] == config.epochs and state["batch"]):
        done = state["epoch"]
        where = (f"inside epoch {done + 1} ({done} done)" if state["batch"]
                 else f"after epoch {done}")
        raise ResumeError(f"--epochs {config.epochs} ends before the checkpoint, which stands "
                          f"{where}: give --epochs {done + 1 if state['batch'] else done} "
                          "or more")
    try:
        net.load_parameters(str(d / PARAMS_FILE), ctx=ctx)
        load_states(trainer, d)
        if catch is not None:  # a checkpoint before version 3 was saved caught up, without it
            catch.resumed(np.load(d / CATCHUP_FILE, allow_pickle=False)
                          if CATCHUP_FILE in state["files"] else None)
    except (OSError, mx.base.MXNetError, AssertionError, ValueError, pickle.UnpicklingError) as e:
        raise ResumeError(f"cannot load the checkpoint {d}: {first_line(e)}") from None
    for note in notes:  # a newer checkpoint that is damaged: say why an older one is used
        log.warning(f"resuming from {d.name}; {note}")
    record = dict(state["record"])
    record.setdefault("resumed", []).append({"epoch": state["epoch"], "batch": state["batch"],
                                             "notes": notes})
    return Position(state["epoch"], state["batch"], state["numpy_rng"],
                    float(state.get("loss_sum", 0.0)), float(state.get("seconds", 0.0)),
                    record, d)


def restore_rng(rng: np.random.Generator, pos: Position) -> None:
    """Put ``rng`` back in the state it had at the start of epoch ``pos.epoch + 1``."""
    try:
        rng.bit_generator.state = pos.rng_state
    except (TypeError, ValueError, KeyError) as e:
        raise ResumeError(f"{pos.path}: the saved random state does not load ({e})") from None


def saved_config(workdir: Path) -> dict:
    """The settings of the newest intact checkpoint (for ``--resume`` to start from)."""
    return {**LEGACY, **latest(workdir)[1]["config"]}
