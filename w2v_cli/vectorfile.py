"""Read word vectors another tool wrote: the word2vec text and binary formats, without MXNet.

Both formats are the ones the original C tool and gensim's ``save_word2vec_format`` write,
and the ones ``w2v export`` writes:

- a header line ``count dim`` (two integers);
- text: one ``word v1 ... vdim`` line per word, fields separated by ASCII spaces or tabs
  (the C tool ends each line with a space, which is allowed);
- binary: per word ``word``, one space, dim little-endian float32, and optionally a newline
  (the C tool writes one, some files do not; the reader skips it before the next word).

Every row becomes a word: there is no ``<unk>`` row, and a word ``<unk>`` in the file is an
ordinary word. What the reader refuses, each with a DataError naming the file and the row:
a header that is not two positive integers; a text row without exactly dim values or with a
value that is not a number; a binary file that ends inside a row; fewer rows than the header
says, or text after the last one; a word that is not valid UTF-8 (decode errors are not
guessed at, since two damaged words could then become one); a word seen twice (gensim keeps
the first and warns; a query against such a file would silently ignore the second); a value
that is NaN or infinite; a header whose rows cannot fit in the file (checked first).

Files ending in .gz, .bz2 or .xz are decompressed into memory, as a pipe (``<(zcat f)``,
/dev/stdin) is read into it; plain files are memory-mapped,
so a binary file costs the (count, dim) float32 matrix and little more.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import mmap
import os
import stat
from pathlib import Path

import numpy as np

from .errors import DataError, UsageError
from .vectors import Vectors

FORMATS = ("auto", "word2vec", "word2vec-binary")
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_SPACE = b" \t\n\r\x0b\x0c"  # ASCII whitespace, what separates fields (never a word's bytes)


def load(path: str | Path, fmt: str = "auto") -> Vectors:
    """Read a word2vec text or binary file into frozen query vectors (no <unk> row).

    fmt: ``word2vec`` (text), ``word2vec-binary``, or ``auto`` to tell them apart from the
    first row. The result's ``source`` is {"vectors": str(path)}.
    """
    if fmt not in FORMATS:
        raise UsageError(f"--vectors-format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    path = Path(path)
    with _contents(path) as data:
        count, dim, start = _header(data, path)
        if fmt == "auto":
            fmt = "word2vec" if _looks_like_text(data, start, dim) else "word2vec-binary"
        _check_size(data, start, count, dim, fmt, path)
        read = _read_text if fmt == "word2vec" else _read_binary
        words, matrix = read(data, start, count, dim, path)
    _check_distinct(words, path)
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}: row {row + 1} ({words[row]!r}) holds a NaN or infinite value")
    return Vectors.from_words(words, matrix, source={"vectors": str(path)})


@contextlib.contextmanager
def _contents(path: Path):
    """The file's bytes: a read-only memory map of a plain file, or the decompressed bytes."""
    try:
        opener = _OPENERS.get(path.suffix)
        if opener is not None:
            with opener(path, "rb") as f:
                yield f.read()
            return
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # a pipe: <(zcat f), /dev/stdin
                yield f.read()
                return
            if path.stat().st_size == 0:
                raise DataError(f"{path} is empty, not a word2vec file")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                yield m
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except MemoryError:
        raise DataError(f"not enough memory to read {path}") from None
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise DataError(f"cannot read {path}: {e}") from None


def _header(data, path: Path) -> tuple[int, int, int]:
    """(count, dim, offset of the first row) from the ``count dim`` line."""
    end = data.find(b"\n", 0, 1000)
    fields = bytes(data[:end if end >= 0 else 1000]).split()
    try:
        count, dim = (int(x) for x in fields)
    except ValueError:
        count = dim = 0
    if end < 0 or count < 1 or dim < 1:
        shown = bytes(data[:min(end if end >= 0 else 60, 60)]).decode("utf-8", "replace")
        raise DataError(f"{path}: the first line must be `count dim` (two positive integers, as "
                        f"gensim and the word2vec tool write), got {shown!r}; a file without "
                        "that header (GloVe's) needs one added")
    return count, dim, end + 1


def _check_size(data, start: int, count: int, dim: int, fmt: str, path: Path) -> None:
    """Raise DataError if ``count`` rows of ``dim`` values cannot fit in the bytes after the
    header, before a (count, dim) matrix is allocated for them. The least a row takes: text,
    a 1-byte word and a separator and a digit per value; binary, a 1-byte word, a space and
    4 bytes per value."""
    least = 2 * dim + 1 if fmt == "word2vec" else 4 * dim + 2
    if count * least > len(data) - start:
        raise DataError(f"{path}: the header says {count} words of {dim} values, more than the "
                        f"{len(data) - start} bytes after it can hold (a wrong header, or a "
                        "truncated file)")


def _looks_like_text(data, start: int, dim: int) -> bool:
    """Whether the first row is a text row: a line of a word and dim numbers. A binary row's
    4 * dim raw bytes almost never read as dim numbers on one line."""
    end = data.find(b"\n", start)
    fields = bytes(data[start:end if end >= 0 else len(data)]).split()
    if len(fields) != dim + 1:
        return False
    try:
        [float(x) for x in fields[1:]]
    except ValueError:
        return False
    return True


def _word(raw: bytes, path: Path, row: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: the word of row {row} is not valid UTF-8 ({e.reason} at byte "
                        f"{e.start}: {raw!r}); w2v reads UTF-8 word2vec files only") from None


def _read_text(data, start: int, count: int, dim: int, path: Path):
    """words (count strings) and (count, dim) float32 from text rows, one line each."""
    words = []
    matrix = np.empty((count, dim), dtype=np.float32)
    pos = start
    size = len(data)
    for row in range(count):
        while pos < size and data[pos:pos + 1] in (b"\n", b"\r"):  # blank lines between rows
            pos += 1
        if pos >= size:
            raise DataError(f"{path}: the header says {count} words but the file ends after "
                            f"{row}")
        end = data.find(b"\n", pos)
        end = size if end < 0 else end
        fields = bytes(data[pos:end]).split()
        pos = end + 1
        if len(fields) != dim + 1:
            raise DataError(f"{path}, row {row + 1}: expected a word and {dim} values, got "
                            f"{len(fields) - 1} values (a word holding a space cannot be read)")
        words.append(_word(fields[0], path, row + 1))
        try:
            matrix[row] = np.array(fields[1:], dtype=np.float32)
        except ValueError:
            raise DataError(f"{path}, row {row + 1}: a value is not a number: "
                            f"{b' '.join(fields[1:])[:80]!r}") from None
    if bytes(data[pos:]).strip():
        raise DataError(f"{path}: text after the {count} rows the header announces")
    return words, matrix


def _read_binary(data, start: int, count: int, dim: int, path: Path):
    """words and (count, dim) float32 from binary rows: one Python step per word; each row's
    floats are copied by numpy straight from the file's bytes."""
    words = []
    matrix = np.empty((count, dim), dtype=np.float32)
    row_bytes = 4 * dim
    pos = start
    size = len(data)
    for row in range(count):
        while pos < size and data[pos] in _SPACE:  # the newline after the previous row
            pos += 1
        space = data.find(b" ", pos)
        if pos >= size or space < 0 or space + 1 + row_bytes > size:
            raise DataError(f"{path}: the file ends inside row {row + 1} of the {count} the "
                            "header announces (truncated, or not a word2vec binary file)")
        words.append(_word(bytes(data[pos:space]), path, row + 1))
        matrix[row] = np.frombuffer(data, dtype="<f4", count=dim, offset=space + 1)
        pos = space + 1 + row_bytes
    if bytes(data[pos:]).strip():
        raise DataError(f"{path}: bytes after the {count} rows the header announces (a wrong "
                        "header, or not a word2vec binary file)")
    return words, matrix


def _check_distinct(words: list[str], path: Path) -> None:
    seen: dict[str, int] = {}
    for row, w in enumerate(words, start=1):
        first = seen.setdefault(w, row)
        if first != row:
            raise DataError(f"{path}: the word {w!r} appears twice, in rows {first} and {row}")
