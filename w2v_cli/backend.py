"""Importing MXNet and choosing the device, with messages that say what to install."""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import os
import site
import sys
from pathlib import Path
from typing import Callable, Iterable, Optional


from .errors import BackendError, UsageError

INSTALL_HINT = (
    "install the CPU build with `pip install 'mxnet==1.9.1' 'numpy<1.24'` "
    "(or `pip install '.[cpu]'` from the w2v source), or the GPU build with "
    "`pip install '.[gpu]'` (mxnet-cu112 and the CUDA 11 runtime wheels)"
)


DRIVER_LIB = "libcuda.so.1"
DRIVER_HINT = (
    f"the GPU build of MXNet (mxnet-cu112) is installed but the NVIDIA driver library "
    f"{DRIVER_LIB} cannot be loaded ({{error}}); install the NVIDIA driver (`nvidia-smi` "
    "should list the GPU), or use the CPU build: `pip install '.[cpu]'` after "
    "`pip uninstall mxnet-cu112`"
)


def gpu_build_installed() -> bool:
    """Whether the installed MXNet distribution is a CUDA build (mxnet-cu112 and the like)."""
    return any((d.metadata["Name"] or "").lower().startswith("mxnet-cu")
               for d in importlib.metadata.distributions())


def nvidia_lib_dirs(roots: Optional[Iterable[str]] = None) -> list[Path]:
    """The ``lib`` folders of the nvidia-*-cu11 wheels: ``<site-packages>/nvidia/*/lib``.

    roots: folders to look in (default: the site-packages folders and sys.path), sorted and
    without duplicates.
    """
    if roots is None:
        roots = [*site.getsitepackages(), site.getusersitepackages(), *sys.path]
    found: dict[Path, None] = {}
    for root in roots:
        base = Path(root) / "nvidia"
        if base.is_dir():
            for lib in sorted(base.glob("*/lib")):
                if lib.is_dir():
                    found[lib.resolve()] = None
    return list(found)


def _load_global(path: str) -> None:
    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


def preload_cuda(lib_dirs: list[Path], load: Callable[[str], None] = _load_global) -> list[str]:
    """Make the CUDA wheels' libraries loadable by MXNet without LD_LIBRARY_PATH.

    The driver comes first: without ``libcuda.so.1`` nothing else can work, so its absence
    raises BackendError with what to do. Then every ``lib*.so*`` of ``lib_dirs`` is loaded
    with RTLD_GLOBAL; once loaded, a library satisfies later lookups of its soname, which is
    how libmxnet.so finds them. They depend on one another (cuDNN on cuBLAS, ...), so a
    library that fails is retried after the others until a round loads nothing new; what
    still fails is left for MXNet's own import to report. Returns the loaded paths in order.
    """
    try:
        load(DRIVER_LIB)
    except OSError as e:
        raise BackendError(DRIVER_HINT.format(error=e)) from None
    pending = [str(f) for d in lib_dirs for f in sorted(d.iterdir())
               if f.name.startswith("lib") and ".so" in f.name and f.is_file()]
    loaded: list[str] = []
    while pending:
        failed = []
        for path in pending:
            try:
                load(path)
                loaded.append(path)
            except OSError:
                failed.append(path)
        if len(failed) == len(pending):
            break
        pending = failed
    return loaded


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
        if gpu_build_installed():
            preload_cuda(nvidia_lib_dirs())
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
    mx.npx.set_np()
    return mx


def current_mxnet():
    """MXNet as :func:`mxnet` set it up, without putting it in numpy mode again.

    For code that may run inside ``model.frontend(True)`` (a sparse run's legacy NDArray
    scope): calling :func:`mxnet` there would switch numpy mode back on mid-scope.
    """
    return sys.modules["mxnet"] if "mxnet" in sys.modules else mxnet()


def device(spec: str = "auto"):
    """Map ``auto | cpu | gpu | gpu:N`` to an MXNet context. auto: gpu(0) if MXNet sees one."""
    mx = mxnet()
    spec = spec.strip().lower()
    if spec == "cpu":
        return mx.cpu()
    n_gpus = mx.context.num_gpus()
    if spec == "auto":
        return mx.gpu(0) if n_gpus > 0 else mx.cpu()
    if spec == "gpu" or spec.startswith("gpu:"):
        index_text = spec[4:] if spec.startswith("gpu:") else "0"
        if not index_text.isdigit():
            raise UsageError(f"--device {spec!r}: expected cpu, gpu or gpu:N")
        index = int(index_text)
        if index >= n_gpus:
            raise BackendError(
                f"--device {spec}: MXNet sees {n_gpus} GPU(s)"
                + ("" if n_gpus else "; is the GPU build installed (`pip install '.[gpu]'`)?")
            )
        return mx.gpu(index)
    raise UsageError(f"--device {spec!r}: expected auto, cpu, gpu or gpu:N")


def devices(spec: str = "auto") -> list:
    """Map a device spec to a list of MXNet contexts, one per device a batch is split across.

    ``gpu:0,1,...`` and ``cpu:0,1,...`` name several devices (several CPU contexts share the
    same cores; they exist to test the multi-device path); anything else is one ``device``.
    """
    text = spec.strip().lower()
    kind, _, rest = text.partition(":")
    if "," not in rest:
        return [device(spec)]
    mx = mxnet()
    parts = [p.strip() for p in rest.split(",")]
    if kind not in ("cpu", "gpu") or not all(p.isdigit() for p in parts):
        raise UsageError(f"--device {spec!r}: expected gpu:0,1,... or cpu:0,1,...")
    indices = [int(p) for p in parts]
    if len(set(indices)) != len(indices):
        raise UsageError(f"--device {spec!r} names a device twice")
    if kind == "cpu":
        return [mx.cpu(i) for i in indices]
    n_gpus = mx.context.num_gpus()
    missing = [i for i in indices if i >= n_gpus]
    if missing:
        raise BackendError(f"--device {spec}: MXNet sees {n_gpus} GPU(s), not gpu {missing[0]}")
    return [mx.gpu(i) for i in indices]
