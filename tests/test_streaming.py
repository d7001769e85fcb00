"""Streaming prepare and chunked epochs: same answers as in memory, memory bounded by a chunk."""

import gzip
import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from w2v_cli import corpus, dataset, examples, stream
from w2v_cli.cli import cli
from w2v_cli.config import Config
from w2v_cli.errors import DataError
from w2v_cli.vocab import UNK

from conftest import REPO, encode, planted_sentences
from reference import reference

TRICKY = ("b a c a b a d <unk> e e\r\n\n  \nx x y\u2028z a\n"
          "<unk> <unk>\nq\x85a b\n\te\u00a0e f\n" * 3) + "last line a b"


def _both(tmp_path, text, min_count, max_vocab=0, chunk_tokens=3, block_bytes=16,
          monkeypatch=None):
    path = tmp_path / "c.txt"
    path.write_bytes(text.encode("utf-8"))
    monkeypatch.setattr(corpus, "BLOCK_BYTES", block_bytes)
    config = Config(workdir=str(tmp_path / "w"), corpus=(str(path),), min_count=min_count,
                    max_vocab=max_vocab, chunk_tokens=chunk_tokens)
    return dataset.prepare(config), reference(text, min_count, max_vocab)


@pytest.mark.parametrize("min_count,max_vocab,chunk_tokens,block_bytes",
                         [(1, 0, 3, 16), (2, 0, 1, 1), (2, 3, 5, 40), (1, 2, 1 << 20, 1 << 20)])
def test_streaming_prepare_equals_in_memory(tmp_path, monkeypatch, min_count, max_vocab,
                                            chunk_tokens, block_bytes):
    s, m = _both(tmp_path, TRICKY, min_count, max_vocab, chunk_tokens, block_bytes, monkeypatch)
    assert s.vocab.tokens == m["tokens"]
    assert s.vocab.counts.tolist() == m["counts"]
    assert s.ids.tolist() == m["ids"] and s.ids.dtype == np.int32
    assert s.offsets.tolist() == m["offsets"] and s.offsets.dtype == np.int64
    assert isinstance(s.ids, np.memmap)  # training reads it through the memory map
    assert not list((tmp_path / "w").glob(".prepare*"))  # temporary files are gone


def test_blocks_are_read_by_size_and_cut_after_a_line_end_or_a_space():
    data = b"ab\ncdefgh\ni\n\njk"
    pieces = list(corpus._whole_lines(io.BytesIO(data), 4))
    # "cdefg" has no line end or space yet, so its piece runs on to the next one's line end
    assert pieces == [(b"ab\n", False), (b"cdefgh\ni\n", False), (b"\n", False), (b"jk", False)]
    assert list(corpus._whole_lines(io.BytesIO(b""), 4)) == []
    assert list(corpus._whole_lines(io.BytesIO(b"a\n"), 1)) == [(b"a\n", False)]
    # a line over three pieces with no space in it comes whole
    assert list(corpus._whole_lines(io.BytesIO(b"abcdefghij\nk"), 3)) == [
        (b"abcdefghij\n", False), (b"k", False)]
    # a long line with spaces is cut after one, and said to go on (memory bounded by blocks)
    assert list(corpus._whole_lines(io.BytesIO(b"ab cd\tef\ng"), 4)) == [
        (b"ab ", True), (b"cd\t", True), (b"ef\n", False), (b"g", False)]


def test_a_run_without_whitespace_is_held_no_longer_than_any_token_may_be():
    bound = corpus._MAX_RUN_BYTES  # 4008: surely over 1000 characters
    pieces = corpus._whole_lines(io.BytesIO(b"a" * 10 ** 6 + b" b\n"), 1024)
    assert next(pieces) == (b"a" * 4092, True)  # 4 blocks held, cut 4 bytes short of the end
    assert bound < 4096
    # cut at a character's first byte, so the piece still decodes and the check names it
    euro = "\u20ac".encode()  # 3 bytes
    first, open_end = next(corpus._whole_lines(io.BytesIO(euro * 5000), 1024))
    assert open_end and len(first) % 3 == 0 and len(first) > bound - 4
    with pytest.raises(DataError, match="line 1: more than 1000 characters without a space"):
        corpus._decode(first, "f", "strict", 1)
    # bytes that start no character at all (not UTF-8) go on whole, for decoding to refuse
    bad, open_end = next(corpus._whole_lines(io.BytesIO(b"\x80" * 5000), 1024))
    assert (bad, open_end) == (b"\x80" * 4096, True)  # 4 blocks, uncut
    with pytest.raises(DataError, match="line 1: not valid UTF-8"):
        corpus._decode(bad, "f", "strict", 1)


def test_max_vocab_keeps_the_most_frequent_and_folds_the_rest_into_unk(tmp_path, monkeypatch):
    s, _ = _both(tmp_path, "b a c a b a d <unk> e e\nc c c\n", 1, 2, monkeypatch=monkeypatch)
    # counts: a 3, c 4, b 2, e 2, d 1, <unk> 1 -> keep c, a; the rest is <unk>
    assert s.vocab.tokens == [UNK, "c", "a"]
    assert s.vocab.counts.tolist() == [6, 4, 3]
    assert s.sentences() == [["a", "c", "a", "a"], ["c", "c", "c"]]
    assert s.vocab.meta["max_vocab"] == 2 and s.vocab.meta["stats"]["kept_tokens"] == 7


def test_streaming_reads_gzip_and_names_the_line_of_bad_utf8(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "BLOCK_BYTES", 8)
    gz = tmp_path / "a.txt.gz"
    gz.write_bytes(gzip.compress(b"a b a\nb a\n"))
    ds = dataset.prepare(Config(workdir=str(tmp_path / "w"), corpus=(str(gz),), min_count=1))
    assert ds.sentences() == [["a", "b", "a"], ["b", "a"]]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a b\nc d\ne f\n\xff g\n")
    with pytest.raises(DataError, match=r"bad.txt, line 4: not valid UTF-8"):
        dataset.prepare(Config(workdir=str(tmp_path / "w2"), corpus=(str(bad),)))
    assert not (tmp_path / "w2" / "ids.npy").exists()


def test_streaming_refuses_what_is_not_text_on_the_right_line(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "BLOCK_BYTES", 8)  # several blocks before the bad line
    lines = [b"a b", b"c d", b"e f", b"g h"]
    for name, bad, error in [
            ("nul", b"x\0y", "line 4: a NUL byte"),
            ("long", b"x" * (corpus.MAX_TOKEN_CHARS + 1), "line 4: more than 1000 characters"),
            ("utf8", b"\xff g", "line 4: not valid UTF-8")]:
        path = tmp_path / f"{name}.txt"
        path.write_bytes(b"\n".join(lines[:3] + [bad] + lines[3:]) + b"\n")
        with pytest.raises(DataError, match=f"{name}.txt, {error}"):
            dataset.prepare(Config(workdir=str(tmp_path / name), corpus=(str(path),),
                                   min_count=1))
        assert not (tmp_path / name / "ids.npy").exists()
    # --encoding-errors replace: the dataset of the text decoded with U+FFFD for bad bytes
    path = tmp_path / "utf8.txt"
    streamed = dataset.prepare(Config(workdir=str(tmp_path / "r"), corpus=(str(path),),
                                      min_count=1, encoding_errors="replace"))
    want = reference(path.read_bytes().decode("utf-8", "replace"), 1)
    assert streamed.vocab.tokens == want["tokens"] and "\ufffd" in streamed.vocab.tokens
    assert streamed.ids.tolist() == want["ids"]


def test_long_token_prefilter_never_misses_what_the_regex_finds():
    # Runs of 990-1010 characters: ASCII, 2-byte (é) and 3-byte (€) ones, split by ASCII and
    # Unicode spaces (U+00A0, U+3000 are spaces to str.split but not ASCII bytes).
    rng = np.random.default_rng(0)
    chars = ["x", "\u00e9", "\u20ac", " ", "\n", "\t", "\u00a0", "\u3000"]
    for _ in range(300):
        pieces = [rng.choice(chars[:3]) * int(rng.integers(990, 1011))
                  for _ in range(rng.integers(1, 4))]
        text = "".join(p + rng.choice(chars[3:]) for p in pieces)
        raw = text.encode()
        if corpus._LONG_TOKEN.search(text):
            assert corpus._may_hold_long_token(raw)
    assert not corpus._may_hold_long_token(("ab " * 2000).encode())
    assert corpus._may_hold_long_token(b"a " + b"x" * 1001)
    assert not corpus._may_hold_long_token(b"a " + b"x" * 1000 + b"\n")


def test_streaming_ptb_equals_in_memory(ptb_archive, tmp_path):
    s = dataset.prepare(Config(workdir=str(tmp_path), data_dir=str(ptb_archive.parent),
                               chunk_tokens=100_000))
    with zipfile.ZipFile(ptb_archive) as z:
        m = reference(z.read("ptb/ptb.train.txt").decode("utf-8"), 10)
    assert s.vocab.tokens == m["tokens"] and len(s.vocab) == 6719
    assert s.ids.tolist() == m["ids"] and s.offsets.tolist() == m["offsets"]


def test_cli_prepare_max_vocab(tmp_path, planted_corpus):
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["prepare", "--corpus", str(planted_corpus), "--min-count",
                                      "1", "--max-vocab", "5", "--chunk-tokens", "100",
                                      "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "vocabulary of 6" in result.output
    assert json.loads((tmp_path / "vocab.json").read_text())["max_vocab"] == 5


def test_one_chunk_epoch_is_the_whole_corpus_path():
    ds = encode(planted_sentences(n_sentences=100), min_count=1)
    config = Config(batch_size=64, window=2, negatives=2, subsample=1e-2)
    a = list(stream.EpochStream(ds, ds.vocab.counts, config, np.random.default_rng(5)))
    rng = np.random.default_rng(5)
    ex = examples.draw_examples(ds.ids, ds.offsets, ds.vocab.counts, config, rng)
    b = list(examples.shuffled(ex, 64, rng))
    assert len(a) == len(b) > 2
    for x, y in zip(a, b):
        for name in ("center", "items", "n_ctx", "length"):
            assert np.array_equal(getattr(x, name), getattr(y, name))


def test_chunked_epoch_uses_every_center_once_in_full_batches():
    ds = encode(planted_sentences(n_sentences=100, length=5), min_count=1)
    config = Config(batch_size=64, window=2, negatives=1, subsample=0, chunk_tokens=37)
    epoch = stream.EpochStream(ds, ds.vocab.counts, config, np.random.default_rng(1))
    assert epoch.n_chunks == 14  # 500 tokens in sentence-aligned chunks of about 37
    got = list(epoch)
    sizes = [b.center.shape[0] for b in got]
    assert sizes == [64] * 7 + [500 - 7 * 64]
    centers = np.sort(np.concatenate([b.center for b in got]))
    assert np.array_equal(centers, np.sort(np.asarray(ds.ids)))
    assert epoch.estimated_batches() == 8
    # contexts never cross a sentence, even a chunk boundary: each context is a planted
    # word of the center's own cluster
    for b in got:
        cluster = np.array(ds.vocab.tokens)[b.center]
        ctx = np.array(ds.vocab.tokens)[np.where(b.label > 0, b.items, b.center[:, None])]
        assert all(c[:2] == row[:2] for row, cs in zip(cluster, ctx) for c in cs)


MEMORY_SCRIPT = textwrap.dedent("""
    import json, re, resource, sys
    from pathlib import Path
    from w2v_cli import dataset, train
    from w2v_cli.config import Config

    def data_kb():
        return int(re.search(r"VmData:\\s+(\\d+)", open("/proc/self/status").read()).group(1))

    mode, corpus_path, work, headroom_mb = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    kw = dict(epochs=1, batch_size=4096, embed_size=8, window=2, negatives=1, subsample=0,
              min_count=1, chunk_tokens=1 << 14, device="cpu", noise_group=0)
    # Warm up first (MXNet's threads and pools), then cap the heap at what is used + headroom:
    # RLIMIT_DATA counts private writable memory, not the memory-mapped id files.
    (work / "warm.txt").parent.mkdir(parents=True, exist_ok=True)
    (work / "warm.txt").write_text("a b c a b\\nc a b a\\n")
    warm = Config(workdir=str(work / "warm"), corpus=(str(work / "warm.txt"),), **kw)
    train.train(warm, dataset.prepare(warm))
    limit = (data_kb() + headroom_mb * 1024) * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    config = Config(workdir=str(work / "run"), corpus=(corpus_path,), **kw)
    try:
        if mode == "stream":
            ds = dataset.prepare(config)
            record = train.train(config, ds)
        else:  # the control: the corpus's tokens as Python strings, as a reader in memory holds them
            tokens = open(corpus_path, encoding="utf-8").read().split()
            print(json.dumps({"memory_error": False, "tokens": len(tokens)}))
            sys.exit(0)
    except MemoryError:
        print(json.dumps({"memory_error": True}))
        sys.exit(0)
    print(json.dumps({"memory_error": False, "tokens": int(ds.ids.size),
                      "centers": record["epochs"][0]["tokens"], "loss": record["final"]["loss"],
                      "limit_mb": limit / 2**20}))
""")


def _run_limited(mode, corpus_path, work, headroom_mb):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MXNET_ENGINE_TYPE": "NaiveEngine",
           "MALLOC_ARENA_MAX": "2", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, mode, str(corpus_path), str(work),
                          str(headroom_mb)], capture_output=True, text=True, timeout=240,
                         env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_prepare_and_an_epoch_stream_under_a_memory_cap(tmp_path):
    """A corpus whose in-memory preparation and epoch need several times the memory allowed."""
    rng = np.random.default_rng(0)
    n_sentences, length, vocab = 120_000, 10, 3000
    words = np.array([f"w{i}" for i in range(vocab)])
    ranks = np.minimum(rng.zipf(1.3, size=(n_sentences, length)) - 1, vocab - 1)
    path = tmp_path / "big.txt"
    with open(path, "w") as f:
        for row in words[ranks]:
            f.write(" ".join(row) + "\n")
    n_tokens = n_sentences * length
    # Measured on this corpus above the warmed-up process: streaming peaks near 23 MB in prepare
    # and 37 MB in the epoch; the corpus's tokens alone, as Python strings, need ~70 MB.
    headroom_mb = 48
    got = _run_limited("stream", path, tmp_path / "s", headroom_mb)
    assert not got["memory_error"]
    assert got["tokens"] == n_tokens and got["centers"] == n_tokens
    # the cap bites: the corpus read into memory as tokens does not fit under it
    assert _run_limited("control", path, tmp_path / "m", headroom_mb)["memory_error"]
