"""Where sentences come from: the PTB archive (fetched and verified) or the user's files.

A corpus is a list of text lines, one sentence a line, tokens separated by whitespace.
"""

from __future__ import annotations

import bz2
import contextlib
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


def ensure_ptb(data_dir: Path, progress: Optional[Progress] = None, url: str = PTB_URL) -> Path:
    """Return the path of a verified ``ptb.zip`` in ``data_dir``, downloading it if needed.

    An archive already there that verifies is used as is. One that does not is replaced by a
    fresh download, and only once that download verifies.
    """
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


BLOCK_BYTES = 1 << 18  # bytes of text decoded and split at once when streaming (small:
# each token becomes a Python string until its block is encoded)


@dataclass
class LineStream:
    """A corpus read block by block instead of whole: the same lines ``read_files`` or
    ``read_ptb`` give, never all in memory. ``total_bytes``: size of the text when known
    (plain files), for progress; ``source`` as in ``Corpus``."""

    opens: list  # (name, zero-argument function returning a binary file object)
    source: dict
    total_bytes: Optional[int] = None

    def blocks(self, block_bytes: Optional[int] = None):
        """Yield ``(lines, nbytes)``: lists of decoded lines cut at line ends, and the bytes
        they came from. Raises DataError naming file and line for bytes that are not UTF-8."""
        block_bytes = block_bytes or BLOCK_BYTES
        for name, open_ in self.opens:
            line_no = 0
            try:
                with open_() as f:
                    while True:
                        raw_lines = f.readlines(block_bytes)
                        if not raw_lines:
                            break
                        raw = b"".join(raw_lines)
                        try:
                            text = raw.decode("utf-8")
                        except UnicodeDecodeError as e:
                            line = line_no + raw.count(b"\n", 0, e.start) + 1
                            raise DataError(f"{name}, line {line}: not valid UTF-8 "
                                            f"({e.reason})") from None
                        line_no += len(raw_lines)
                        yield text.splitlines(), len(raw)
            except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as e:
                raise DataError(f"cannot read corpus file {name}: {e}") from None


def stream_files(paths: list[str | Path]) -> LineStream:
    """``read_files`` as a LineStream: plain, .gz, .bz2 or .xz files, or folders of them."""
    files = corpus_files(paths)
    opens = [(str(p), (lambda p=p: _OPENERS.get(p.suffix, open)(p, "rb"))) for p in files]
    records = [{"path": str(p.resolve()), "sha1": sha1_of(p)} for p in files]
    plain = all(p.suffix not in _OPENERS for p in files)
    total = sum(p.stat().st_size for p in files) if plain else None
    return LineStream(opens, {"kind": "files", "files": records}, total)


def stream_ptb(archive: Path, split: str = "train") -> LineStream:
    """``read_ptb`` as a LineStream."""
    member = PTB_SPLITS[split]
    try:
        with zipfile.ZipFile(archive) as z:
            total = z.getinfo(member).file_size
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise DataError(f"cannot read {member} from {archive}: {e}") from None

    @contextlib.contextmanager
    def open_member():
        with zipfile.ZipFile(archive) as z, z.open(member) as f:
            yield f

    return LineStream([(f"{archive}:{member}", open_member)],
                      {"kind": "ptb", "split": split, "path": str(archive), "sha1": PTB_SHA1},
                      total)
