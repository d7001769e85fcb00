"""The GPU path as far as a CPU reaches it: choosing a GPU by its compute capability (with a
fake), resuming on another device, the same starting tables on every path and device."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from conftest import encode, planted_sentences
from w2v_cli import backend, cuda, dataset, params, train
from w2v_cli.config import Config
from w2v_cli.errors import BackendError


class FakeGpus(backend.GpuProbe):
    """``n`` GPUs of one compute capability, as a driver would describe them."""

    def __init__(self, n: int, capability: tuple = (8, 6), name: str = "Fake GPU"):
        self.n, self.capability, self.name = n, capability, name

    def count(self) -> int:
        return self.n

    def info(self, index: int):
        return cuda.GpuInfo(self.name, self.capability, 12020)


@pytest.mark.parametrize("capability", [(5, 0), (6, 1), (7, 5), (8, 6), (8, 9)])
def test_a_gpu_with_kernels_in_the_build_is_chosen(capability):
    mx = backend.mxnet()
    probe = FakeGpus(2, capability)
    assert backend.device("auto", probe) == mx.gpu(0)
    assert backend.device("gpu", probe) == mx.gpu(0)
    assert backend.devices("gpu:1", probe) == [mx.gpu(1)]
    assert backend.devices("gpu:0,1", probe) == [mx.gpu(0), mx.gpu(1)]


def test_auto_falls_back_to_the_cpu_on_a_gpu_without_kernels(caplog):
    mx = backend.mxnet()
    with caplog.at_level(logging.WARNING, logger="w2v_cli"):
        assert backend.devices("auto", FakeGpus(1, (9, 0), "NVIDIA H100")) == [mx.cpu()]
    assert [r.getMessage() for r in caplog.records] == [
        "GPU 0 (NVIDIA H100, compute capability 9.0) has no kernels in mxnet-cu112 1.9.1, "
        "which runs on compute capability 5.0 to 8.9 (sm_50 to sm_89) only: training on the CPU"]


@pytest.mark.parametrize("spec", ["gpu", "gpu:0", "gpu:0,1"])
@pytest.mark.parametrize("capability", [(9, 0), (10, 0), (3, 7)])
def test_asking_for_a_gpu_without_kernels_is_an_error(spec, capability):
    with pytest.raises(BackendError) as e:
        backend.devices(spec, FakeGpus(2, capability, "Big GPU"))
    assert str(e.value) == (
        f"--device {spec}: GPU 0 (Big GPU, compute capability {capability[0]}.{capability[1]}) "
        "has no kernels in mxnet-cu112 1.9.1, which runs on compute capability 5.0 to 8.9 "
        "(sm_50 to sm_89) only; use --device cpu")


def test_an_unknown_capability_is_tried(caplog):
    class Silent(FakeGpus):
        def info(self, index):
            return None  # the driver could not say

    assert backend.device("auto", Silent(1)) == backend.mxnet().gpu(0)


def test_no_gpu_seen(monkeypatch):
    mx = backend.mxnet()
    assert backend.device("auto", FakeGpus(0)) == mx.cpu()
    with pytest.raises(BackendError, match=r"^--device gpu: MXNet sees 0 GPU\(s\), not gpu 0; "
                                           r"is the GPU build installed"):
        backend.device("gpu", FakeGpus(0))
    with pytest.raises(BackendError, match=r"sees 1 GPU\(s\), not gpu 1$"):
        backend.devices("gpu:0,1", FakeGpus(1))
    # the GPU build installed and no GPU seen: the driver is missing or too old
    monkeypatch.setattr(backend, "gpu_build_installed", lambda: True)
    monkeypatch.setattr(backend, "cuda_driver_version", lambda: 11000)
    with pytest.raises(BackendError) as e:
        backend.device("gpu:0", FakeGpus(0))
    assert str(e.value) == (
        "--device gpu:0: MXNet sees 0 GPU(s), not gpu 0; the GPU build is installed, so the "
        "NVIDIA driver is likely missing or too old (the driver supports CUDA 11.0; it needs "
        "driver 460.27.03 (R460) or newer; `nvidia-smi` shows the version)")


def test_one_cpu_context_by_number():
    mx = backend.mxnet()
    assert backend.devices("cpu:1") == [mx.cpu(1)]
    assert backend.devices(" CPU:0 ") == [mx.cpu(0)]


SETTINGS = dict(batch_size=160, embed_size=8, window=2, negatives=2, subsample=0.0, seed=7,
                lr=0.02)


@pytest.mark.parametrize("sparse_grad", [True, False])
def test_a_run_resumes_on_another_device_as_on_its_own(tmp_path, sparse_grad):
    """Adam's state is restored on the parameters' device: a sparse run's catch-up reads it
    before the first update moves it there ("Find multiple contexts in the input")."""
    ds = encode(planted_sentences(n_sentences=120), min_count=1)
    first = tmp_path / "first"
    dataset.save(ds, first)
    train.train(Config(workdir=str(first), epochs=1, device="cpu", sparse_grad=sparse_grad,
                       **SETTINGS), ds)
    tables = {}
    for spec in ("cpu", "cpu:1"):
        wd = tmp_path / spec
        shutil.copytree(first, wd)
        record = train.train(Config(workdir=str(wd), epochs=2, device=spec,
                                    sparse_grad=sparse_grad, **SETTINGS), ds, resume=True)
        assert record["device"] == ("cpu(0)" if spec == "cpu" else "cpu(1)")
        assert record["config"]["sparse_grad"] is sparse_grad
        tables[spec] = params.load_tables(wd, len(ds.vocab))
    for name in ("center", "context"):
        assert np.array_equal(tables["cpu:1"][name], tables["cpu"][name])


def test_the_same_seed_gives_the_same_starting_tables_on_every_path_and_device():
    """Drawn once on the CPU with the seeded generator, then copied to the devices."""
    from w2v_cli.arrays import scope as frontend
    from w2v_cli.model import build_net

    mx = backend.mxnet()
    tables = {}
    for sparse_grad in (False, True):
        for ctxs in ([mx.cpu(0)], [mx.cpu(1)], [mx.cpu(0), mx.cpu(1)]):
            mx.random.seed(3)
            with frontend(sparse_grad):
                net = build_net(50, 6, ctxs, sparse_grad)
                for c in ctxs:  # each device holds its own copy of the same tables
                    tables[sparse_grad, str(c), len(ctxs)] = [
                        block.weight.data(c).asnumpy() for block in net]
    first = tables[False, "cpu(0)", 1]
    assert np.abs(first[0]).max() > 0.05 and not np.array_equal(first[0], first[1])
    for key, found in tables.items():
        for a, b in zip(found, first):
            assert np.array_equal(a, b), key


def test_the_sparse_path_draws_its_starting_tables_on_the_cpu(monkeypatch):
    """CPU contexts share one generator, so the test above cannot tell where a draw ran; a
    GPU's generator gives other numbers from the same seed."""
    from w2v_cli.arrays import scope as frontend
    from w2v_cli.model import build_net

    mx = backend.mxnet()
    uniform, asked = mx.np.random.uniform, []

    def spy(*args, ctx=None, **kwargs):
        asked.append(ctx)
        return uniform(*args, ctx=ctx, **kwargs)

    monkeypatch.setattr(mx.np.random, "uniform", spy)
    with frontend(True):
        build_net(10, 4, [mx.cpu(1)], sparse_grad=True)
    assert asked == [mx.cpu(0), mx.cpu(0)]


def test_the_cli_with_a_gpu_it_cannot_use(planted_corpus, workdir, monkeypatch):
    """MXNet seeing one GPU of compute capability 9.0: the key commands run on the CPU as
    without a GPU, with one note; asking for the GPU is an Error."""
    from click.testing import CliRunner

    from w2v_cli.cli import cli

    monkeypatch.setattr(backend, "default_probe", lambda: FakeGpus(1, (9, 0), "NVIDIA H100"))

    def run(*args):
        return CliRunner().invoke(cli, list(args))

    assert run("prepare", "--corpus", str(planted_corpus), "--min-count", "1").exit_code == 0
    result = run("train", "--epochs", "1", "--subsample", "0", "--embed-size", "8")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(
        "note: GPU 0 (NVIDIA H100, compute capability 9.0) has no kernels in mxnet-cu112 "
        "1.9.1, which runs on compute capability 5.0 to 8.9 (sm_50 to sm_89) only: training "
        "on the CPU\n")
    assert result.stdout.rstrip().endswith("on cpu(0)")
    info = dict(line.split(None, 1) for line in run("info").stdout.splitlines())
    assert info["device"] == "cpu(0)" and info["settings"].endswith("sparse-grad True")
    assert run("similar", "c1w3", "-k", "2").exit_code == 0

    result = run("train", "--epochs", "2", "--resume")  # auto again: on the CPU again
    assert result.exit_code == 0, result.output
    assert result.stderr.count("note: GPU 0") == 1

    result = run("train", "--epochs", "1", "--restart", "--device", "gpu")
    assert result.exit_code == 6
    assert result.stderr == (
        "Error: --device gpu: GPU 0 (NVIDIA H100, compute capability 9.0) has no kernels in "
        "mxnet-cu112 1.9.1, which runs on compute capability 5.0 to 8.9 (sm_50 to sm_89) "
        "only; use --device cpu\n")
