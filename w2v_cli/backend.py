"""Importing MXNet and choosing the device, with messages that say what to install."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from typing import Optional


from .cuda import (DRIVER_LIB, GpuInfo, _version_text, cuda_driver_version, cuda_gpu_info,
                   fusion_for_driver, nvidia_lib_dirs, preload_cuda)
from .errors import BackendError, UsageError

INSTALL_HINT = (
    "install the CPU build with `pip install 'mxnet==1.9.1' 'numpy<1.24'` "
    "(or `pip install '.[cpu]'` from the w2v source), or the GPU build with "
    "`pip install '.[gpu]'` (mxnet-cu112 and the CUDA 11 runtime wheels)"
)


def mxnet_builds() -> list[str]:
    """The MXNet distributions installed (``mxnet``, ``mxnet-cu112``, ...), lowercase, sorted."""
    names = {(d.metadata["Name"] or "").lower() for d in importlib.metadata.distributions()}
    return sorted(n for n in names if n == "mxnet" or n.startswith("mxnet-cu"))


def gpu_build_installed() -> bool:
    """Whether the installed MXNet distribution is a CUDA build (mxnet-cu112 and the like)."""
    return any(n.startswith("mxnet-cu") for n in mxnet_builds())


def check_one_build(builds: list[str]) -> None:
    """Raise BackendError when several MXNet builds are installed: they unpack into the one
    ``mxnet`` folder, whose files are then a mix of both."""
    if len(builds) > 1:
        raise BackendError(
            f"several builds of MXNet are installed over one `mxnet` folder ({', '.join(builds)}), "
            "as switching between the cpu and gpu extras leaves them; keep one: "
            f"`pip uninstall -y {' '.join(builds)} && pip install '.[cpu]'` (or '.[gpu]')")


def mxnet():
    """Import MXNet in numpy mode and return the module, or raise BackendError saying why not.

    Before the first import of a GPU build, the CUDA runtime wheels' libraries are preloaded
    (``preload_cuda``), so ``pip install '.[gpu]'`` needs no LD_LIBRARY_PATH.
    """
    if "mxnet" not in sys.modules:
        if os.environ.get("DMLC_ROLE") == "":
            # MXNet treats a set role other than "worker" as a server and starts serving
            # inside the import; an empty one then crashes in ps-lite.
            raise BackendError("DMLC_ROLE is set but empty: unset it, or set it to worker, "
                               "server or scheduler")
        builds = mxnet_builds()
        check_one_build(builds)
        if any(n.startswith("mxnet-cu") for n in builds):
            fusion_for_driver(preload_cuda(nvidia_lib_dirs()))
    try:
        mx = importlib.import_module("mxnet")
    except ImportError as e:
        raise BackendError(f"MXNet cannot be imported ({e}); {INSTALL_HINT}") from None
    except OSError as e:  # mxnet-cu112 without its CUDA libraries, a broken libmxnet.so
        raise BackendError(f"MXNet is installed but its library does not load ({e}); "
                           f"{INSTALL_HINT}") from None
    except AttributeError as e:  # numpy >= 1.24 removed np.bool, which MXNet 1.9.1 uses
        raise BackendError(f"MXNet 1.9.1 does not work with this numpy ({e}); "
                           "install `numpy<1.24`") from None
    root = logging.getLogger()
    kept = list(root.handlers)
    mx.npx.set_np()
    # set_np logs through logging.info, which gives an unconfigured root logger a stderr
    # handler (logging.basicConfig): every note would then print twice, once as "WARNING:".
    for handler in [h for h in root.handlers if h not in kept]:
        root.removeHandler(handler)
    return mx


def current_mxnet():
    """MXNet as :func:`mxnet` set it up, without putting it in numpy mode again.

    For code that may run inside ``model.frontend(True)`` (a sparse run's legacy NDArray
    scope): calling :func:`mxnet` there would switch numpy mode back on mid-scope.
    """
    return sys.modules["mxnet"] if "mxnet" in sys.modules else mxnet()


# mxnet-cu112 1.9.1 carries kernels (cubins) for sm_50, 60, 70, 80 and 86 and no PTX. A cubin
# runs on its own major version at the same or a higher minor one, so compute capability 5.0
# to 8.9 works; 9.0 and newer (H100 and later) fail at the first kernel, and so does 3.x.
KERNEL_MAJORS = (5, 8)
KERNEL_RANGE = "5.0 to 8.9 (sm_50 to sm_89)"
# The Linux driver of CUDA 11.2 (NVIDIA's CUDA 11.2 release notes), which built mxnet-cu112.
# 450.80.02 may do under CUDA 11's minor version compatibility; that is not promised here.
DRIVER_NEEDED = "driver 460.27.03 (R460) or newer"

log = logging.getLogger(__name__)  # one-line notes; the CLI shows them on stderr as "note: ..."


def has_kernels(capability: tuple) -> bool:
    """Whether mxnet-cu112 1.9.1 has kernels that run on a GPU of this compute capability."""
    return KERNEL_MAJORS[0] <= capability[0] <= KERNEL_MAJORS[1]


class GpuProbe:
    """How many GPUs MXNet sees, and what each one is. Tests pass a fake."""

    def count(self) -> int:
        return mxnet().context.num_gpus()

    def info(self, index: int) -> Optional[GpuInfo]:
        """The GPU's description, or None when the driver cannot say (then it is tried)."""
        try:
            return cuda_gpu_info(index)
        except (OSError, AttributeError):
            return None


def default_probe() -> GpuProbe:
    return GpuProbe()


def _usable(index: int, probe: GpuProbe) -> Optional[str]:
    """None if GPU ``index`` can run this build, else why not (one sentence)."""
    info = probe.info(index)
    if info is None or has_kernels(info.capability):
        return None
    return (f"{info.describe(index)} has no kernels in mxnet-cu112 1.9.1, which runs on "
            f"compute capability {KERNEL_RANGE} only")


def _no_gpu_hint() -> str:
    if gpu_build_installed():
        try:
            driver = f"the driver supports CUDA {_version_text(cuda_driver_version())}"
        except OSError:
            driver = f"no driver ({DRIVER_LIB}) answers"
        return (f"; the GPU build is installed, so the NVIDIA driver is likely missing or too "
                f"old ({driver}; it needs {DRIVER_NEEDED}; `nvidia-smi` shows the version)")
    return "; is the GPU build installed (`pip install '.[gpu]'`)?"


def device(spec: str = "auto", probe: Optional[GpuProbe] = None):
    """Map ``auto | cpu | cpu:N | gpu | gpu:N`` to an MXNet context.

    auto: gpu(0) if MXNet sees one and this build has kernels for it (else the CPU, with a
    note). ``probe`` tells the GPUs apart (default: MXNet and the CUDA driver).
    """
    mx = mxnet()
    spec = spec.strip().lower()
    if spec == "cpu":
        return mx.cpu()
    kind, _, index_text = spec.partition(":")
    if kind == "cpu" and index_text.isdigit():
        return mx.cpu(int(index_text))  # several CPU contexts exist to test device moves
    probe = probe or default_probe()
    if spec == "auto":
        if probe.count() == 0:
            return mx.cpu()
        why = _usable(0, probe)
        if why is None:
            return mx.gpu(0)
        log.warning("%s: training on the CPU", why)
        return mx.cpu()
    if kind == "gpu" and (index_text.isdigit() or spec == "gpu"):
        return _gpus(spec, [int(index_text or 0)], probe)[0]
    if kind == "gpu":
        raise UsageError(f"--device {spec!r}: expected cpu, gpu or gpu:N")
    raise UsageError(f"--device {spec!r}: expected auto, cpu, cpu:N, gpu or gpu:N")


def _gpus(spec: str, indices: list, probe: GpuProbe) -> list:
    """gpu(i) for each of ``indices``, or BackendError saying why one cannot be used."""
    mx = mxnet()
    n_gpus = probe.count()
    missing = [i for i in indices if i >= n_gpus]
    if missing:
        raise BackendError(f"--device {spec}: MXNet sees {n_gpus} GPU(s), not gpu {missing[0]}"
                           + ("" if n_gpus else _no_gpu_hint()))
    for i in indices:
        why = _usable(i, probe)
        if why:
            raise BackendError(f"--device {spec}: {why}; use --device cpu")
    return [mx.gpu(i) for i in indices]


def devices(spec: str = "auto", probe: Optional[GpuProbe] = None) -> list:
    """Map a device spec to a list of MXNet contexts, one per device a batch is split across.

    ``gpu:0,1,...`` and ``cpu:0,1,...`` name several devices (several CPU contexts share the
    same cores; they exist to test the multi-device path); anything else is one ``device``.
    """
    text = spec.strip().lower()
    kind, _, rest = text.partition(":")
    if "," not in rest:
        return [device(spec, probe)]
    mx = mxnet()
    parts = [p.strip() for p in rest.split(",")]
    if kind not in ("cpu", "gpu") or not all(p.isdigit() for p in parts):
        raise UsageError(f"--device {spec!r}: expected gpu:0,1,... or cpu:0,1,...")
    indices = [int(p) for p in parts]
    if len(set(indices)) != len(indices):
        raise UsageError(f"--device {spec!r} names a device twice")
    if kind == "cpu":
        return [mx.cpu(i) for i in indices]
    return _gpus(text, indices, probe or default_probe())

