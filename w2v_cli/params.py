"""A trained run as queries read it: ``model.params`` and ``run.json``, without MXNet.

``model.params`` is MXNet's own file of named arrays; :func:`read_params` reads it with numpy,
checking every length first, so the query commands need no MXNet and a truncated file is a
clear error. run.json records the SHA-1 of the parameters of a complete checkpoint and the
vocabulary they were trained on, which :func:`load_tables` and :func:`check_vocab` check.
"""

from __future__ import annotations

import contextlib

import hashlib
import json
import struct
from pathlib import Path
from typing import Optional

import numpy as np

from . import fileio
from .errors import ModelError

PARAMS_FILE = "model.params"
RUN_FILE = "run.json"
RUN_FORMAT = "w2v-run"
RUN_VERSION = 1

CENTER_KEY = "0.weight"   # parameter names in model.params: net[0] and net[1]
CONTEXT_KEY = "1.weight"


# ----------------------------------------------------------------------------- run record

def save_record(workdir: Path, record: dict, name: str = RUN_FILE) -> None:
    fileio.write_json(workdir / name, {"format": RUN_FORMAT, "version": RUN_VERSION, **record})


def worker_record_name(rank: int) -> str:
    """The run record of a parameter-server worker of rank >= 1 (rank 0 writes run.json)."""
    return f"run.rank{rank}.json"


def remove_worker_records(workdir: Path, from_rank: int) -> None:
    """Remove the worker records of rank ``from_rank`` and up: at the end of a run, those
    that describe another job's workers (a one-machine run: 1, every one; a job of n
    workers: n)."""
    for path in workdir.glob(worker_record_name("*")):
        rank = path.name[len("run.rank"):-len(".json")]
        if rank.isdigit() and int(rank) >= from_rank:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def load_record(workdir: Path) -> dict:
    path = workdir / RUN_FILE
    d = fileio.read_json(path, "run record", ModelError,
                   f"no trained model in {workdir}: run `w2v train` first")
    return fileio.check_format(path, d, RUN_FORMAT, RUN_VERSION, "run record", ModelError)


def load_record_if_any(workdir: Path) -> Optional[dict]:
    """The run record, or None when there is no run.json (parameters saved by something
    other than `w2v train`). Read it once and pass it to :func:`load_tables` and
    :func:`check_vocab`."""
    return load_record(workdir) if (workdir / RUN_FILE).is_file() else None


_READ = object()  # "record" not given: the check reads run.json itself


# ----------------------------------------------------------------------------- .params files

_LIST_MAGIC = 0x112
_ARRAY_MAGICS = (0xF993FAC9, 0xF993FACA)  # NDArray V2, V3 (numpy shape semantics)
_DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8,
           6: np.int64}


class _Reader:
    def __init__(self, data: bytes, path: Path):
        # A memoryview: take() slices it without copying, so the arrays share ``data``.
        self.data, self.pos, self.path = memoryview(data), 0, path

    def bad(self, why: str) -> ModelError:
        return ModelError(f"{self.path} is not a readable MXNet parameter file ({why}); "
                          "it is truncated or corrupted: re-run `w2v train`")

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self.bad(f"ends early at byte {len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))[0]


def read_params(path: Path) -> dict[str, np.ndarray]:
    """Read a dense MXNet ``.params`` file (``save_parameters`` / ``nd.save`` of named arrays)
    into numpy arrays, checking every length against the file size before reading, so a
    truncated or corrupted file raises ModelError and never makes MXNet allocate garbage.
    The arrays are read-only views of the file's bytes (one copy in memory, not two)."""
    return read_params_sha1(path)[0]


def read_params_sha1(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """:func:`read_params` plus the SHA-1 of the bytes it read, so checking the file against
    a recorded digest needs no second read."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelError(f"no trained model: {path} is missing; run `w2v train` first") from None
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e.strerror or e}") from None
    r = _Reader(data, Path(path))
    if len(data) < 24 or r.unpack("Q") != _LIST_MAGIC:
        raise r.bad("wrong magic number" if len(data) >= 8 else "too short")
    r.unpack("Q")  # reserved
    n = r.unpack("Q")
    if n > len(data) // 24:
        raise r.bad(f"claims {n} arrays")
    arrays = []
    for _ in range(n):
        if r.unpack("I") not in _ARRAY_MAGICS:
            raise r.bad("wrong array magic number")
        if r.unpack("i") != 0:
            raise r.bad("sparse arrays are not w2v parameters")
        ndim = r.unpack("i")
        if not 1 <= ndim <= 8:
            raise r.bad(f"an array with {ndim} dimensions")
        shape = tuple(r.unpack("q") for _ in range(ndim))
        if any(d < 0 for d in shape):
            raise r.bad(f"negative shape {shape}")
        r.unpack("i"), r.unpack("i")  # device type and id it was saved from
        dtype = _DTYPES.get(r.unpack("i"))
        if dtype is None:
            raise r.bad("unknown data type")
        size = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
        arrays.append(np.frombuffer(r.take(size), dtype=dtype).reshape(shape))
    if r.unpack("Q") != n:
        raise r.bad("names do not match the arrays")
    names = []
    for _ in range(n):
        try:
            names.append(bytes(r.take(r.unpack("Q"))).decode("utf-8"))
        except UnicodeDecodeError:
            raise r.bad("a name is not UTF-8") from None
    if r.pos != len(data):
        raise r.bad(f"{len(data) - r.pos} bytes after the end")
    if len(set(names)) != n:
        raise r.bad("duplicate names")
    return dict(zip(names, arrays)), hashlib.sha1(data).hexdigest()


def load_tables(workdir: Path, vocab_size: int, record=_READ) -> dict[str, np.ndarray]:
    """Both embedding tables as read-only numpy arrays, ``{"center": (V, E), "context":
    (V, E)}`` float32, checked against the vocabulary size and, when run.json records one,
    the SHA-1 of a complete checkpoint. Needs no MXNet, only the saved arrays.

    record: the run record from :func:`load_record_if_any` (None: no run.json), if the
    caller has read it already; by default run.json is read here."""
    path = workdir / PARAMS_FILE
    if not path.is_file():
        raise ModelError(f"no trained model in {workdir} ({PARAMS_FILE} missing): "
                         "run `w2v train` first")
    arrays, digest = read_params_sha1(path)
    if {CENTER_KEY, CONTEXT_KEY} - arrays.keys():
        raise ModelError(f"{path} does not hold w2v embeddings ({CENTER_KEY}, {CONTEXT_KEY})")
    tables = {"center": arrays[CENTER_KEY], "context": arrays[CONTEXT_KEY]}
    for name, t in tables.items():
        if t.dtype != np.float32:
            raise ModelError(f"{path}: the {name} table's dtype is {t.dtype}, expected float32; "
                             "the file is damaged or not from `w2v train` (re-run `w2v train`)")
        if t.ndim != 2 or t.shape[0] != vocab_size:
            raise ModelError(
                f"{path}: the {name} table has shape {t.shape} but the vocabulary has "
                f"{vocab_size} words; the parameters come from a different run (re-run `w2v train`)"
            )
    if tables["center"].shape != tables["context"].shape:
        raise ModelError(f"{path}: the tables' shapes differ: center {tables['center'].shape}, "
                         f"context {tables['context'].shape}; the file is damaged or not from "
                         "`w2v train` (re-run `w2v train`)")
    _check_params_sha1(workdir, path, digest,
                       load_record_if_any(workdir) if record is _READ else record)
    return tables


def _checkpointed_digests(workdir: Path) -> set:
    """The SHA-1s of model.params that the checkpoints' state.json files record (checkpoint.py
    writes them; unreadable ones are passed over): their own, or the caught-up copy's."""
    digests = set()
    for state in sorted((workdir / "checkpoints").glob("step-*/state.json")):
        try:
            saved = json.loads(state.read_text(encoding="utf-8"))
            digests.update((saved.get("files", {}).get(PARAMS_FILE), saved.get("query_params")))
        except (OSError, ValueError, AttributeError):
            continue
    return digests


def _check_params_sha1(workdir: Path, path: Path, digest: str, record: Optional[dict]) -> None:
    """digest: the SHA-1 of the bytes of ``path`` that were read."""
    if record is None:
        return  # parameters saved by something other than `w2v train`: shape checks only
    known = record.get("params_sha1")
    if known is None or digest == known:
        return
    # A crash between replacing model.params and run.json leaves run.json one checkpoint
    # behind; the parameters are fine if a complete checkpoint holds exactly these bytes.
    if digest in _checkpointed_digests(workdir):
        return
    raise ModelError(f"{path} does not match the checksum in {workdir / RUN_FILE}: the file is "
                     "corrupted or comes from another run; run `w2v train --resume` to restore "
                     "it from the latest checkpoint, or `w2v train` to retrain")


def vocab_sha1(vocab) -> str:
    """A digest of the tokens and counts (not of vocab.json, which also holds timings)."""
    h = hashlib.sha1()
    h.update(json.dumps(vocab.tokens, ensure_ascii=False).encode("utf-8"))
    h.update(vocab.counts.astype("<i8").tobytes())
    return h.hexdigest()


def check_vocab(workdir: Path, vocab, record=_READ) -> None:
    """Raise ModelError if run.json says the model was trained on another vocabulary (the
    same size is not enough: `w2v prepare` on another corpus can give the same size).

    record: as for :func:`load_tables`."""
    if record is _READ:
        record = load_record_if_any(workdir)
    if record is None:
        return
    trained_on = record.get("dataset", {})
    if isinstance(trained_on, dict) and trained_on.get("vocab_sha1") not in (
            None, vocab_sha1(vocab)):
        raise ModelError(f"the model in {workdir} was trained on another vocabulary than its "
                         "vocab.json (was `w2v prepare` run again after `w2v train`?): re-run "
                         "`w2v train`")
