"""`make gpu-smoke`: check the GPU path on a machine with an NVIDIA GPU, one line a step.

Run from the w2v source tree with the gpu extra installed (`make install` picks it when
`nvidia-smi` answers). Stops at the first failure with what to do; exit code 1 then. Without
a GPU it runs the steps that need none, says which it skipped, and exits 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from w2v_cli import backend, cuda  # noqa: E402  (the tree's own w2v_cli, not an installed one)

TRAIN = ["--subsample", "0", "--embed-size", "16", "--batch-size", "128", "--window", "2",
         "--lr", "0.01", "--seed", "3"]


class Skip(Exception):
    """A step that needs what this machine does not have."""


class Failed(Exception):
    def __init__(self, what: str, todo: str):
        super().__init__(what)
        self.todo = todo


def planted_corpus(path: Path, n_sentences: int = 600) -> None:
    """Sentences each drawn from one of four clusters of eight words."""
    rng = np.random.default_rng(0)
    cluster = rng.integers(0, 4, n_sentences)
    words = rng.integers(0, 8, (n_sentences, 8))
    path.write_text("".join(" ".join(f"c{c}w{w}" for w in row) + "\n"
                            for c, row in zip(cluster, words)))


def w2v(workdir: Path, *args: str) -> list[float]:
    """Run the CLI; the per-epoch losses of the run in ``workdir``."""
    done = subprocess.run([sys.executable, "-m", "w2v_cli", *args],
                          env={**os.environ, "W2V_WORKDIR": str(workdir),
                               "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    if done.returncode:
        raise Failed(f"w2v {' '.join(args)} exited {done.returncode}: "
                     f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}",
                     "run that command by hand in a fresh workdir to see all of its output")
    if args[0] != "train":
        return []
    return [e["loss"] for e in json.loads((workdir / "run.json").read_text())["epochs"]]


def close(a: list[float], b: list[float], tol: float, what: str) -> str:
    if len(a) != len(b) or not np.allclose(a, b, rtol=0, atol=tol):
        raise Failed(f"{what}: losses {a} against {b} differ by more than {tol}",
                     "report it with this output (GPU, driver, `pip freeze | grep nvidia`)")
    return f"losses {', '.join(f'{x:.6f}' for x in a)} within {tol:g}"


class Smoke:
    def __init__(self, tmp: Path):
        self.tmp, self.gpus, self.mx = tmp, 0, None
        self.corpus = tmp / "planted.txt"
        planted_corpus(self.corpus)

    def workdir(self, name: str) -> Path:
        wd = self.tmp / name
        w2v(wd, "prepare", "--corpus", str(self.corpus), "--min-count", "1")
        return wd

    def need_gpu(self, n: int = 1) -> None:
        if self.gpus < n:
            raise Skip(f"needs {n} GPU(s), MXNet sees {self.gpus}")

    def gpu_info(self) -> str:
        try:
            info = cuda.cuda_gpu_info(0)
        except OSError as e:
            raise Skip(f"no NVIDIA driver answers ({e})") from None
        if not backend.has_kernels(info.capability):
            raise Failed(f"{info.describe(0)}: mxnet-cu112 1.9.1 has no kernels for it",
                         f"train with --device cpu (it runs on compute capability "
                         f"{backend.KERNEL_RANGE})")
        return (f"{info.describe(0)}, driver for CUDA {info.driver // 1000}."
                f"{info.driver % 1000 // 10}")

    def kernels(self) -> str:
        try:
            mx = self.mx = backend.mxnet()
        except backend.BackendError as e:
            raise Failed(f"import: {e}", "follow the message above") from None
        self.gpus = mx.context.num_gpus()
        if not backend.gpu_build_installed():
            raise Skip("the CPU build of MXNet is installed (`pip install '.[gpu]'`)")
        self.need_gpu()
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        ctx = mx.gpu(0)
        doubled = (mx.np.array(x, ctx=ctx) * 2).asnumpy()
        product = mx.np.dot(mx.np.array(x, ctx=ctx), mx.np.array(x.T, ctx=ctx)).asnumpy()
        if not (np.array_equal(doubled, 2 * x) and np.allclose(product, x @ x.T)):
            raise Failed("a kernel or the cuBLAS product gave wrong numbers",
                         "check the driver and the CUDA wheels (docs/gpu.md)")
        return f"import, one kernel and one cuBLAS product on gpu(0) of {self.gpus}"

    def loss_block(self) -> str:
        self.need_gpu()
        mx = self.mx
        results = []
        for ctx in (mx.cpu(), mx.gpu(0)):
            loss = mx.gluon.loss.SigmoidBCELoss()
            loss.hybridize()
            pred = mx.np.array(np.linspace(-2, 2, 12).reshape(3, 4), ctx=ctx)
            label = mx.np.array((np.arange(12) % 2).reshape(3, 4), ctx=ctx)
            pred.attach_grad()
            with mx.autograd.record():
                out = loss(pred, label)
            out.backward()
            results.append((out.asnumpy(), pred.grad.asnumpy()))
        (out_c, grad_c), (out_g, grad_g) = results
        if not (np.allclose(out_c, out_g, atol=1e-6) and np.allclose(grad_c, grad_g, atol=1e-6)):
            raise Failed("hybridized SigmoidBCELoss differs between the GPU and the CPU",
                         "retry with MXNET_USE_FUSION=0; report it if that fixes it")
        return "hybridized SigmoidBCELoss forward and backward match the CPU's"

    def dense_cpu(self) -> str:
        self.cpu_dense = w2v(self.workdir("dense-cpu"), "train", "--device", "cpu",
                             "--dense-grad", "--epochs", "2", *TRAIN)
        return f"dense on the CPU: losses {', '.join(f'{x:.6f}' for x in self.cpu_dense)}"

    def dense_gpu(self) -> str:
        self.need_gpu()
        gpu = w2v(self.workdir("dense-gpu"), "train", "--device", "gpu", "--dense-grad",
                  "--epochs", "2", *TRAIN)
        return "dense on the GPU against the CPU: " + close(gpu, self.cpu_dense, 1e-4, "dense")

    def _resumed(self, name: str, first: str, then: str) -> list[float]:
        wd = self.workdir(name)
        w2v(wd, "train", "--device", first, "--sparse-grad", "--epochs", "1", *TRAIN)
        return w2v(wd, "train", "--resume", "--device", then, "--epochs", "2")

    def resume_cpu(self) -> str:
        self.cpu_sparse = self._resumed("sparse-cpu", "cpu", "cpu:1")
        return "sparse on the CPU resumed on cpu(1): losses " + \
            ", ".join(f"{x:.6f}" for x in self.cpu_sparse)

    def resume_gpu(self) -> str:
        self.need_gpu()
        out = []
        for first, then in (("gpu", "gpu"), ("cpu", "gpu"), ("gpu", "cpu")):
            losses = self._resumed(f"sparse-{first}-{then}", first, then)
            close(losses, self.cpu_sparse, 1e-3, f"sparse {first} resumed on {then}")
            out.append(f"{first}->{then}")
        return f"sparse runs resumed ({', '.join(out)}) match the CPU's within 0.001"

    def two_gpus(self) -> str:
        """The defaults (noise groups), then CBOW with hierarchical softmax: each split by
        groups over two GPUs, against one GPU."""
        self.need_gpu(2)
        out = []
        for name, extra in (("defaults", []), ("cbow-hs", ["--model", "cbow", "--loss", "hs"])):
            one = w2v(self.workdir(f"gpu-one-{name}"), "train", "--device", "gpu",
                      "--dense-grad", "--epochs", "2", *TRAIN, *extra)
            two = w2v(self.workdir(f"gpu-two-{name}"), "train", "--device", "gpu:0,1",
                      "--epochs", "2", *TRAIN, *extra)
            out.append(f"{name} " + close(two, one, 1e-4, f"two GPUs, {name}"))
        return "gpu:0,1 against gpu: " + "; ".join(out)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="w2v-gpu-smoke-") as tmp:
        smoke = Smoke(Path(tmp))
        steps = [("gpu", smoke.gpu_info), ("kernels", smoke.kernels),
                 ("loss", smoke.loss_block), ("dense-cpu", smoke.dense_cpu),
                 ("dense-gpu", smoke.dense_gpu), ("resume-cpu", smoke.resume_cpu),
                 ("resume-gpu", smoke.resume_gpu), ("two-gpus", smoke.two_gpus)]
        skipped = []
        for name, step in steps:
            try:
                print(f"ok    {name:<10} {step()}", flush=True)
            except Skip as e:
                skipped.append(name)
                print(f"skip  {name:<10} {e}", flush=True)
            except Failed as e:
                print(f"FAIL  {name:<10} {e}\n      what to do: {e.todo}", flush=True)
                return 1
        print(f"skipped: {', '.join(skipped)} (no usable GPU here)" if skipped
              else "all steps passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
