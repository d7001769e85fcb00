"""Files at the edges: output paths that are not regular files, corpora that are odd or change
while read, a killed or interrupted prepare, a full disk. Each test failed on the code before
its fix (issue 19)."""

from __future__ import annotations

import hashlib
import os
import select
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from planted_vectors import write_model, planted_vocab, MATRIX

from w2v_cli import export, fileio
from w2v_cli.cli import cli
from w2v_cli.errors import StorageError
from w2v_cli.vectors import Vectors
from w2v_cli.vocab import Vocab


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> SHA-1 of every file under ``root``, hidden ones included."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def model(workdir):
    write_model(workdir, planted_vocab(), MATRIX)
    return workdir


def _drain(path: Path, into: list) -> threading.Thread:
    """A reader of FIFO ``path`` in a thread, collecting what it reads into ``into``."""
    def read():
        with open(path, "rb") as f:
            into.append(f.read())
    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


# ---- output paths ---------------------------------------------------------------------------

def test_export_into_a_fifo_writes_into_it_and_keeps_the_fifo(model, tmp_path):
    regular = tmp_path / "v.txt"
    assert run("export", "-o", regular).exit_code == 0
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list = []
    reader = _drain(fifo, got)
    result = run("export", "-o", fifo)
    reader.join(10)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got == [regular.read_bytes()]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_plot_into_a_fifo_keeps_the_fifo(model, tmp_path):
    pytest.importorskip("matplotlib")
    fifo = tmp_path / "map.png"
    os.mkfifo(fifo)
    got: list = []
    reader = _drain(fifo, got)
    result = run("plot", "king", "-k", "2", "-o", fifo)
    reader.join(30)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got[0].startswith(b"\x89PNG")


def test_a_full_device_is_an_error_that_claims_no_kept_file(model):
    """/dev/full is written into (no rename), so no "previous file" survives to mention."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    result = run("export", "-o", "/dev/full")
    assert result.exit_code == 9
    assert result.output.splitlines()[-1] == (
        "Error: cannot write /dev/full: the disk is full (no space left on device)")


@pytest.mark.parametrize("args", [["export", "-o", "-"], ["similar", "king", "-k", "2"],
                                  ["train", "--help"]])
def test_a_reader_gone_from_standard_output_ends_quietly_with_141(model, args):
    """`w2v export -o - | head`: the pipe's reader has gone (EPIPE on the first write), and
    w2v stops as cat does there: no message, 128 + SIGPIPE, not even Python's complaint
    at exit. Also when Click writes (--help), where Click itself would exit 1."""
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads: the first write gets EPIPE
    try:
        done = subprocess.run([sys.executable, "-m", "w2v_cli", *args, "--workdir", str(model)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_a_failed_write_meant_for_standard_output_names_it():
    import errno

    from w2v_cli import fileio
    from w2v_cli.errors import StorageError

    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(StorageError) as e:
        fileio.atomic_write(fileio.STDOUT, full)  # the temporary file behind "-" fails
    assert str(e.value) == "cannot write standard output: the disk is full (no space left on " \
                           "device)"


def test_export_through_a_symlink_replaces_the_target_and_keeps_the_link(model, tmp_path):
    target = tmp_path / "real" / "v.txt"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    result = run("export", "-o", link)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text().startswith(f"{len(MATRIX) - 1} {MATRIX.shape[1]}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "real", "work"]
    assert [p.name for p in target.parent.iterdir()] == ["v.txt"]


def test_export_to_stdout_prints_the_vectors_alone(model, tmp_path):
    regular = tmp_path / "v.txt"
    assert run("export", "-o", regular).exit_code == 0
    result = run("export", "-o", "-")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == regular.read_bytes()
    assert "-> -" in result.stderr
    assert not Path("-").exists()


def w2v_process(*args, stdout) -> subprocess.CompletedProcess:
    """Run w2v from this checkout in a process of its own, whose stdout is a real descriptor."""
    return subprocess.run([sys.executable, "-m", "w2v_cli", *map(str, args)], stdout=stdout,
                          stderr=subprocess.PIPE, text=False, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])


@pytest.mark.parametrize("name", ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"])
@pytest.mark.parametrize("mode, kept", [("ab", b"PREV\n"), ("wb", b"")])
def test_export_to_dev_stdout_writes_into_the_shells_file(model, tmp_path, name, mode, kept):
    """`w2v export -o /dev/stdout >> a.txt` appends to a.txt, as `-o -` does, rather than
    renaming a new file over it; with `>` the file is the same one too."""
    regular = tmp_path / "v.txt"
    assert run("export", "-o", regular).exit_code == 0
    out = tmp_path / "a.txt"
    out.write_bytes(b"PREV\n")
    inode = out.stat().st_ino
    with open(out, mode) as f:
        done = w2v_process("export", "-o", name, stdout=f)
    assert (done.returncode, done.stderr.decode().splitlines()[-1]) == \
        (0, f"8 words x 5 (center vectors) -> {name}")
    assert out.read_bytes() == kept + regular.read_bytes()
    assert out.stat().st_ino == inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "v.txt", "work"]


def test_export_to_dev_stdout_into_a_pipe(model, tmp_path):
    regular = tmp_path / "v.txt"
    assert run("export", "-o", regular).exit_code == 0
    done = w2v_process("export", "-o", "/dev/stdout", stdout=subprocess.PIPE)
    assert (done.returncode, done.stdout) == (0, regular.read_bytes())


def test_plot_to_dev_stdout_into_a_pipe(model):
    pytest.importorskip("matplotlib")
    done = w2v_process("plot", "king", "-k", "2", "-o", "/dev/stdout", stdout=subprocess.PIPE)
    assert done.returncode == 0, done.stderr
    assert done.stdout[:8] == b"\x89PNG\r\n\x1a\n"
    assert done.stdout[-8:] == b"IEND\xaeB`\x82"  # one whole PNG, nothing after it


def test_every_name_of_an_open_descriptor_is_written_through_it(tmp_path):
    read_end, write_end = os.pipe()
    link = tmp_path / "link"
    link.symlink_to(f"/dev/fd/{write_end}")
    names = [f"/dev/fd/{write_end}", f"/proc/self/fd/{write_end}",
             f"/proc/{os.getpid()}/fd/{write_end}", link]
    try:
        for name in names:
            fileio.write_bytes(name, f"{name}\n".encode())
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as r:
        assert r.read().decode().splitlines() == [str(n) for n in names]
    assert list(tmp_path.iterdir()) == [link]


def test_a_descriptor_open_for_reading_only_is_refused(tmp_path):
    (tmp_path / "in").write_bytes(b"old\n")
    with open(tmp_path / "in", "rb") as f:
        name = f"/dev/fd/{f.fileno()}"
        with pytest.raises(StorageError) as e:
            fileio.write_bytes(name, b"new\n")
    assert str(e.value) == f"cannot write {name}: descriptor {name[8:]} is open for reading only"
    assert (tmp_path / "in").read_bytes() == b"old\n"


@pytest.mark.parametrize("fmt", ["npy", "tsv"])
def test_two_file_formats_to_stdout_are_refused(model, fmt):
    result = run("export", "--format", fmt, "-o", "-")
    assert result.exit_code == 2
    assert "cannot go to standard output" in result.output
    assert not Path("-").exists()


def test_npy_to_a_fifo_is_refused_and_writes_nothing_beside_it(model, tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    result = run("export", "--format", "npy", "-o", fifo)
    assert result.exit_code == 2
    assert "is not a regular file" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "work"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


_REFUSED = "it is a folder; give a regular file, a FIFO, a character device such as " \
    "/dev/null, or - for standard output"


def test_npy_refused_for_its_words_leaves_the_matrix_as_it_was(model, tmp_path):
    (tmp_path / "x.npy").write_bytes(b"OLD\n")
    (tmp_path / "x.vocab.txt").mkdir()
    before = snapshot(tmp_path)
    result = run("export", "--format", "npy", "-o", tmp_path / "x.npy")
    assert result.exit_code == 9
    assert result.output.splitlines()[-1] == \
        f"Error: cannot write {tmp_path / 'x.vocab.txt'}: {_REFUSED}"
    assert snapshot(tmp_path) == before  # no temporary file left either


def test_tsv_refused_for_its_metadata_leaves_the_vectors_as_they_were(model, tmp_path):
    out = tmp_path / "o" / "out"
    (out / "metadata.tsv").mkdir(parents=True)
    (out / "vectors.tsv").write_bytes(b"V\n")
    before = snapshot(tmp_path)
    result = run("export", "--format", "tsv", "-o", out)
    assert result.exit_code == 9
    assert result.output.splitlines()[-1] == \
        f"Error: cannot write {out / 'metadata.tsv'}: {_REFUSED}"
    assert snapshot(tmp_path) == before


def test_a_failed_fsync_of_the_second_file_replaces_neither(model, tmp_path, monkeypatch):
    """Both temporary files reach the disk before either is renamed: an fsync failing for
    metadata.tsv (EIO) leaves vectors.tsv as it was, not the new one beside the old words."""
    import errno

    from w2v_cli import fileio

    out = tmp_path / "out"
    out.mkdir()
    for name in ("vectors.tsv", "metadata.tsv"):
        (out / name).write_bytes(b"OLD\n")
    before = snapshot(tmp_path)
    real_fsync = os.fsync

    def failing(fd):
        if ".metadata.tsv." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)
    monkeypatch.setattr(fileio.os, "fsync", failing)
    result = run("export", "--format", "tsv", "-o", out)
    assert result.exit_code == 9
    assert result.output.splitlines()[-1].startswith(f"Error: cannot write {out / 'metadata.tsv'}")
    assert snapshot(tmp_path) == before


def test_npy_to_dev_stdout_is_refused_and_changes_nothing(model, tmp_path):
    out = tmp_path / "out"
    out.write_bytes(b"OLD\n")
    with open(out, "ab") as f:
        done = w2v_process("export", "--format", "npy", "-o", "/dev/fd/1", stdout=f)
    assert (done.returncode, done.stderr.decode().splitlines()[-1]) == (2, (
        "Error: --format npy writes two files, so it cannot go to standard output (/dev/fd/1); "
        "give a file name"))
    assert out.read_bytes() == b"OLD\n"


def test_npy_renames_its_matrix_only_once_its_words_are_in_a_fifo(tmp_path):
    """The words go into a FIFO, more of them than a pipe holds, so the writer waits for the
    reader: while it waits the matrix is the old one, and a reader that never came (or a
    Ctrl-C) would leave it so."""
    words = [f"w{i:07d}" for i in range(20000)]  # 180 kB, a pipe holds 64 kB
    vectors = Vectors(Vocab(["<unk>", *words], np.arange(20001)[::-1]),
                      np.ones((20001, 2), np.float32))
    matrix, fifo = tmp_path / "x.npy", tmp_path / "x.vocab.txt"
    matrix.write_bytes(b"OLD\n")
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writer = threading.Thread(target=export.export, args=(vectors, "npy", matrix), daemon=True)
    writer.start()
    try:
        assert select.select([reader], [], [], 60)[0] == [reader]  # the words have begun
        assert matrix.read_bytes() == b"OLD\n"
        os.set_blocking(reader, True)
        got = b"".join(iter(lambda: os.read(reader, 1 << 16), b""))
    finally:
        os.close(reader)
    writer.join(60)
    assert got == "".join(w + "\n" for w in words).encode()
    np.testing.assert_array_equal(np.load(matrix), np.ones((20000, 2), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "x.vocab.txt"]


@pytest.mark.parametrize("args", [["export", "-o", ""], ["plot", "c0w1", "-o", ""],
                                  ["info", "--workdir", ""]])
def test_an_empty_path_is_refused(model, args):
    result = run(*args)
    assert result.exit_code == 2
    assert "is empty: give a name." in result.output


def test_a_character_device_stays_one(model, tmp_path):
    """A device made in tmp (the same as /dev/null), so a defect cannot harm the system's."""
    dev = tmp_path / "null"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot make a device node here: {e}")
    result = run("export", "-o", dev)
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.lstat(dev).st_mode)


def test_dev_null_stays_a_character_device(model):
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    result = run("export", "-o", "/dev/null")
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_socket_is_refused_not_replaced(model, tmp_path):
    import socket

    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        result = run("export", "-o", path)
        assert result.exit_code == 9
        assert "it is a socket" in result.output
        assert stat.S_ISSOCK(os.lstat(path).st_mode)


# ---- evaluate -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["nan", "inf", "-Infinity", "NaN"])
def test_gold_scores_must_be_finite_numbers(model, tmp_path, bad):
    path = tmp_path / "gold.tsv"
    path.write_text(f"king queen 5\nman woman {bad}\napple pear 7\n")
    result = run("evaluate", "--similarity", path)
    assert result.exit_code == 3
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {path}:2: the score must be a finite number, got {bad!r}")
    assert "Traceback" not in result.output


# ---- a full disk ----------------------------------------------------------------------------

def test_a_full_disk_says_so(model, tmp_path, monkeypatch):
    import errno

    from w2v_cli import fileio

    out = tmp_path / "v.txt"
    out.write_text("old\n")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(fileio.os, "fsync", full)
    result = run("export", "-o", out)
    assert result.exit_code == 9
    assert result.output.strip().splitlines()[-1] == (
        f"Error: cannot write {out}: the disk is full (no space left on device) (the previous "
        "v.txt, if any, is unchanged)")
    assert out.read_text() == "old\n"


# ---- standard output and error that cannot be written --------------------------------------

FULL_STDOUT = "Error: cannot write standard output: the disk is full (no space left on device)"


def _w2v(*args, stdin: str = "", shell: str = "") -> tuple[int, str]:
    """Run `python -m w2v_cli ARGS` from this tree with stdout on /dev/full (or as ``shell``
    redirects it: `exec "$@" SHELL`); its exit code and stderr."""
    import subprocess
    import sys

    from conftest import REPO

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    cmd = [sys.executable, "-m", "w2v_cli", *map(str, args)]
    if shell:
        cmd = ["sh", "-c", f'exec "$@" {shell}', "sh", *cmd]
    with open("/dev/full", "w") as full:
        done = subprocess.run(cmd, input=stdin, stdout=full, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    return done.returncode, done.stderr


@pytest.fixture
def files(prepared, tmp_path) -> dict:
    """A prepared workdir, four word2vec text vectors (read without MXNet), a similarity set."""
    v = tmp_path / "v.txt"
    v.write_text("4 2\nking 1 1\nqueen 1 0\nman 0 1\nwoman 0.1 0\n", encoding="utf-8")
    sim = tmp_path / "sim.txt"
    sim.write_text("king queen 8\nman woman 7\nking woman 3\n", encoding="utf-8")
    return dict(work=prepared, v=v, sim=sim, out=tmp_path / "out.txt")


@pytest.mark.parametrize("args, stdin", [
    (["--version"], ""),
    (["info", "--workdir", "{work}"], ""),
    (["info", "--json", "--workdir", "{work}"], ""),
    (["similar", "king", "-k", "2", "--vectors", "{v}"], ""),
    (["similar", "--json", "-k", "2", "--vectors", "{v}"], "king\nman\n"),  # words read from stdin
    (["analogy", "man", "king", "woman", "-k", "1", "--vectors", "{v}"], ""),
    (["evaluate", "--similarity", "{sim}", "--vectors", "{v}"], ""),
    (["evaluate", "--json", "--similarity", "{sim}", "--vectors", "{v}"], ""),
    (["export", "-o", "{out}", "--vectors", "{v}"], ""),  # its summary line, after the file
    (["export", "-o", "-", "--vectors", "{v}"], ""),
])
def test_a_full_disk_behind_standard_output_is_an_error_line_and_9(files, args, stdin):
    """`w2v ... > /dev/full`: every command (Click's --version too) says so and exits 9,
    rather than a traceback and 1."""
    code, err = _w2v(*(a.format(**files) for a in args), stdin=stdin)
    assert (code, err) == (9, FULL_STDOUT + "\n")
    if "{out}" in args:
        assert files["out"].read_text().startswith("4 2\nking ")


def test_a_full_disk_behind_the_summary_of_prepare_is_an_error_after_the_dataset(
        workdir, corpus_file):
    code, err = _w2v("prepare", "--corpus", corpus_file, "--min-count", "1", "--workdir",
                     workdir)
    assert (code, err) == (9, FULL_STDOUT + "\n")
    assert sorted(p.name for p in workdir.iterdir()) == ["ids.npy", "offsets.npy",
                                                         "vocab.json"]


@pytest.mark.parametrize("args", [["similar", "king", "-k", "2", "--vectors", "{v}"],
                                  ["export", "-o", "-", "--vectors", "{v}"]])
def test_a_closed_standard_output_is_an_error_line_and_9(files, args):
    """`w2v similar king >&-` printed nothing and exited 0."""
    code, err = _w2v(*(a.format(**files) for a in args), shell=">&-")
    assert (code, err) == (9, "Error: cannot write standard output: it is closed\n")


@pytest.mark.parametrize("args, code", [
    (["info", "--no-such-option"], 2),  # Click's usage error
    (["info", "--workdir", "{sim}.d"], 3),  # the core's error
    (["similar", "nosuchword", "-k", "1", "--vectors", "{v}"], 2),  # a query's, then on
])
def test_an_unwritable_standard_error_keeps_the_exit_code(files, args, code):
    """`w2v ... 2>/dev/full`: the message is lost, what it meant is not (a usage error
    exited 1)."""
    assert _w2v(*(a.format(**files) for a in args), shell="2>/dev/full") == (code, "")


# ---- SIGINT ---------------------------------------------------------------------------------

# Runs the CLI with the step that would take time replaced by a stall that says "ready", so
# SIGINT arrives mid-command, at a known place, without a timed test.
_STALLING_CLI = """
import sys, time
from w2v_cli import corpus, info

def stall(*args, **kwargs):
    print("ready", file=sys.stderr, flush=True)
    time.sleep(120)
    raise SystemExit(99)

def stalled_blocks(self, *args, **kwargs):
    stall()
    yield from ()

corpus.LineStream.blocks = stalled_blocks
info.describe = stall
from w2v_cli.cli import cli
cli(prog_name="w2v")
"""


def _interrupt(*args, signum=signal.SIGINT) -> tuple[int, str]:
    import subprocess
    import sys

    from conftest import REPO

    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", _STALLING_CLI, *map(str, args)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env)
    try:
        assert proc.stderr.readline().strip() == "ready"
        proc.send_signal(signum)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


@pytest.fixture
def prepared(workdir, corpus_file) -> Path:
    result = run("prepare", "--corpus", corpus_file, "--min-count", "1")
    assert result.exit_code == 0, result.output
    return workdir


SIGNALS = pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])


@SIGNALS
def test_a_signal_during_prepare_exits_128_plus_it_and_keeps_the_previous_dataset(
        prepared, corpus_file, signum):
    before = snapshot(prepared)
    code, err = _interrupt("prepare", "--corpus", corpus_file, "--workdir", prepared,
                           signum=signum)
    assert code == 128 + signum, err
    assert err.strip().splitlines() == [f"interrupted by {signum.name}; stopped"]
    assert snapshot(prepared) == before  # its scratch folder and the lock went too


@SIGNALS
def test_a_signal_in_another_command_exits_128_plus_it(prepared, signum):
    code, err = _interrupt("info", "--workdir", prepared, signum=signum)
    assert code == 128 + signum, err
    assert err.strip().splitlines() == [f"interrupted by {signum.name}; stopped"]


# The console script's way in (tests/conftest.py's REPO on the path), saying when it has
# started, so the timing of the signal does not depend on how long the interpreter took to
# start: a KeyboardInterrupt there, before any of w2v's code runs, only Python can avoid.
_STARTING_CLI = """
import sys
from w2v_cli.__main__ import main
print("started", file=sys.stderr, flush=True)
main()
"""


def test_ctrl_c_while_the_modules_load_exits_130_without_a_traceback(prepared):
    """SIGINT in the first tenths of a second (Click, numpy and the rest being imported)
    printed a KeyboardInterrupt traceback, or numpy's ImportError and exit 1."""
    import subprocess
    import sys
    import time

    from conftest import REPO

    for delay in [0, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.07] * 2:
        proc = subprocess.Popen([sys.executable, "-c", _STARTING_CLI, "info", "--workdir",
                                 str(prepared)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONPATH=str(REPO)))
        try:
            assert proc.stderr.readline() == "started\n"
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            err = proc.communicate(timeout=60)[1]
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, (delay, err)
        # quiet while Click loads; a blank line if Click was parsing; the command's own words
        assert set(err.splitlines()) <= {"", "interrupted by SIGINT; stopped"}, (delay, err)


# ---- leftovers of a killed prepare ----------------------------------------------------------

def test_prepare_removes_what_a_killed_run_left_and_only_that(prepared, corpus_file):
    left = prepared / ".prepare.k3j_9x2a.tmp"  # a SIGKILLed prepare's scratch folder
    left.mkdir()
    (left / "pids.i32").write_bytes(b"\0" * 1000)
    (prepared / ".ids.npy.a1b2c3d4.tmp").write_bytes(b"half")  # a SIGKILLed atomic write
    mine = [prepared / ".notes.tmp", prepared / ".my.tmp.txt", prepared / "x.12345678.tmp"]
    for p in mine:
        p.write_text("the user's")
    result = run("prepare", "--corpus", corpus_file, "--min-count", "1")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in prepared.iterdir())
    assert names == sorted([".my.tmp.txt", ".notes.tmp", "x.12345678.tmp", "ids.npy",
                            "offsets.npy", "vocab.json"])


# ---- what a corpus is -----------------------------------------------------------------------

def _sentences(workdir: Path) -> list[list[str]]:
    from w2v_cli import dataset

    return dataset.load(workdir).sentences()


def test_only_newline_and_crlf_end_a_sentence(tmp_path, workdir):
    p = tmp_path / "odd.txt"
    p.write_bytes("a b\x0bc\x0cd\x1ce\x1df\x1eg\x85h\u2028i\u2029j\rk l\r\nm n\nm a\n".encode())
    result = run("prepare", "--corpus", p, "--min-count", "1")
    assert result.exit_code == 0, result.output
    assert _sentences(workdir) == [list("abcdefghijkl"), ["m", "n"], ["m", "a"]]


def test_a_workdir_inside_the_corpus_folder_is_never_read(tmp_path, corpus_file):
    folder = corpus_file.parent
    work = folder / "work"
    for _ in range(2):  # the second run finds the first one's files in the corpus folder
        result = run("prepare", "--corpus", folder, "--min-count", "1", "--workdir", work)
        assert result.exit_code == 0, result.output
        assert result.output.startswith("200 sentences, 1600 tokens"), result.output
    inner = work / "texts"
    inner.mkdir()
    named = run("prepare", "--corpus", inner, "--workdir", work)
    assert named.exit_code == 3
    assert named.output.strip().splitlines()[-1] == (
        f"Error: corpus folder {inner} is in the working directory {work}, whose files "
        "are w2v's own, not corpus; move it or use another --workdir")


# ---- memory whatever the line lengths -------------------------------------------------------

def _bench_module():
    """benchmarks/prepare_memory.py: the test bounds with tracemalloc what the bench line
    measures, with the same corpus writer and the same peak."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "prepare_memory.py"
    spec = importlib.util.spec_from_file_location("prepare_memory", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_memory_does_not_grow_with_line_length(tmp_path):
    bench = _bench_module()
    one, short = tmp_path / "one.txt", tmp_path / "short.txt"
    bench.write_corpus(one, 200_000, 0, vocab=1000)
    bench.write_corpus(short, 200_000, 20, vocab=1000)
    peak_one = bench.peak(one, tmp_path / "w1", 20_000)
    peak_short = bench.peak(short, tmp_path / "w2", 20_000)
    assert peak_one <= 1.5 * peak_short, (peak_one, peak_short)
    from w2v_cli import dataset

    a, b = dataset.load(tmp_path / "w1"), dataset.load(tmp_path / "w2")
    assert a.offsets.tolist() == [0, 200_000] and b.n_sentences == 10_000
    assert a.ids.tolist() == b.ids.tolist()


# ---- corpora that are pipes, or change while read -------------------------------------------

def test_a_fifo_corpus_is_read(tmp_path, workdir, corpus_file):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    data = corpus_file.read_bytes()

    def feed():
        with open(fifo, "wb") as f:
            f.write(data)
    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    result = run("prepare", "--corpus", fifo, "--min-count", "1")
    writer.join(10)
    assert result.exit_code == 0, result.output
    from w2v_cli import dataset

    ds = dataset.load(workdir)
    assert ds.vocab.meta["source"]["files"][0]["sha1"] == hashlib.sha1(data).hexdigest()
    assert ds.sentences() == [line.split() for line in data.decode().splitlines()]


@pytest.mark.parametrize("change", ["truncate", "append", "rewrite"])
def test_a_corpus_that_changes_while_read_is_an_error_and_changes_nothing(
        prepared, tmp_path, monkeypatch, change):
    from conftest import planted_sentences

    from w2v_cli import corpus, dataset
    from w2v_cli.config import Config
    from w2v_cli.errors import DataError

    path = tmp_path / "big.txt"
    path.write_text("\n".join(planted_sentences(n_sentences=2000, seed=5)) + "\n")
    monkeypatch.setattr(corpus, "BLOCK_BYTES", 4096)
    size = path.stat().st_size

    def meddle(progress):
        if progress.bytes < size and path.stat().st_size == size:
            if change == "truncate":
                os.truncate(path, size // 2)
            elif change == "append":
                with open(path, "a") as f:
                    f.write("more words here\n")
            else:  # the same size, other bytes, a later time
                with open(path, "r+b") as f:
                    f.seek(size - 10)
                    f.write(b"zzzzzzzzz\n")
                os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    before = snapshot(prepared)
    config = Config(workdir=str(prepared), corpus=(str(path),), min_count=1, chunk_tokens=100)
    with pytest.raises(DataError, match=f"corpus file {path} changed while it was read"):
        dataset.prepare(config, on_chunk=meddle)
    assert snapshot(prepared) == before


@pytest.mark.parametrize("error, reason", [
    (OSError(28, "No space left on device"), "the disk is full (no space left on device)"),
    (OSError("19900 requested and 11232 written"),
     "only 11232 of 19900 bytes could be written (the disk is probably full)"),
    (RuntimeError("[14:01:02] src/io.cc:120: Check failed: No space left on device\nStack"),
     "the disk is full (no space left on device)"),
    (OSError(13, "Permission denied"), "Permission denied"),
    (RuntimeError("first line\nsecond"), "first line"),
    # MXNet 1.9.1's nd.save on a full disk, as it reads
    (RuntimeError('Traceback (most recent call last):\n  File "../3rdparty/dmlc-core/src/io/'
                  'local_filesys.cc", line 38\nMXNetError: Check failed: std: :fwrite(ptr, 1, '
                  'size, fp_) == size: FileStream.Write incomplete'),
     "the write was cut short (the disk is probably full)"),
    (RuntimeError('Traceback (most recent call last):\n  File "src/x.cc", line 9\n'
                  'MXNetError: Check failed: something else'), "Check failed: something else"),
])
def test_a_full_disk_is_said_plainly_however_the_writer_reports_it(error, reason):
    from w2v_cli import fileio

    assert fileio.os_reason(error) == reason
