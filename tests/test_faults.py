"""Every planted fault gives one exact `Error: ...` line, its exit code, and changes no file.

Each test snapshots the working directory (every file, hidden ones included, by SHA-1) before
the faulty command and checks it is byte-for-byte the same afterwards.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import planted_sentences
from w2v_cli import checkpoint, corpus, dataset, fileio, lock
from w2v_cli.cli import cli

SMALL = ["--epochs", "1", "--batch-size", "256", "--embed-size", "8", "--window", "2",
         "--negatives", "2", "--subsample", "0", "--device", "cpu"]


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> SHA-1 of every file under ``root`` (hidden and temporary ones too)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run(*args, code: int, error: str | None = None):
    result = CliRunner().invoke(cli, list(map(str, args)))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    if error is not None:
        assert result.output.strip().splitlines()[-1] == error
    return result


def fails(workdir: Path, *args, code: int, error: str):
    """Run a command that must fail and check that it wrote nothing in ``workdir``."""
    before = snapshot(workdir)
    run(*args, code=code, error=error)
    assert snapshot(workdir) == before


@pytest.fixture
def prepared(workdir, corpus_file) -> Path:
    run("prepare", "--corpus", corpus_file, "--min-count", "1", code=0)
    return workdir


@pytest.fixture
def trained(prepared) -> Path:
    run("train", *SMALL, code=0)
    return prepared


# ------------------------------------------------------------------------------ corpus


def test_missing_corpus_file(prepared, tmp_path):
    fails(prepared, "prepare", "--corpus", tmp_path / "nope.txt", code=2,
          error=f"Error: Invalid value for '--corpus': Path '{tmp_path / 'nope.txt'}' does not exist.")


def test_a_device_as_corpus_is_named_as_one(prepared):
    fails(prepared, "prepare", "--corpus", "/dev/null", code=3,
          error="Error: corpus file /dev/null is neither a file, a folder nor a pipe (a device "
                "or a socket); give text files, folders of them, or a pipe")


def test_unreadable_corpus_file(prepared, corpus_file, monkeypatch):
    def denied(path, mode="r", *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    monkeypatch.setattr(corpus, "open", denied, raising=False)
    fails(prepared, "prepare", "--corpus", corpus_file, code=3,
          error=f"Error: cannot read corpus file {corpus_file}: [Errno 13] Permission denied: "
                f"'{corpus_file}'")


def test_empty_corpus_and_empty_folder(prepared, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n\t\n")
    fails(prepared, "prepare", "--corpus", empty, code=3, error="Error: the corpus holds no tokens")
    folder = tmp_path / "folder"
    folder.mkdir()
    fails(prepared, "prepare", "--corpus", folder, code=3,
          error=f"Error: corpus folder {folder} holds no files")


def test_vocabulary_empty_after_min_count(prepared, tmp_path):
    p = tmp_path / "rare.txt"
    p.write_text("a b c\nd e f\n")
    fails(prepared, "prepare", "--corpus", p, "--min-count", "2", code=3,
          error="Error: no token occurs at least 2 times (--min-count); the vocabulary is empty")


def test_sentences_too_short_for_any_pair(prepared, tmp_path):
    p = tmp_path / "short.txt"
    p.write_text("a\nb\na\nb c\n")
    fails(prepared, "prepare", "--corpus", p, "--min-count", "2", code=3,
          error="Error: no sentence has two or more words in the vocabulary, so there is no word "
                "pair to train on; use longer sentences (one a line) or a lower --min-count (2)")


def test_invalid_utf8_is_reported_with_file_and_line_or_replaced(prepared, tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("a b c\nd caf\xe9 e\n".encode("latin-1") + b"a b\n" * 5)
    fails(prepared, "prepare", "--corpus", p, "--min-count", "1", code=3,
          error=f"Error: {p}, line 2: not valid UTF-8 (invalid continuation byte); fix the "
                "file or pass --encoding-errors replace")
    run("prepare", "--corpus", p, "--min-count", "1", "--encoding-errors", "replace", code=0)
    tokens = json.loads((prepared / "vocab.json").read_text(encoding="utf-8"))["tokens"]
    assert "caf\ufffd" in tokens


def test_binary_garbage(prepared, tmp_path):
    p = tmp_path / "model.bin.gz"
    import gzip
    p.write_bytes(gzip.compress(b"word another\n" + bytes(range(256)) * 4))
    fails(prepared, "prepare", "--corpus", p, "--encoding-errors", "replace", code=3,
          error=f"Error: {p}, line 2: a NUL byte; this looks like a binary file, not text with "
                "one sentence a line")
    fake = tmp_path / "fake.xz"
    fake.write_bytes(b"this is not xz data at all")
    fails(prepared, "prepare", "--corpus", fake, code=3,
          error=f"Error: cannot read corpus file {fake}: Input format not supported by decoder")


def test_a_100_mb_single_line(prepared, tmp_path):
    p = tmp_path / "oneline.txt"
    with open(p, "wb") as f:
        f.write(b"the start of a line that never ends ")
        for _ in range(100):
            f.write(b"x" * 1_000_000)
    fails(prepared, "prepare", "--corpus", p, code=3,
          error=f"Error: {p}, line 1: more than 1000 characters without a space; is this a text "
                "corpus with words separated by spaces?")


# ------------------------------------------------------------------------------ PTB archive


def _fake_ptb(path: Path) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ptb/ptb.train.txt", "\n".join(planted_sentences(n_sentences=50)) + "\n")
    path.write_bytes(buf.getvalue())
    return hashlib.sha1(buf.getvalue()).hexdigest()


def test_ptb_archive_with_wrong_checksum_is_reported_or_redownloaded(tmp_path, workdir,
                                                                      monkeypatch):
    good = tmp_path / "mirror" / "ptb.zip"
    good.parent.mkdir()
    monkeypatch.setattr(corpus, "PTB_SHA1", _fake_ptb(good))
    data = tmp_path / "data"
    data.mkdir()
    (data / "ptb.zip").write_bytes(b"PK\x03\x04 a damaged archive")
    missing = (tmp_path / "gone.zip").as_uri()
    monkeypatch.setattr(corpus, "PTB_URL", missing)
    before = snapshot(data)
    fails(workdir, "prepare", "--data-dir", data, "--min-count", "1", code=4,
          error=f"Error: {data / 'ptb.zip'} has the wrong SHA-1 (expected {corpus.PTB_SHA1}) and "
                f"a fresh copy could not be fetched: could not download {missing}: [Errno 2] No "
                f"such file or directory: '{tmp_path / 'gone.zip'}'. Delete it, or replace it "
                f"with the archive from {missing}.")
    assert snapshot(data) == before
    # a mirror whose file has the wrong checksum: still reported, nothing replaced
    (tmp_path / "bad.zip").write_bytes(b"not the archive")
    bad_url = (tmp_path / "bad.zip").as_uri()
    monkeypatch.setattr(corpus, "PTB_URL", bad_url)
    run("prepare", "--data-dir", data, "--min-count", "1", code=4)
    assert snapshot(data) == before
    # a reachable good copy replaces the damaged one
    monkeypatch.setattr(corpus, "PTB_URL", good.as_uri())
    run("prepare", "--data-dir", data, "--min-count", "1", code=0)
    assert (data / "ptb.zip").read_bytes() == good.read_bytes()
    assert sorted(p.name for p in data.iterdir()) == ["ptb.zip"]  # no temporary file left


def test_a_folder_in_the_ptb_archives_place_is_named_as_one(tmp_path, workdir):
    (tmp_path / "data" / "ptb.zip").mkdir(parents=True)
    fails(workdir, "prepare", "--data-dir", tmp_path / "data", code=3,
          error=f"Error: {tmp_path / 'data' / 'ptb.zip'} is not a file (a folder, a pipe or a "
                "device), so it is not the PTB archive and a download cannot go there: move "
                "it, or point --data-dir / W2V_DATA_DIR at another folder")


# ------------------------------------------------------------------------------ options


@pytest.mark.parametrize("args, error", [
    (["--epochs", "0"], "Error: Invalid value for '--epochs': 0 is not in the range x>=1."),
    (["--lr", "0"], "Error: Invalid value for '--lr': 0.0 is not in the range x>0."),
    (["--lr", "-0.1"], "Error: Invalid value for '--lr': -0.1 is not in the range x>0."),
    (["--window", "0"], "Error: Invalid value for '--window': 0 is not in the range x>=1."),
    (["--batch-size", "0"], "Error: Invalid value for '--batch-size': 0 is not in the range x>=1."),
])
def test_out_of_range_train_options(trained, args, error):
    fails(trained, "train", *args, code=2, error=error)


def test_out_of_range_k(trained):
    fails(trained, "similar", "c0w1", "-k", "0", code=2,
          error="Error: Invalid value for '-k': 0 is not in the range x>=1.")
    fails(trained, "similar", "c0w1", "-k", "999", code=2,
          error="Error: -k must be between 1 and 31 (the words that can be returned), got 999")


def test_k_against_vectors_with_no_word_left_to_return():
    import numpy as np

    from w2v_cli.errors import UsageError
    from w2v_cli.vectors import Vectors

    one = Vectors(None, np.ones((1, 2), dtype=np.float32), tokens=["a"])
    with pytest.raises(UsageError) as e:
        one.check_k(1, 1)
    assert str(e.value) == ("the vectors hold 1 word: none is left to return once the 1 query "
                            "word is left out")


# ------------------------------------------------------------------------------ model files


def test_similar_without_a_model(workdir, prepared):
    fails(prepared, "similar", "c0w1", code=5,
          error=f"Error: no trained model in {prepared} (model.params missing): run `w2v train` "
                "first")
    empty = workdir.parent / "empty"
    fails(empty, "similar", "c0w1", "--workdir", empty, code=3,
          error=f"Error: no vocabulary at {empty / 'vocab.json'}: run `w2v prepare` first")


def test_truncated_params(trained):
    params = trained / "model.params"
    params.write_bytes(params.read_bytes()[:-100])  # a new inode: the checkpoint keeps its copy
    fails(trained, "similar", "c0w1", code=5,
          error=f"Error: {params} is not a readable MXNet parameter file (ends early at byte "
                f"{params.stat().st_size}); it is truncated or corrupted: re-run `w2v train`")


def test_corrupted_params_caught_by_checksum(trained):
    params = trained / "model.params"
    data = bytearray(params.read_bytes())
    data[200] ^= 0x40  # a float inside the center table
    params.unlink()
    params.write_bytes(bytes(data))
    fails(trained, "similar", "c0w1", code=5,
          error=f"Error: {params} does not match the checksum in {trained / 'run.json'}: the file "
                "is corrupted or comes from another run; run `w2v train --resume` to restore it "
                "from the latest checkpoint, or `w2v train` to retrain")


def test_params_from_another_run(trained, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("\n".join(planted_sentences(n_clusters=2, n_sentences=100)) + "\n")
    run("prepare", "--corpus", other, "--min-count", "1", code=0)  # 16 words + <unk> now
    fails(trained, "similar", "c0w1", code=5,
          error=f"Error: {trained / 'model.params'}: the center table has shape (33, 8) but the "
                "vocabulary has 17 words; the parameters come from a different run (re-run "
                "`w2v train`)")


def test_malformed_and_newer_vocab(trained):
    vocab = trained / "vocab.json"
    good = json.loads(vocab.read_text())
    vocab.write_text('{"format": "w2v-vocab", "version": 1, "tokens": [')
    fails(trained, "similar", "c0w1", code=3,
          error=f"Error: {vocab} is not a readable vocabulary JSON: Expecting value: line 1 "
                "column 50 (char 49); re-run `w2v prepare`")
    fails(trained, "train", *SMALL, code=3,
          error=f"Error: {vocab} is not a readable vocabulary JSON: Expecting value: line 1 "
                "column 50 (char 49); re-run `w2v prepare`")
    vocab.write_text(json.dumps({**good, "version": 2}))
    fails(trained, "similar", "c0w1", code=3,
          error=f"Error: {vocab} was written by a newer w2v (vocabulary format version 2); this "
                "w2v reads version 1: upgrade w2v")
    vocab.write_text(json.dumps({**good, "version": "1.0"}))
    fails(trained, "similar", "c0w1", code=3,
          error=f"Error: {vocab} has an unknown vocabulary format version '1.0'; this w2v reads "
                "version 1")


def test_newer_run_record(trained):
    record = trained / "run.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "version": 3}))
    fails(trained, "similar", "c0w1", code=5,
          error=f"Error: {record} was written by a newer w2v (run record format version 3); "
                "this w2v reads version 1: upgrade w2v")


def test_newer_checkpoint_is_an_error_on_resume(trained):
    state = trained / "checkpoints" / "step-00001-00000000" / "state.json"
    newer = checkpoint.STATE_VERSION + 1
    state.write_text(json.dumps({**json.loads(state.read_text()), "version": newer}))
    fails(trained, "train", "--resume", "--epochs", "2", code=10,
          error=f"Error: {state} was written by a newer w2v (checkpoint format version {newer}); "
                f"this w2v reads version {checkpoint.STATE_VERSION}: upgrade w2v")


def test_resume_with_other_settings_names_the_difference(trained):
    fails(trained, "train", "--resume", "--epochs", "2", "--window", "3", code=10,
          error="Error: cannot resume: --window is 3 but the checkpoint has 2. Resume with the "
                "checkpoint's settings (leave those options out) or start a new run without "
                "--resume")
    run("train", "--resume", "--epochs", "2", code=0)  # the saved settings, one more epoch
    assert json.loads((trained / "run.json").read_text())["config"]["window"] == 2


# ------------------------------------------------------------------------------ lock


def test_second_train_on_a_locked_workdir_fails_at_once(trained):
    with lock.acquire(trained, "train") as held:
        info = json.loads(held.path.read_text())
        before = snapshot(trained)
        result = run("train", *SMALL, code=8)
        assert result.output.strip().splitlines()[-1] == (
            f"Error: {trained} is in use by another w2v process ({lock._describe(info)}); wait "
            "for it to finish, stop it, or use another --workdir")
        run("prepare", "--min-count", "1", code=8)
        assert snapshot(trained) == before
    assert not (trained / lock.LOCK_FILE).exists()
    run("train", *SMALL, code=0)


def test_stale_lock_from_a_dead_process_is_taken_over(trained):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = {"pid": dead.pid, "host": socket.gethostname(), "command": "train",
             "started": 1_700_000_000.0}
    (trained / lock.LOCK_FILE).write_text(json.dumps(stale))
    result = run("train", *SMALL, code=0)
    assert ("note: removed a stale lock left by a process that is no longer running ("
            f"{lock._describe(stale)})") in result.output
    assert not (trained / lock.LOCK_FILE).exists()


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_lock_path_that_is_not_a_plain_file_is_refused_and_left_alone(trained, tmp_path,
                                                                         kind):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    path = trained / lock.LOCK_FILE
    if kind == "symlink":
        path.symlink_to(victim)
        what = "a symbolic link"
    else:
        os.mkfifo(path)
        what = "not a regular file"
    before = snapshot(trained)
    fails(trained, "train", *SMALL, code=9,
          error=f"Error: the lock file {path} is {what}; w2v writes its lock there and will not "
                "write through it: remove it, then run the command again")
    assert victim.read_text() == "keep me\n"
    assert snapshot(trained) == before
    assert path.is_symlink() if kind == "symlink" else path.is_fifo()


# ------------------------------------------------------------------------------ full disk


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_while_preparing_keeps_the_old_dataset(prepared, corpus_file, monkeypatch):
    monkeypatch.setattr(fileio.os, "fsync", _enospc)
    fails(prepared, "prepare", "--corpus", corpus_file, "--min-count", "2", code=9,
          error=f"Error: cannot write {prepared / 'ids.npy'}: the disk is full (no space left "
                "on device) (the previous ids.npy, if any, is unchanged)")


def test_full_disk_half_way_through_a_write_leaves_no_partial_file(prepared, corpus_file,
                                                                   monkeypatch):
    # prepare streams ids.npy piece by piece (dataset._Appender): half a piece, then a full disk
    real_write = dataset._Appender.write

    def half_then_full(self, arr):
        if self.path.name != "ids.npy":
            return real_write(self, arr)
        real_write(self, arr[: arr.size // 2])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(dataset._Appender, "write", half_then_full)
    fails(prepared, "prepare", "--corpus", corpus_file, "--min-count", "2", code=9,
          error=f"Error: cannot write {prepared / 'ids.npy'}: the disk is full (no space left "
                "on device) (the previous ids.npy, if any, is unchanged)")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name an fd")
def test_full_disk_while_checkpointing_keeps_the_last_checkpoint(trained, monkeypatch):
    real_fsync = os.fsync

    def full_under_checkpoints(fd):
        if "/checkpoints/" in os.readlink(f"/proc/self/fd/{fd}"):
            _enospc()
        real_fsync(fd)
    monkeypatch.setattr(fileio.os, "fsync", full_under_checkpoints)
    fails(trained, "train", *SMALL, "--resume", "--epochs", "2", code=9,
          error=f"Error: cannot write {trained / 'checkpoints' / 'step-00002-00000000'}: the "
                "disk is full (no space left on device) (the previous step-00002-00000000, if "
                "any, is unchanged)")


@pytest.mark.skipif(not shutil.which("unshare") or os.geteuid() != 0,
                    reason="needs root and unshare to mount a private tiny filesystem")
def test_really_full_disk_on_a_tiny_filesystem(tmp_path, corpus_file):
    """A 512 KiB tmpfs in a private mount namespace: prepare, fill it, prepare again."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    big = tmp_path / "big.txt"
    big.write_text("\n".join(planted_sentences(n_sentences=30000)) + "\n")
    script = f"""
set -u
mount -t tmpfs -o size=512k tmpfs {mnt} || exit 77
W="{sys.executable} -m w2v_cli"
$W prepare --corpus {corpus_file} --min-count 1 --workdir {mnt}/w >/dev/null || exit 10
find {mnt}/w -type f | sort | xargs sha1sum > {tmp_path}/before
$W prepare --corpus {big} --min-count 1 --workdir {mnt}/w 2> {tmp_path}/err
echo $? > {tmp_path}/code
find {mnt}/w -type f | sort | xargs sha1sum > {tmp_path}/after
"""
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True)
    if proc.returncode == 77 or not (tmp_path / "code").exists():
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    assert (tmp_path / "code").read_text().strip() == "9", (tmp_path / "err").read_text()
    assert (tmp_path / "err").read_text().strip() == (
        f"Error: cannot write {mnt / 'w' / 'ids.npy'}: the disk is full (no space left on "
        "device) (the previous ids.npy, if any, is unchanged)")
    assert (tmp_path / "before").read_text() == (tmp_path / "after").read_text()


# ------------------------------------------------------------------------------ mixed-up runs


def test_train_on_a_missing_workdir_creates_nothing(tmp_path):
    wd = tmp_path / "typo"
    run("train", *SMALL, "--workdir", wd, code=3,
        error=f"Error: no vocabulary at {wd / 'vocab.json'}: run `w2v prepare` first")
    assert not wd.exists()


def test_a_fresh_train_does_not_silently_discard_an_unfinished_run(prepared):
    run("train", *SMALL, code=0)
    record = json.loads((prepared / "run.json").read_text())
    record_path = prepared / "checkpoints" / "step-00001-00000000" / "state.json"
    state = json.loads(record_path.read_text())
    # make the run look interrupted after epoch 1 of 3
    state["config"]["epochs"] = 3
    state["record"]["complete"] = False
    record_path.write_text(json.dumps(state))
    fails(prepared, "train", *SMALL, code=10,
          error=f"Error: {prepared} holds an unfinished run (1 of 3 epochs done); continue it "
                "with `w2v train --resume`, or pass --restart to discard it")
    run("train", "--resume", "--restart", code=2,
        error="Error: --resume and --restart exclude each other")
    run("train", *SMALL, "--restart", code=0)
    assert json.loads((prepared / "run.json").read_text())["complete"] is True
    assert record["complete"] is True


def test_similar_refuses_a_model_trained_on_another_vocabulary_of_the_same_size(trained,
                                                                                 tmp_path):
    # the same words, in another order of frequency: same size, other ids
    swapped = tmp_path / "swapped.txt"
    text = (trained.parent / "small.txt").read_text()
    swapped.write_text(text.replace("c0w", "tmp").replace("c1w", "c0w").replace("tmp", "c1w"))
    run("prepare", "--corpus", swapped, "--min-count", "1", code=0)
    fails(trained, "similar", "c0w1", code=5,
          error=f"Error: the model in {trained} was trained on another vocabulary than its "
                "vocab.json (was `w2v prepare` run again after `w2v train`?): re-run `w2v train`")


def test_full_disk_while_exporting_keeps_the_previous_export(trained, tmp_path, monkeypatch):
    out = tmp_path / "vectors.npy"
    run("export", "--format", "npy", "-o", out, code=0)
    before = snapshot(tmp_path)
    monkeypatch.setattr(fileio.os, "fsync", _enospc)
    run("export", "--format", "npy", "--which", "sum", "-o", out, code=9,
        error=f"Error: cannot write {out}: the disk is full (no space left on device) (the "
              "previous vectors.npy, if any, is unchanged)")
    assert snapshot(tmp_path) == before


def test_id_files_from_another_prepare_are_refused(prepared, tmp_path, corpus_file):
    # What a prepare killed between renaming its id files and its vocab.json leaves behind.
    other = tmp_path / "other"
    small = tmp_path / "smaller.txt"
    small.write_text("\n".join(planted_sentences(n_sentences=50, seed=3)) + "\n")
    run("prepare", "--corpus", small, "--min-count", "1", "--workdir", other, code=0)
    for name in ("ids.npy", "offsets.npy"):
        shutil.copy(other / name, prepared / name)
    fails(prepared, "train", "--epochs", "1", code=3,
          error=f"Error: {prepared}: vocab.json describes 1600 tokens in 200 sentences but "
                f"ids.npy holds 400 in 50: they come from different runs; re-run `w2v prepare`")


def test_a_failed_first_prepare_leaves_no_workdir(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    new = tmp_path / "new-work"
    run("prepare", "--corpus", empty, "--workdir", new, code=3)
    assert not new.exists()


def test_launch_of_a_missing_program_is_an_error_line_not_a_traceback(tmp_path):
    run("launch", "-n", "1", "--timeout", "30", "--", str(tmp_path / "no-such-program"),
        code=11, error=f"Error: cannot start worker-0 ({tmp_path / 'no-such-program'}): "
                       "No such file or directory")
