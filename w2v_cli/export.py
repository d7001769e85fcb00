"""Write trained vectors for other tools: the word2vec text and binary formats, or .npy.

Every format holds the same rows: the vocabulary without ``<unk>`` (whose row is never
trained, since the dataset drops ``<unk>`` tokens), most frequent word first, raw (not
normalized) vectors, as the original word2vec tool writes them.

- ``word2vec``: a ``V E`` header line, then ``word x1 ... xE`` a line (``%.9g``, so each
  float32 reads back exactly).
- ``word2vec-binary``: the same header, then per word ``word``, a space, E little-endian
  float32 and a newline.
- ``npy``: the (V, E) float32 matrix at PATH and the words, one a line, at PATH with the
  suffix ``.vocab.txt`` (row i is line i).
- ``tsv``: for the TensorFlow Embedding Projector, PATH is a folder holding ``vectors.tsv``
  (E tab-separated values a line) and ``metadata.tsv`` (the word of each row, one a line,
  no header, as the projector wants a single column). A word holding a tab or a line break
  would shift the rows, so such a word is refused rather than altered; spaces are fine.

Each file is written atomically (``fileio``): an interrupted export leaves no partial file,
and the two files of ``npy`` and ``tsv`` are both checked before either is written, and renamed
into place together, so a refused or failed export leaves both as they were.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import fileio
from .errors import UsageError
from .vectors import Vectors

FORMATS = ("word2vec", "word2vec-binary", "npy", "tsv")
TSV_VECTORS = "vectors.tsv"
TSV_METADATA = "metadata.tsv"


def rows(vectors: Vectors) -> tuple[list[str], np.ndarray]:
    """The exported words and their vectors: (words, (V - 1, E) float32), <unk> left out."""
    return vectors.words()


def word2vec_text(words: list[str], matrix: np.ndarray) -> bytes:
    """The word2vec text format. matrix: (len(words), E) float32."""
    n, dim = matrix.shape
    row_format = " ".join(["%.9g"] * dim)
    body = "".join(f"{w} {row_format % tuple(row)}\n" for w, row in zip(words, matrix.tolist()))
    return f"{n} {dim}\n{body}".encode()


def word2vec_binary(words: list[str], matrix: np.ndarray) -> bytes:
    """The word2vec binary format. matrix: (len(words), E), written as little-endian float32."""
    n, dim = matrix.shape
    raw = np.ascontiguousarray(matrix, dtype="<f4")
    parts = [f"{n} {dim}\n".encode()]
    for w, row in zip(words, raw):
        parts += [w.encode("utf-8"), b" ", row.tobytes(), b"\n"]
    return b"".join(parts)


def projector_tsv(words: list[str], matrix: np.ndarray) -> tuple[bytes, bytes]:
    """(vectors.tsv, metadata.tsv) bytes for the Embedding Projector. matrix: (len(words), E)."""
    row_format = "\t".join(["%.9g"] * matrix.shape[1])
    vectors = "".join(row_format % tuple(row) + "\n" for row in matrix.tolist())
    return vectors.encode(), "".join(w + "\n" for w in words).encode("utf-8")


def vocab_path_for(npy_path: Path) -> Path:
    return npy_path.with_name(npy_path.stem + ".vocab.txt" if npy_path.suffix == ".npy"
                              else npy_path.name + ".vocab.txt")


def export(vectors: Vectors, fmt: str, output: str | Path) -> list[Path]:
    """Write ``vectors`` in format ``fmt`` to ``output``. Returns the paths written."""
    if str(output) == "":
        raise UsageError("--output is empty; give a file name")
    if fmt in ("npy", "tsv") and fileio.is_stdout(output):  # -, /dev/stdout
        raise UsageError(f"--format {fmt} writes two files, so it cannot go to standard "
                         f"output ({output}); give a {'folder' if fmt == 'tsv' else 'file'}"
                         " name")
    output = Path(output)
    if fmt == "npy" and output.exists() and not output.is_file() and not output.is_dir():
        raise UsageError(f"--output {output} is not a regular file: --format npy writes its "
                         "words beside it, in a second file")
    words, matrix = rows(vectors)
    if fmt == "tsv":
        # splitlines: every character some reader may take for a line end (and "" -> [])
        bad = next((w for w in words if "\t" in w or len(w.splitlines()) != 1), None)
        if bad is not None:
            raise UsageError(f"the word {bad!r} is empty or holds a tab or line break, which "
                             "would shift the rows of the TSV files")
        if output.exists() and not output.is_dir():
            raise UsageError(f"--output {output} is not a folder; --format tsv writes one")
        tsv_vectors, metadata = projector_tsv(words, matrix)
        fileio.write_files({output / TSV_VECTORS: tsv_vectors, output / TSV_METADATA: metadata})
        return [output / TSV_VECTORS, output / TSV_METADATA]
    if any(not w or any(ch.isspace() for ch in w) for w in words):
        raise UsageError("a word holds whitespace, which the word2vec formats cannot store")
    if output.is_dir():
        raise UsageError(f"--output {output} is a directory; give a file name")
    if fmt == "word2vec":
        fileio.write_bytes(output, word2vec_text(words, matrix))
        return [output]
    if fmt == "word2vec-binary":
        fileio.write_bytes(output, word2vec_binary(words, matrix))
        return [output]
    if fmt == "npy":
        vocab_path = vocab_path_for(output)
        fileio.write_files({output: np.ascontiguousarray(matrix, dtype=np.float32),
                            vocab_path: "".join(w + "\n" for w in words).encode("utf-8")})
        return [output, vocab_path]
    raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
