"""The real PTB corpus, where the real thing is the point."""

import pytest
from click.testing import CliRunner

from w2v_cli.cli import cli
from w2v_cli.corpus import PTB_SHA1, ensure_ptb, sha1_of

pytestmark = pytest.mark.ptb


def test_ptb_archive_is_the_one_d2l_uses(ptb_archive):
    assert sha1_of(ptb_archive) == PTB_SHA1
    assert ensure_ptb(ptb_archive.parent) == ptb_archive  # verified, nothing downloaded


def test_prepare_ptb_gives_the_chapter_vocabulary(ptb_archive, workdir):
    result = CliRunner().invoke(cli, ["prepare", "--data-dir", str(ptb_archive.parent)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(
        "42068 sentences, 887521 tokens (820056 kept), vocabulary of 6719 -> ")
    from w2v_cli.dataset import load
    ds = load(workdir)
    assert ds.vocab.tokens[:5] == ["<unk>", "the", "N", "of", "to"]
    assert ds.vocab.meta["source"] == {"kind": "ptb", "split": "train",
                                       "path": str(ptb_archive), "sha1": PTB_SHA1}
