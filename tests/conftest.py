"""Shared fixtures: where the real PTB lives, and small corpora with known structure."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


def _shared_file(env: str, name: str, default_dir: Path) -> Path:
    candidates = [Path(os.environ[env]) / name] if os.environ.get(env) else []
    candidates.append(default_dir / name)
    for c in candidates:
        if c.is_file():
            return c
    msg = f"{name} not found (looked at {', '.join(map(str, candidates))})"
    if os.environ.get("CI"):
        pytest.fail(msg + "; CI must provide it")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def ptb_archive() -> Path:
    """The real ptb.zip: $W2V_DATA_DIR/ptb.zip, else ../shared/data/ptb.zip."""
    return _shared_file("W2V_DATA_DIR", "ptb.zip", SHARED)


@pytest.fixture(scope="session")
def wordsim_path() -> Path:
    """WordSim-353 as a TSV: $W2V_WORDSIM, else ../shared/data/wordsim353.tsv."""
    env = os.environ.get("W2V_WORDSIM")
    if env and Path(env).is_file():
        return Path(env)
    return _shared_file("W2V_WORDSIM_DIR", "wordsim353.tsv", SHARED)


def planted_sentences(n_clusters=4, words_per_cluster=8, n_sentences=2000, length=8, seed=0):
    """Sentences that each draw all their words from one cluster: ``c{cluster}w{word}``.

    A skip-gram model trained on them should put each word nearest to its own cluster.
    """
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, n_clusters, size=n_sentences)
    word = rng.integers(0, words_per_cluster, size=(n_sentences, length))
    return [" ".join(f"c{c}w{w}" for w in row) for c, row in zip(cluster, word)]


_SCRATCH: list = []


@atexit.register
def _remove_scratch():
    for folder in _SCRATCH:
        shutil.rmtree(folder, ignore_errors=True)


def encode(lines, min_count: int = 1, max_vocab: int = 0, chunk_tokens: int = 1 << 20):
    """A Dataset of ``lines`` made the way `w2v prepare` makes one (the streaming path), in
    a scratch folder; for tests that need a small dataset in one call."""
    from w2v_cli import corpus, dataset

    folder = Path(tempfile.mkdtemp(prefix="w2v-test-"))
    _SCRATCH.append(folder)
    path = folder / "corpus.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return dataset.encode_stream(corpus.stream_files([path]), min_count, folder / "work",
                                 max_vocab, chunk_tokens)


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    """A small planted corpus: 200 sentences."""
    p = tmp_path / "small.txt"
    p.write_text("\n".join(planted_sentences(n_sentences=200)) + "\n", encoding="utf-8")
    return p


@pytest.fixture
def planted_corpus(tmp_path) -> Path:
    path = tmp_path / "planted.txt"
    path.write_text("\n".join(planted_sentences()) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A fresh working directory; W2V_WORKDIR points at it so CLI calls need no --workdir."""
    wd = tmp_path / "work"
    monkeypatch.setenv("W2V_WORKDIR", str(wd))
    return wd


@pytest.fixture(scope="session")
def trained_ptb_workdir(ptb_archive, tmp_path_factory) -> Path:
    """A workdir after `w2v prepare` and `w2v train --epochs 5 --device cpu` on the real PTB,
    default settings otherwise (the CPU's: sparse gradients, whatever device is around).
    Trained once per test session (about 70-80 s on 2 CPU cores)."""
    from click.testing import CliRunner

    from w2v_cli.cli import cli

    wd = tmp_path_factory.mktemp("ptb-work")
    env = {"W2V_WORKDIR": str(wd), "W2V_DATA_DIR": str(ptb_archive.parent)}
    runner = CliRunner()
    for args in (["prepare"], ["train", "--epochs", "5", "--device", "cpu"]):
        result = runner.invoke(cli, args, env=env)
        assert result.exit_code == 0, result.output
    return wd
