"""SIGKILL `w2v train` at random moments, mostly while it writes a checkpoint.

Three working directories each take one kill of a cold-started `python -m w2v_cli train`
and seven kills of `w2v train --resume` processes forked from a server that has imported
MXNet already (tests/forkserver.py; the ~2 s MXNet import per process would otherwise make
this test take a minute on two cores). Each process is killed after one or two
checkpoints of its own: half the kills at a random moment of the next epoch, half a few
milliseconds after the next checkpoint folder starts being written. After every kill the
latest checkpoint must verify and load; finally a cold-started `python -m w2v_cli train
--resume` must finish each run, with every epoch recorded exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import encode, planted_sentences
from w2v_cli import checkpoint, dataset, params

EPOCHS = 36  # 8 processes a lane, each killed within 3 epochs: at most 24 done
LANES = 3
FORKED_KILLS = 7
ARGS = ["--epochs", str(EPOCHS), "--batch-size", "4096", "--embed-size", "4", "--window", "1",
        "--negatives", "1", "--subsample", "0", "--device", "cpu", "--seed", "3"]
HERE = Path(__file__).resolve().parent


def _env(workdir: Path | None = None) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    if workdir:
        env["W2V_WORKDIR"] = str(workdir)
    return env


def _steps(workdir: Path) -> list[str]:
    root = workdir / checkpoint.CHECKPOINT_DIR
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def _newest(workdir: Path) -> str:
    return max([s for s in _steps(workdir) if s.startswith("step-")], default="")


def _wait_then_kill(pid: int, workdir: Path, rng: random.Random, inside_write: bool) -> bool:
    """Kill ``pid`` after it has written one or two checkpoints of its own: just after the
    next checkpoint folder appears under its temporary name, or at a random moment of the
    following epoch. Counting epochs, not seconds, keeps each process to a few epochs however
    fast the disk is, so no process can finish the run before it is killed."""
    deadline = time.monotonic() + 60
    seen, last, epoch_seconds = _newest(workdir), None, 0.05
    for _ in range(rng.randint(1, 2)):
        while _newest(workdir) == seen:
            assert time.monotonic() < deadline, "training never wrote a checkpoint"
            time.sleep(0.001)
        seen, now = _newest(workdir), time.monotonic()
        epoch_seconds, last = (now - last if last else epoch_seconds), now
    if inside_write:
        while not any(s.endswith(".tmp") for s in _steps(workdir)) \
                and time.monotonic() < deadline:
            pass
        time.sleep(rng.uniform(0, 0.005))
    else:
        time.sleep(rng.uniform(0, epoch_seconds))
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False  # it ended by itself: the caller shows why
    return True


def _after_kill(workdir: Path, vocab_size: int, kills: list) -> None:
    kills.append(any(s.endswith(".tmp") for s in _steps(workdir)))
    d, state, _ = checkpoint.latest(workdir)  # verifies the SHA-1 of every file in it
    tables = params.read_params(d / params.PARAMS_FILE)
    assert {t.shape for t in tables.values()} == {(vocab_size, 4)}
    assert state["batch"] == 0 and 1 <= state["epoch"] < EPOCHS
    assert params.load_tables(workdir, vocab_size)["center"].shape == (vocab_size, 4)


def test_sigkill_during_checkpoint_writes_always_leaves_a_loadable_checkpoint(tmp_path):
    ds = encode(planted_sentences(n_sentences=60), min_count=1)
    lanes = [tmp_path / f"lane{i}" for i in range(LANES)]
    for wd in lanes:
        dataset.save(ds, wd)
    rng, kills = random.Random(0), []

    # one cold start per lane, one after the other (a process left running would race ahead)
    for wd in lanes:
        proc = subprocess.Popen([sys.executable, "-m", "w2v_cli", "train", *ARGS], env=_env(wd),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        killed = _wait_then_kill(proc.pid, wd, rng, inside_write=False)
        _, err = proc.communicate(timeout=30)
        assert killed, err
        assert proc.returncode == -signal.SIGKILL, err
        _after_kill(wd, len(ds.vocab), kills)

    server = subprocess.Popen([sys.executable, str(HERE / "forkserver.py")], env=_env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline() == "ready\n"
        for n in range(FORKED_KILLS):
            for i, wd in enumerate(lanes):
                err = tmp_path / f"lane{i}-{n}.err"
                server.stdin.write("\t".join([str(wd), str(err), "train", "--resume", *ARGS])
                                   + "\n")
                server.stdin.flush()
                pid = int(server.stdout.readline().split()[1])
                killed = _wait_then_kill(pid, wd, rng, inside_write=bool(n % 2))
                status = server.stdout.readline()
                assert killed, (status, err.read_text())
                assert status == f"exit {-signal.SIGKILL}\n", (status, err.read_text())
                # the dead process before it left its lock behind: taken over, and said so
                assert err.read_text().startswith(
                    "note: removed a stale lock left by a process that is no longer running")
                _after_kill(wd, len(ds.vocab), kills)
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    assert len(kills) == LANES * (1 + FORKED_KILLS) >= 20
    print(f"{len(kills)} kills, {sum(kills)} of them left a checkpoint write unfinished")

    finishers = [subprocess.Popen([sys.executable, "-m", "w2v_cli", "train", "--resume"],
                                  env=_env(wd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for wd in lanes]
    for wd, proc in zip(lanes, finishers):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.startswith("loss "), out
        record = params.load_record(wd)
        assert record["complete"] is True
        assert [e["epoch"] for e in record["epochs"]] == list(range(1, EPOCHS + 1))
        assert len(record["resumed"]) == 1 + FORKED_KILLS
        assert not [s for s in _steps(wd) if s.endswith(".tmp")]  # the kills' leftovers are gone
