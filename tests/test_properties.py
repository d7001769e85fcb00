"""Property tests: the loaders, fed random bytes, load or raise the project's own error."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from w2v_cli import checkpoint, corpus, dataset, params
from w2v_cli.config import Config
from w2v_cli.errors import DataError, ModelError, ResumeError
from w2v_cli.model import CENTER_KEY, CONTEXT_KEY
from w2v_cli.vocab import UNK, Vocab

from reference import reference


FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

_COMPRESS = {".txt": lambda b: b, ".gz": gzip.compress, ".bz2": bz2.compress,
             ".xz": lzma.compress}

# bytes that look a little like text: words, spaces, newlines, and some invalid UTF-8
texty = st.lists(st.sampled_from([b"a", b"b", b"word", b" ", b"\n", b"\r\n", b"\t", b"\xc3\xa9",
                                  b"\xff", b"\xc3", b"\x00", b"\xe2\x80\xa8"]), max_size=60
                 ).map(b"".join)


@FAST
@given(raw=st.one_of(st.binary(max_size=300), texty),
       suffix=st.sampled_from(sorted(_COMPRESS)), compressed=st.booleans(),
       errors=st.sampled_from(corpus.ENCODING_ERRORS))
def test_corpus_reader_loads_or_raises_data_error(tmp_path, raw, suffix, compressed, errors):
    path = tmp_path / f"c{suffix}"
    path.write_bytes(_COMPRESS[suffix](raw) if compressed else raw)
    workdir = Path(tempfile.mkdtemp(dir=tmp_path))  # hypothesis reuses tmp_path
    try:
        ds = dataset.prepare(Config(workdir=str(workdir), corpus=(str(path),), min_count=1,
                                    encoding_errors=errors))
    except DataError:
        assert not (workdir / "ids.npy").exists()  # refused whole, nothing half written
        return
    if compressed or suffix == ".txt":
        want = reference(raw.decode("utf-8", errors), min_count=1)  # only \n, \r\n end a line
        assert ds.vocab.tokens == want["tokens"] and ds.ids.tolist() == want["ids"]
        assert ds.offsets.tolist() == want["offsets"]
    assert ds.offsets[-1] == ds.ids.size and ds.ids.min() >= 1


@FAST
@given(raw=st.binary(max_size=400))
def test_vocab_loader_on_random_bytes(tmp_path, raw):
    p = tmp_path / "vocab.json"
    p.write_bytes(raw)
    with pytest.raises(DataError):
        Vocab.load(p)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2 ** 70, max_value=2 ** 70)
    | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=4),
    max_leaves=12)


@FAST
@given(tokens=st.one_of(json_values, st.lists(st.sampled_from([UNK, "a", "b", "", 3]),
                                              max_size=3)),
       counts=st.one_of(json_values, st.lists(st.one_of(st.integers(-2, 3), st.integers(
           2 ** 62, 2 ** 65), st.booleans(), st.floats()), max_size=3)),
       version=st.sampled_from([1, 1, 1, 2, "1", None]), extra=json_values)
def test_vocab_loader_on_random_json(tmp_path, tokens, counts, version, extra):
    p = tmp_path / "vocab.json"
    p.write_text(json.dumps({"format": "w2v-vocab", "version": version, "tokens": tokens,
                             "counts": counts, "extra": extra}))
    try:
        v = Vocab.load(p)
    except DataError:
        return
    assert v.tokens[0] == UNK and len(v.tokens) == len(v.counts) == len(set(v.tokens))
    assert v.counts.dtype == np.int64 and (v.counts >= 0).all()


def _params_bytes(tmp_path: Path) -> bytes:
    from w2v_cli.backend import mxnet
    from w2v_cli.model import build_net
    net = build_net(5, 3, mxnet().cpu())
    net.save_parameters(str(tmp_path / "good.params"))
    return (tmp_path / "good.params").read_bytes()


@pytest.fixture(scope="module")
def good_params(tmp_path_factory) -> bytes:
    return _params_bytes(tmp_path_factory.mktemp("params"))


def test_params_reader_reads_what_mxnet_wrote(good_params, tmp_path):
    p = tmp_path / "model.params"
    p.write_bytes(good_params)
    arrays = params.read_params(p)
    from w2v_cli.backend import mxnet
    loaded = mxnet().nd.load(str(p))
    assert sorted(arrays) == sorted(loaded) == [CENTER_KEY, CONTEXT_KEY]
    for k in arrays:
        assert arrays[k].dtype == np.float32 and arrays[k].shape == (5, 3)
        assert np.array_equal(arrays[k], loaded[k].asnumpy())


@FAST
@given(raw=st.binary(max_size=400))
def test_params_loader_on_random_bytes(tmp_path, raw):
    (tmp_path / "model.params").write_bytes(raw)
    with pytest.raises(ModelError):
        params.load_tables(tmp_path, 5)


@FAST
@given(data=st.data())
def test_params_loader_on_damaged_files(tmp_path, good_params, data):
    """Truncate, overwrite or extend a real .params file: read it or raise ModelError."""
    raw = bytearray(good_params)
    cut = data.draw(st.integers(0, len(raw)))
    for _ in range(data.draw(st.integers(0, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    raw = raw[:cut] + data.draw(st.binary(max_size=8))
    (tmp_path / "model.params").write_bytes(bytes(raw))
    try:
        tables = params.load_tables(tmp_path, 5)
    except ModelError:
        return
    assert tables["center"].shape == tables["context"].shape == (5, 3)


@FAST
@given(raw=st.binary(max_size=300))
def test_checkpoint_state_on_random_bytes(tmp_path, raw):
    d = tmp_path / "checkpoints" / "step-00001-00000000"
    d.mkdir(parents=True, exist_ok=True)
    (d / checkpoint.STATE_FILE).write_bytes(raw)
    with pytest.raises(ResumeError):
        checkpoint.latest(tmp_path)
