"""Where sentences come from: the PTB archive (fetched and verified) or the user's files.

A corpus is a list of text lines, one sentence a line, tokens separated by whitespace.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from . import fileio
from .errors import DataError, DownloadError

PTB_URL = "http://d2l-data.s3-accelerate.amazonaws.com/ptb.zip"
PTB_SHA1 = "319d85e578af0cdc590547f26231e4e31cdf1e42"
PTB_ARCHIVE = "ptb.zip"
PTB_SPLITS = {"train": "ptb/ptb.train.txt", "valid": "ptb/ptb.valid.txt", "test": "ptb/ptb.test.txt"}

# (bytes_done, bytes_total or None) -> None
Progress = Callable[[int, Optional[int]], None]

_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


@dataclass
class Corpus:
    """Text lines plus a record of where they came from (paths and SHA-1 of each file)."""

    lines: list[str]
    source: dict = field(default_factory=dict)


def sha1_of(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ensure_ptb(data_dir: Path, progress: Optional[Progress] = None,
               url: Optional[str] = None) -> Path:
    """Return the path of a verified ``ptb.zip`` in ``data_dir``, downloading it if needed.

    An archive already there that verifies is used as is. One that does not is replaced by a
    fresh download, and only once that download verifies.
    """
    url = url or PTB_URL
    path = data_dir / PTB_ARCHIVE
    if path.is_file() and sha1_of(path) == PTB_SHA1:
        return path
    bad = path.is_file()
    try:
        download(url, path, PTB_SHA1, progress)
    except DownloadError as e:
        if bad:
            raise DownloadError(
                f"{path} has the wrong SHA-1 (expected {PTB_SHA1}) and a fresh copy could not be "
                f"fetched: {e}. Delete it, or replace it with the archive from {url}."
            ) from None
        raise DownloadError(
            f"{e}. To work offline, put the archive from {url} (SHA-1 {PTB_SHA1}) at {path} "
            f"or point --data-dir / W2V_DATA_DIR at the folder that holds it."
        ) from None
    return path


def download(url: str, dest: Path, sha1: str, progress: Optional[Progress] = None) -> None:
    """Fetch ``url`` to ``dest`` through a temporary file renamed only if its SHA-1 matches."""
    h = hashlib.sha1()
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total else None
            done = 0
            with fileio.atomic_path(dest) as tmp, open(tmp, "wb") as out:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    h.update(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
                out.flush()
                if h.hexdigest() != sha1:
                    raise DownloadError(
                        f"downloaded {url} but its SHA-1 is {h.hexdigest()}, expected {sha1}"
                    )
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"could not download {url}: {getattr(e, 'reason', e)}") from None


def read_ptb(archive: Path, split: str = "train") -> Corpus:
    """Read one split of the PTB archive, as the d2l chapter does: one sentence a line."""
    try:
        with zipfile.ZipFile(archive) as z:
            raw = z.read(PTB_SPLITS[split])
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise DataError(f"cannot read {PTB_SPLITS[split]} from {archive}: {e}") from None
    lines = _decode(raw, f"{archive}:{PTB_SPLITS[split]}").splitlines()
    return Corpus(lines, {"kind": "ptb", "split": split, "path": str(archive), "sha1": PTB_SHA1})


def corpus_files(paths: list[str | Path]) -> list[Path]:
    """Expand folders (recursively, sorted) into the files they hold."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            if not found:
                raise DataError(f"corpus folder {p} holds no files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"corpus file {p} does not exist")
    return files


def read_files(paths: list[str | Path]) -> Corpus:
    """Read plain, .gz, .bz2 or .xz text files (or folders of them) as UTF-8 lines."""
    lines: list[str] = []
    records = []
    for path in corpus_files(paths):
        opener = _OPENERS.get(path.suffix, open)
        try:
            with opener(path, "rb") as f:
                raw = f.read()
        except (OSError, EOFError, lzma.LZMAError) as e:
            raise DataError(f"cannot read corpus file {path}: {e}") from None
        lines.extend(_decode(raw, str(path)).splitlines())
        records.append({"path": str(path.resolve()), "sha1": sha1_of(path)})
    return Corpus(lines, {"kind": "files", "files": records})


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{name}, line {line}: not valid UTF-8 ({e.reason})") from None
