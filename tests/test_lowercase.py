"""`w2v prepare --lowercase`: a mixed-case corpus gives one word per lower-cased form."""

import json

import numpy as np
from click.testing import CliRunner

from w2v_cli import corpus, dataset
from w2v_cli.cli import cli

TEXT = "The cat saw THE Cat\nthe dog\nÉcole école ÉCOLE dog\nDog CAT the\n"


def prepare(workdir, path, *flags):
    result = CliRunner().invoke(cli, ["prepare", "--corpus", str(path), "--min-count", "1",
                                      "--workdir", str(workdir), *flags])
    assert result.exit_code == 0, result.output
    return dataset.load(workdir)


def test_lowercase_sums_the_counts_of_each_lower_cased_word(tmp_path, monkeypatch):
    path = tmp_path / "mixed.txt"
    path.write_text(TEXT, encoding="utf-8")
    monkeypatch.setattr(corpus, "BLOCK_BYTES", 16)  # many blocks, each lowered on its own
    ds = prepare(tmp_path / "low", path, "--lowercase")
    counts = dict(zip(ds.vocab.tokens, ds.vocab.counts.tolist()))
    assert counts == {"<unk>": 0, "the": 4, "cat": 3, "dog": 3, "école": 3, "saw": 1}
    assert ds.sentences() == [line.lower().split() for line in TEXT.splitlines()]
    meta = json.loads((tmp_path / "low" / "vocab.json").read_text(encoding="utf-8"))
    assert meta["lowercase"] is True


def test_case_is_kept_by_default(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_text(TEXT, encoding="utf-8")
    ds = prepare(tmp_path / "kept", path)
    assert {"The", "THE", "the", "Cat", "cat", "CAT"} <= set(ds.vocab.tokens)
    assert int(np.sum(ds.vocab.counts)) == len(TEXT.split())
    assert ds.vocab.meta["lowercase"] is False
