"""The loss curve drawn in a child process (plots.PlotProcess): the same file as drawn here,
the same errors, and no child left behind however the parent ends."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from w2v_cli import plots
from w2v_cli.errors import MissingExtraError

pytest.importorskip("matplotlib")

REQUEST = dict(curve=[[0.5, 0.7], [1.0, 0.6], [1.5, 0.5], [2.0, 0.45]], epochs=2,
               scores={"ws.tsv": [[1, 0.2], [2, 0.3]]}, marked=2)


def _env_with(tmp_path, package: str, source: str) -> dict:
    """The environment with a package of that name first on the path, its __init__ ``source``."""
    root = tmp_path / "shadow"
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text(source)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(root), os.environ.get("PYTHONPATH", "")]))}


def test_the_child_draws_the_same_png_as_this_process(tmp_path):
    here = plots.InlinePlotter().loss_curve(path=tmp_path / "here.png", **REQUEST)
    child = plots.PlotProcess()
    try:
        there = child.loss_curve(path=tmp_path / "there.png", **REQUEST)
    finally:
        child.close()
    assert there == tmp_path / "there.png"
    assert there.read_bytes() == here.read_bytes()
    assert here.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_child_without_matplotlib_says_what_to_install(tmp_path):
    env = _env_with(tmp_path, "matplotlib", "raise ImportError('no matplotlib here')\n")
    child = plots.PlotProcess(env=env)
    with pytest.raises(MissingExtraError, match="plotting needs matplotlib.*pip install"):
        child.loss_curve(path=tmp_path / "loss.png", **REQUEST)
    child.close()
    assert not (tmp_path / "loss.png").exists()


def test_a_child_that_cannot_start_leaves_the_drawing_to_this_process(tmp_path):
    env = _env_with(tmp_path, "w2v_cli", "raise RuntimeError('broken install')\n")
    child = plots.PlotProcess(env=env)
    path = child.loss_curve(path=tmp_path / "loss.png", **REQUEST)
    child.close()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_child_to_start_means_drawing_here(monkeypatch):
    def no_process(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(plots.subprocess, "Popen", no_process)
    assert isinstance(plots.loss_plotter(in_child=True), plots.InlinePlotter)
    assert isinstance(plots.loss_plotter(in_child=False), plots.InlinePlotter)


def test_a_child_never_asked_ends_when_closed(tmp_path):
    child = plots.PlotProcess()
    child.close()
    assert child._proc.returncode == 0
    assert list(tmp_path.iterdir()) == []


def _ended(pid: int) -> bool:
    """No such process, or only a zombie left (an orphan's exit is its new parent's to reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_child_ends_when_its_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import time
        from w2v_cli import plots
        child = plots.PlotProcess()
        print(child._proc.pid, flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    assert not _ended(child_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 30
    while not _ended(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _ended(child_pid)
