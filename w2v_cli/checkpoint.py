"""A run on disk: ``model.params`` (both tables) and ``run.json`` (settings and metrics).

Both are written atomically, the parameters first, so ``run.json`` never describes
parameters that are not there yet.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import fileio
from .backend import mxnet
from .errors import ModelError
from .model import CENTER_KEY, CONTEXT_KEY

PARAMS_FILE = "model.params"
RUN_FILE = "run.json"
RUN_FORMAT = "w2v-run"
RUN_VERSION = 1


def save(net, workdir: Path, record: dict) -> None:
    with fileio.atomic_path(workdir / PARAMS_FILE) as tmp:
        net.save_parameters(str(tmp))
    save_record(workdir, record)


def save_record(workdir: Path, record: dict, name: str = RUN_FILE) -> None:
    fileio.write_json(workdir / name, {"format": RUN_FORMAT, "version": RUN_VERSION, **record})


def load_record(workdir: Path) -> dict:
    path = workdir / RUN_FILE
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"no trained model in {workdir}: run `w2v train` first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path} is not a readable run record: {e}") from None
    if not isinstance(d, dict) or d.get("format") != RUN_FORMAT:
        raise ModelError(f"{path} is not a w2v run record")
    if d.get("version") != RUN_VERSION:
        raise ModelError(f"{path} has run format version {d.get('version')!r}; "
                         f"this w2v reads version {RUN_VERSION}")
    return d


def load_tables(workdir: Path, vocab_size: int) -> dict[str, np.ndarray]:
    """Both embedding tables as numpy arrays, ``{"center": (V, E), "context": (V, E)}`` float32,
    checked against the vocabulary size. Needs no network, only the saved arrays."""
    path = workdir / PARAMS_FILE
    if not path.is_file():
        raise ModelError(f"no trained model in {workdir} ({PARAMS_FILE} missing): "
                         "run `w2v train` first")
    mx = mxnet()
    try:
        arrays = mx.nd.load(str(path))
    except mx.base.MXNetError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unreadable"
        raise ModelError(f"{path} is not a readable MXNet parameter file ({first})") from None
    if not isinstance(arrays, dict) or {CENTER_KEY, CONTEXT_KEY} - arrays.keys():
        raise ModelError(f"{path} does not hold w2v embeddings ({CENTER_KEY}, {CONTEXT_KEY})")
    tables = {"center": arrays[CENTER_KEY].asnumpy(), "context": arrays[CONTEXT_KEY].asnumpy()}
    for name, t in tables.items():
        if t.ndim != 2 or t.shape[0] != vocab_size:
            raise ModelError(
                f"{path}: the {name} table has shape {t.shape} but the vocabulary has "
                f"{vocab_size} words; the parameters come from a different run (re-run `w2v train`)"
            )
    return tables
