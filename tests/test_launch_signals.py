"""A parameter-server job never outlives its launcher: signals, a dead server, a dead launcher.

Every process a test starts carries W2V_TEST_MARKER=<uuid> in its environment, so the test
finds all of them in /proc (launcher, scheduler, servers, workers, and anything they
started) and kills whatever is left at the end, whatever happened.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import planted_sentences
from w2v_cli import dataset, launch, lock
from w2v_cli.config import Config

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(),
                                reason="finds the job's processes in /proc")


def marked(marker: str) -> list[int]:
    """Pids of the live processes whose environment holds W2V_TEST_MARKER=marker."""
    tag = f"W2V_TEST_MARKER={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue  # never this test process, whatever os.environ says
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if tag in env and state != "Z":  # a zombie has exited; its parent has not reaped it
            pids.append(int(entry.name))
    return pids


def role_of(pid: int) -> str:
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    roles = [e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"DMLC_ROLE=")]
    return roles[0] if roles else "launcher"


def wait_until(cond, seconds: float, step: float = 0.2) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


@pytest.fixture
def marker():
    """A marker for this test's processes; whatever still carries it at the end is killed."""
    m = uuid.uuid4().hex
    yield m
    for pid in marked(m):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _env(marker: str) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", W2V_TEST_MARKER=marker)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def start_job(tmp_path: Path, marker: str) -> tuple[subprocess.Popen, Path, Path]:
    """`w2v launch -n 2` of a dist_sync `w2v train` long enough to be running when signalled;
    returns once both workers have finished an epoch."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(planted_sentences(n_sentences=600)) + "\n", encoding="utf-8")
    wd, logs = tmp_path / "work", tmp_path / "logs"
    dataset.prepare(Config(workdir=str(wd), corpus=(str(corpus),), min_count=1))
    worker = [sys.executable, "-m", "w2v_cli", "train", "--workdir", str(wd), "--kvstore",
              "dist_sync", "--device", "cpu", "--epochs", "1000", "--batch-size", "32",
              "--embed-size", "8", "--subsample", "0", "--log-interval", "5"]
    launcher = subprocess.Popen(
        [sys.executable, "-m", "w2v_cli", "launch", "-n", "2", "--timeout", "300", "--log-dir",
         str(logs), "--", *worker], env=_env(marker), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)

    def trained_an_epoch():
        assert launcher.poll() is None, launcher.communicate()
        texts = [p.read_text(errors="replace") for p in logs.glob("worker-*.log")]
        return len(texts) == 2 and all("epoch 1/1000" in t for t in texts)

    assert wait_until(trained_an_epoch, 90), [p.read_text() for p in logs.glob("*.log")]
    return launcher, wd, logs


def test_sigterm_to_launch_stops_every_process_and_frees_the_workdir(tmp_path, marker):
    launcher, wd, logs = start_job(tmp_path, marker)
    assert len(marked(marker)) >= 5  # launcher, scheduler, server, 2 workers
    launcher.send_signal(signal.SIGTERM)
    try:
        out, err = launcher.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("w2v launch did not exit within 15 s of SIGTERM")
    assert launcher.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1].startswith("interrupted by SIGTERM; stopped the job"), err
    assert wait_until(lambda: not marked(marker), 15), [
        (p, role_of(p)) for p in marked(marker)]
    with lock.acquire(wd, "test"):  # rank 0 held it; a dead process's lock is stale
        pass


def test_a_dead_server_stops_the_job_naming_it(tmp_path, marker):
    launcher, wd, logs = start_job(tmp_path, marker)
    servers = [p for p in marked(marker) if role_of(p) == "server"]
    assert len(servers) == 1
    os.kill(servers[0], signal.SIGKILL)
    start = time.monotonic()
    try:
        out, err = launcher.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("w2v launch did not exit within 60 s of its server's death")
    assert launcher.returncode == 11, err
    assert "Error: server-0 was killed by SIGKILL; stopped the job" in err
    assert wait_until(lambda: not marked(marker), 60 - (time.monotonic() - start)), [
        (p, role_of(p)) for p in marked(marker)]
    # no worker finished: neither wrote its result line
    for log in logs.glob("worker-*.log"):
        assert not any(map(launch.worker_result, log.read_text().splitlines()))
    with lock.acquire(wd, "test"):
        pass


def test_children_stop_when_their_launcher_is_killed(tmp_path, marker):
    """SIGKILL leaves the launcher no chance to stop anything: its children notice alone."""
    child = ("import sys, time; from w2v_cli.launch import watch_launcher; "
             "watch_launcher(sys.argv[1]); time.sleep(120)")
    script = ("import sys; from w2v_cli import launch; "
              f"nodes = [launch.Node(r, 0, [sys.executable, '-c', {child!r}, r]) "
              "for r in ('server', 'worker')]; "
              "launch.run(nodes, timeout=120)")
    launcher = subprocess.Popen([sys.executable, "-c", script], env=_env(marker),
                                stderr=subprocess.PIPE)
    assert wait_until(lambda: len(marked(marker)) == 3, 30)
    launcher.kill()
    launcher.wait(timeout=10)
    assert wait_until(lambda: not marked(marker), 10)
    err = launcher.stderr.read().decode()
    assert err.count("its launcher (w2v launch) is gone; stopping") == 2, err


def test_sigint_reaches_the_workers_and_a_deaf_process_is_killed_within_the_grace(
        tmp_path, marker, monkeypatch):
    """The worker gets SIGINT itself (and records it); the server ignores SIGTERM and is
    killed; the launcher raises Interrupted with SIGINT's exit code, 130."""
    import threading

    from w2v_cli.errors import Interrupted

    monkeypatch.setenv("W2V_TEST_MARKER", marker)
    got = tmp_path / "worker-got-sigint"
    worker = ("import signal, sys, time, pathlib\n"
              "def on_int(*_):\n"
              "    pathlib.Path(sys.argv[1]).write_text('yes'); sys.exit(130)\n"
              "signal.signal(signal.SIGINT, on_int)\n"
              "time.sleep(120)")
    deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    nodes = [launch.Node("server", 0, [sys.executable, "-c", deaf]),
             launch.Node("worker", 0, [sys.executable, "-c", worker, str(got)])]

    def interrupt_when_started():
        wait_until(lambda: len(marked(marker)) >= 2, 30, step=0.05)
        time.sleep(0.5)  # the children have set their handlers
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    start = time.monotonic()
    with pytest.raises(Interrupted, match="interrupted by SIGINT; stopped the job") as e:
        launch.run(nodes, timeout=60)
    assert e.value.exit_code == 130
    assert time.monotonic() - start < 30 + launch.SIGNAL_GRACE + 2
    assert got.read_text() == "yes"
    assert wait_until(lambda: not marked(marker), 3)
