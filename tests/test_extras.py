"""Each install extra that brings MXNet brings matplotlib too, so `train` draws loss.png."""

from pathlib import Path

from setuptools.config.setupcfg import read_configuration


def test_cpu_and_gpu_extras_include_matplotlib():
    extras = read_configuration(Path(__file__).resolve().parents[1] / "setup.cfg")[
        "options"]["extras_require"]
    for name in ("cpu", "gpu"):
        assert any(req.startswith("matplotlib") for req in extras[name]), name
