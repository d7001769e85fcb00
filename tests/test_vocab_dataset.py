import json

import numpy as np
import pytest

from w2v_cli import dataset
from w2v_cli.errors import DataError
from w2v_cli.vocab import UNK, Vocab

from conftest import encode


def test_vocab_orders_by_count_then_first_appearance_and_folds_rare_into_unk():
    # distinct tokens in order of first appearance, with their counts
    tokens = ["b", "a", "c", "d", UNK, "e"]
    v = Vocab.from_counts(tokens, np.array([2, 3, 1, 1, 1, 2]), min_count=2)
    assert v.tokens == [UNK, "a", "b", "e"]
    # <unk> counts the literal <unk> plus the rare c and d
    assert v.counts.tolist() == [3, 3, 2, 2]
    assert [v.index.get(t, 0) for t in ["a", "zzz", "e", "c"]] == [1, 0, 3, 0]


def test_encode_drops_unk_and_keeps_sentence_offsets():
    lines = ["a b x", "", "x x", "b a a", "  ", "c"]
    ds = encode(lines, min_count=2)
    assert ds.vocab.tokens == [UNK, "a", "x", "b"]  # a 3, x 3 (seen after a), b 2
    # empty lines are not sentences; "x x" stays a (short) sentence
    assert ds.offsets.tolist() == [0, 3, 5, 8, 8]  # "c" is rare: its sentence is empty
    assert ds.ids.tolist() == [1, 3, 2, 2, 2, 3, 1, 1]
    assert ds.sentences() == [["a", "b", "x"], ["x", "x"], ["b", "a", "a"], []]
    # one counts array by id: it agrees with the encoded ids
    assert np.bincount(ds.ids, minlength=len(ds.vocab))[1:].tolist() == ds.vocab.counts[1:].tolist()


def test_encode_rejects_empty_corpus_and_empty_vocabulary():
    with pytest.raises(DataError, match="no tokens"):
        encode(["", "   "], min_count=1)
    with pytest.raises(DataError, match="at least 5 times"):
        encode(["a b c"], min_count=5)


def test_dataset_round_trips_through_the_workdir(tmp_path):
    ds = encode(["a b a", "b c a b"], min_count=1)
    ds.vocab.meta["min_count"] = 1
    dataset.save(ds, tmp_path)
    back = dataset.load(tmp_path)
    assert back.vocab.tokens == ds.vocab.tokens
    assert back.vocab.counts.tolist() == ds.vocab.counts.tolist()
    assert np.array_equal(back.ids, ds.ids) and np.array_equal(back.offsets, ds.offsets)
    saved = json.loads((tmp_path / "vocab.json").read_text())
    assert saved["format"] == "w2v-vocab" and saved["version"] == 1


def test_vocab_load_rejects_other_versions_and_garbage(tmp_path):
    p = tmp_path / "vocab.json"
    p.write_text(json.dumps({"format": "w2v-vocab", "version": 99, "tokens": [UNK], "counts": [0]}))
    with pytest.raises(DataError, match="version 99"):
        Vocab.load(p)
    p.write_text("{not json")
    with pytest.raises(DataError, match="not a readable vocabulary"):
        Vocab.load(p)
    with pytest.raises(DataError, match="run `w2v prepare` first"):
        Vocab.load(tmp_path / "missing.json")


STATS_ERROR = ('"stats" must be an object whose sentences, tokens, kept_tokens are non-negative '
               'integers; re-run `w2v prepare`')
SOURCE_ERROR = ('"source" must be an object whose "files", if any, are objects with a "path" '
                'string; re-run `w2v prepare`')


@pytest.mark.parametrize("meta,error", [
    ({"stats": None}, STATS_ERROR), ({"stats": {"tokens": "12"}}, STATS_ERROR),
    ({"source": 5}, SOURCE_ERROR), ({"source": {"files": 7}}, SOURCE_ERROR),
    ({"source": {"kind": "files", "files": [{"sha1": "ab"}]}}, SOURCE_ERROR),
    ({"source": {"kind": "ptb", "split": "train"}, "stats": {"sentences": 1}}, None),
])
def test_vocab_load_checks_the_metadata_other_commands_read(tmp_path, meta, error):
    p = tmp_path / "vocab.json"
    p.write_text(json.dumps({"format": "w2v-vocab", "version": 1, "tokens": [UNK, "a"],
                             "counts": [0, 2], **meta}))
    if error is None:
        assert Vocab.load(p).meta == meta
        return
    with pytest.raises(DataError) as e:
        Vocab.load(p)
    assert str(e.value) == f"{p}: {error}"
