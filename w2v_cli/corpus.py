"""Where sentences come from: the PTB archive (fetched and verified) or the user's files.

A corpus is a list of text lines, one sentence a line, tokens separated by whitespace. Only
\n and \r\n end a line; the other characters str.splitlines() breaks on (\v, \f, \x1c-\x1e,
\x85, U+2028, U+2029, a bare \r) are whitespace between tokens, as str.split() sees them.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import lzma
import os
import re
import stat
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import fileio
from .fileio import sha1_of
from .errors import DataError, DownloadError

PTB_URL = "http://d2l-data.s3-accelerate.amazonaws.com/ptb.zip"
PTB_SHA1 = "319d85e578af0cdc590547f26231e4e31cdf1e42"
PTB_ARCHIVE = "ptb.zip"
PTB_SPLITS = {"train": "ptb/ptb.train.txt", "valid": "ptb/ptb.valid.txt", "test": "ptb/ptb.test.txt"}

# (bytes_done, bytes_total or None) -> None
Progress = Callable[[int, Optional[int]], None]

_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}

# ``strict``: invalid UTF-8 is an error naming file and line; ``replace``: bad bytes become U+FFFD.
ENCODING_ERRORS = ("strict", "replace")
# No word is this long: a longer run of non-space characters means the file is not text
# (or has no spaces), and one such "token" would bloat the vocabulary file.
MAX_TOKEN_CHARS = 1000
_LONG_TOKEN = re.compile(r"\S{%d}" % (MAX_TOKEN_CHARS + 1))


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
    if path.exists() and not path.is_file():
        raise DataError(f"{path} is not a file (a folder, a pipe or a device), so it is not the "
                        f"PTB archive and a download cannot go there: move it, or point "
                        f"--data-dir / W2V_DATA_DIR at another folder")
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
    """Fetch ``url`` to ``dest`` through a temporary file renamed only if its SHA-1 matches.

    A network failure is a DownloadError, a write failure (full disk) a StorageError; either
    way ``dest`` keeps what it held before.
    """
    h = hashlib.sha1()

    def fetch(tmp: Path) -> None:
        try:
            response = urllib.request.urlopen(url, timeout=30)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise DownloadError(f"could not download {url}: {getattr(e, 'reason', e)}") from None
        with response, open(tmp, "wb") as out:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            while True:
                try:
                    block = response.read(1 << 16)
                except (urllib.error.URLError, OSError) as e:
                    raise DownloadError(f"could not download {url}: "
                                        f"{getattr(e, 'reason', e)}") from None
                if not block:
                    break
                out.write(block)  # an OSError here is the disk's: atomic_write maps it
                h.update(block)
                done += len(block)
                if progress:
                    progress(done, total)
            out.flush()
        if h.hexdigest() != sha1:
            raise DownloadError(f"downloaded {url} but its SHA-1 is {h.hexdigest()}, "
                                f"expected {sha1}")

    fileio.atomic_write(dest, fetch)


def _inside(path: Path, folder: Optional[Path]) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder)
    except ValueError:
        return False
    return True


def corpus_files(paths: list[str | Path], exclude: Optional[Path] = None) -> list[Path]:
    """Expand folders (recursively, sorted) into the files they hold. ``exclude``: a folder
    (the workdir) whose files are w2v's own: skipped inside a corpus folder, and a corpus
    folder inside it refused (a file named on its own is read wherever it is)."""
    exclude = exclude.resolve() if exclude is not None else None
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and _inside(p, exclude):
            raise DataError(f"corpus folder {p} is in the working directory {exclude}, whose "
                            "files are w2v's own, not corpus; move it or use another --workdir")
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")
                           and not _inside(f, exclude))
            if not found:
                raise DataError(f"corpus folder {p} holds no files")
            files.extend(found)
        elif p.is_file() or p.is_fifo():
            files.append(p)
        elif p.exists():
            raise DataError(f"corpus file {p} is neither a file, a folder nor a pipe (a device "
                            "or a socket); give text files, folders of them, or a pipe")
        else:
            raise DataError(f"corpus file {p} does not exist")
    return files


def _decode(raw: bytes, name: str, errors: str, first_line: int = 1) -> str:
    """UTF-8 text of a corpus file (or of a block of its whole lines starting at line
    ``first_line``), or a DataError that names the file and line."""
    nul = raw.find(b"\0")
    if nul >= 0:
        line = first_line + raw.count(b"\n", 0, nul)
        raise DataError(f"{name}, line {line}: a NUL byte; this looks like a binary file, "
                        "not text with one sentence a line")
    try:
        text = raw.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        line = first_line + raw.count(b"\n", 0, e.start)
        raise DataError(f"{name}, line {line}: not valid UTF-8 ({e.reason}); fix the file or "
                        "pass --encoding-errors replace") from None
    long = _LONG_TOKEN.search(text) if _may_hold_long_token(raw) else None
    if long:
        line = first_line + text.count("\n", 0, long.start())
        raise DataError(f"{name}, line {line}: more than {MAX_TOKEN_CHARS} characters without "
                        "a space; is this a text corpus with words separated by spaces?")
    return text


def _may_hold_long_token(raw: bytes) -> bool:
    """Whether ``raw`` has a run of over MAX_TOKEN_CHARS bytes without an ASCII space, tab or
    line break: what a token of over MAX_TOKEN_CHARS characters needs (UTF-8 never puts those
    bytes inside a character). One numpy pass, several times faster than the regex it spares
    on ordinary text; the regex still finds the exact place when this says yes."""
    if len(raw) <= MAX_TOKEN_CHARS:
        return False
    b = np.frombuffer(raw, dtype=np.uint8)
    spaces = np.flatnonzero((b == 32) | ((b >= 9) & (b <= 13)))
    return int(np.diff(spaces, prepend=-1, append=b.size).max()) - 1 > MAX_TOKEN_CHARS


BLOCK_BYTES = 1 << 18  # bytes of text decoded and split at once when streaming (small:
# each token becomes a Python string until its block is encoded)


@dataclass
class LineStream:
    """A corpus read block by block, never all in memory. ``total_bytes``: size of the text
    when known (plain files), for progress; ``source``: where the lines come from (the PTB
    archive, or each file's path and SHA-1), saved in vocab.json."""

    opens: list  # (name, zero-argument function returning a binary file object)
    source: dict
    total_bytes: Optional[int] = None
    errors: str = "strict"  # invalid UTF-8: strict (an error naming file and line) or replace
    lowercase: bool = False  # str.lower on each decoded block: one C call, not one per token

    def blocks(self, block_bytes: Optional[int] = None):
        """Yield ``(lines, nbytes, open_end)``: lists of decoded lines and the bytes they came
        from. A block ends after a line end, or, inside a line longer than ``block_bytes``,
        after ASCII whitespace: then ``open_end`` is true and the block's last line goes on as
        the next block's first. So no character or token is cut between two blocks, and memory
        does not grow with the length of a line. Raises DataError naming file and line for
        what is not text: bytes that are not UTF-8 (unless ``errors`` is
        ``replace``), a NUL byte, a run of over MAX_TOKEN_CHARS characters without a space."""
        block_bytes = block_bytes or BLOCK_BYTES
        for name, open_ in self.opens:
            line_no = 0
            try:
                with open_() as f:
                    for raw, open_end in _whole_lines(f, block_bytes):
                        text = _decode(raw, name, self.errors, line_no + 1)
                        if self.lowercase:
                            text = text.lower()
                        line_no += raw.count(b"\n")
                        yield text.split("\n"), len(raw), open_end
            except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile, ValueError) as e:
                raise DataError(f"cannot read corpus file {name}: {e}") from None


# Bytes of a run without whitespace that surely hold over MAX_TOKEN_CHARS characters
# (UTF-8 takes at most 4 a character), cut at a character's start.
_MAX_RUN_BYTES = 4 * (MAX_TOKEN_CHARS + 2)
# Where a line too long for one block may be cut: ASCII whitespace, which str.split() splits
# on and UTF-8 never puts inside a character.
_SPACE_BYTES = [bytes([c]) for c in b" \t\r\x0b\x0c\x1c\x1d\x1e\x1f"]


def _whole_lines(f, block_bytes: int):
    """Yield ``(piece, open_end)``: the bytes of binary file ``f`` in pieces of about
    ``block_bytes``, each cut after a line end (``open_end`` false) or, when a piece read holds
    no line end, after its last ASCII whitespace (``open_end`` true: the line goes on). The
    last piece ends wherever the file ends. A run without any whitespace is held until it
    is longer than any token may be, then handed on whole characters at a time (to the
    long-token check, which refuses it): memory stays bounded by the block size.

    Read by size and cut, not line by line: a zip member's readline is Python code, and
    PTB's 42k lines took a third of `prepare` that way."""
    pending: list[bytes] = []  # the pieces since the last cut, which hold no line end and no
    while True:                # whitespace (joined once: linear however long they run)
        piece = f.read(block_bytes)
        if not piece:
            if pending:
                yield b"".join(pending), False
            return
        cut = piece.rfind(b"\n") + 1
        open_end = not cut
        if open_end:
            cut = max(piece.rfind(c) for c in _SPACE_BYTES) + 1
            if not cut:
                pending.append(piece)
                if sum(map(len, pending)) > _MAX_RUN_BYTES:  # longer than any token may be:
                    run = b"".join(pending)                   # on to the check that refuses it
                    end = next((j for j in range(len(run) - 4, len(run))
                                if run[j] & 0xC0 != 0x80),  # a character's first byte,
                               len(run))  # or none: not UTF-8, which decoding will say
                    yield run[:end], True
                    pending = [run[end:]]
                continue
        yield b"".join(pending + [piece[:cut]]), open_end
        pending = [piece[cut:]] if cut < len(piece) else []


class _Hashing:
    """A binary file read through, keeping the SHA-1 and the count of the bytes read."""

    def __init__(self, f):
        self.f, self.sha1, self.nbytes = f, hashlib.sha1(), 0
        self.mode = "rb"

    def read(self, n: int = -1) -> bytes:
        block = self.f.read(n)
        self.sha1.update(block)
        self.nbytes += len(block)
        return block


@contextlib.contextmanager
def _open_checked(path: Path, record: dict):
    """Open corpus file ``path`` (decompressing it by suffix) to be read once, to its end.
    On leaving, fill ``record["sha1"]`` with the SHA-1 of the bytes read, and raise DataError
    if the file changed meanwhile (its size or time of change, or fewer bytes read than it
    held), so what is recorded is what was read. A FIFO is read once, so it can be a corpus."""
    with open(path, "rb") as raw:
        before = os.fstat(raw.fileno())
        hashing = _Hashing(raw)
        opener = _OPENERS.get(path.suffix)
        with (opener(hashing, "rb") if opener else contextlib.nullcontext(hashing)) as f:
            yield f
        while hashing.read(1 << 20):  # what follows a compressed stream's end counts too
            pass
        after = os.stat(path)
    if stat.S_ISREG(before.st_mode) and (
            hashing.nbytes != before.st_size or after.st_size != before.st_size
            or after.st_mtime_ns != before.st_mtime_ns or after.st_ino != before.st_ino):
        raise DataError(f"corpus file {path} changed while it was read ({before.st_size} bytes "
                        f"when opened, {hashing.nbytes} read, {after.st_size} now); run "
                        "`w2v prepare` again once it no longer changes")
    record["sha1"] = hashing.sha1.hexdigest()


def stream_files(paths: list[str | Path], errors: str = "strict",
                 exclude: Optional[Path] = None) -> LineStream:
    """UTF-8 text files as a LineStream: plain, .gz, .bz2 or .xz files, or folders of them
    (``exclude`` as in ``corpus_files``). Each file is read once: its SHA-1 in ``source`` is
    filled in as it is read, and a file that changes meanwhile is a DataError."""
    if errors not in ENCODING_ERRORS:
        raise DataError(f"--encoding-errors must be one of {', '.join(ENCODING_ERRORS)}")
    files = corpus_files(paths, exclude)
    records = [{"path": str(p.resolve()), "sha1": None} for p in files]
    opens = [(str(p), (lambda p=p, r=r: _open_checked(p, r))) for p, r in zip(files, records)]
    plain = all(p.suffix not in _OPENERS and p.is_file() for p in files)
    total = sum(p.stat().st_size for p in files) if plain else None
    return LineStream(opens, {"kind": "files", "files": records}, total, errors)


def stream_ptb(archive: Path, split: str = "train") -> LineStream:
    """One split of the PTB archive as a LineStream, one sentence a line (as the chapter)."""
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
