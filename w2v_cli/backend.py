"""Importing MXNet and choosing the device, with messages that say what to install."""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import site
import struct
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


def elf_needed(path) -> list[str]:
    """The libraries an ELF shared object links against (its DT_NEEDED entries), in order.

    Read from the dynamic segment through the program headers, which the loader itself
    uses (section headers may be stripped). Raises ValueError for a file that is not ELF.
    """
    with open(path, "rb") as f:
        ident = f.read(16)
        if len(ident) < 16 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) \
                or ident[5] not in (1, 2):
            raise ValueError(f"{path}: not an ELF file")
        wide, end = ident[4] == 2, "<" if ident[5] == 1 else ">"
        # e_phoff, then e_phentsize and e_phnum; a program header: type, offset, vaddr, filesz
        header = struct.Struct(end + ("HHIQQQIHHHHHH" if wide else "HHIIIIIHHHHHH"))
        fields = header.unpack(f.read(header.size))
        phoff, phentsize, phnum = fields[4], fields[8], fields[9]
        prog = struct.Struct(end + ("IIQQQQQQ" if wide else "IIIIIIII"))
        segments = []  # (type, offset, vaddr, filesz)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            p = prog.unpack(f.read(prog.size))
            segments.append((p[0], p[2], p[3], p[5]) if wide else (p[0], p[1], p[2], p[4]))
        dynamic = [s for s in segments if s[0] == 2]  # PT_DYNAMIC
        if not dynamic:
            return []  # linked statically
        f.seek(dynamic[0][1])
        table = f.read(dynamic[0][3])
        entry = struct.Struct(end + ("qQ" if wide else "iI"))
        needed, strtab = [], None
        for tag, value in entry.iter_unpack(table[:len(table) - len(table) % entry.size]):
            if tag == 0:  # DT_NULL
                break
            if tag == 1:  # DT_NEEDED: an offset into the string table
                needed.append(value)
            elif tag == 5:  # DT_STRTAB: the string table's address once loaded
                strtab = value
        if strtab is None:
            raise ValueError(f"{path}: no string table in its dynamic segment")
        for kind, offset, vaddr, filesz in segments:
            if kind == 1 and vaddr <= strtab < vaddr + filesz:  # the PT_LOAD holding it
                strtab_at = strtab - vaddr + offset
                break
        else:
            raise ValueError(f"{path}: its string table is in no loaded segment")
        names = []
        for offset in needed:
            f.seek(strtab_at + offset)
            chunk = f.read(256)
            names.append(chunk[:chunk.index(b"\0")].decode())
        return names


def mxnet_library() -> Optional[Path]:
    """The installed MXNet's libmxnet.so, found without importing MXNet (None if absent)."""
    spec = importlib.util.find_spec("mxnet")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        lib = Path(folder) / "libmxnet.so"
        if lib.is_file():
            return lib
    return None


def _load_global(path: str) -> None:
    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


def _needed_or_none(path) -> list[str]:
    try:
        return elf_needed(path)
    except (OSError, ValueError, struct.error):
        return []


def cuda_preload_list(lib_dirs: list[Path], root: Path,
                      needed: Callable[[object], list[str]] = _needed_or_none) -> list[str]:
    """The wheels' libraries that ``root`` (libmxnet.so) needs, each after those it needs.

    Those are the libraries ``root`` links against (DT_NEEDED) found in ``lib_dirs``, the
    ones they link against in turn, and the companions a needed library opens itself at run
    time from its own folder, named after it (libcudnn.so.8: libcudnn_ops_infer.so.8, ...;
    libnvrtc.so.11.2: libnvrtc-builtins.so.11.7). Nothing else: NVBLAS, loaded globally,
    would answer every BLAS call of the process (sgemm_, dgemm_).
    """
    in_wheels: dict[str, Path] = {}
    for d in lib_dirs:
        for f in sorted(d.iterdir()):
            if f.name.startswith("lib") and ".so" in f.name and f.is_file():
                in_wheels.setdefault(f.name, f)
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in in_wheels:
            return
        seen.add(name)
        for dep in needed(in_wheels[name]):
            visit(dep)
        order.append(str(in_wheels[name]))
        stem = name.split(".so")[0]
        for other in sorted(in_wheels):
            if in_wheels[other].parent == in_wheels[name].parent and other[len(stem):][:1] in \
                    ("_", "-") and other.startswith(stem):
                visit(other)

    for name in needed(root):
        visit(name)
    return order


def preload_cuda(lib_dirs: list[Path], load: Callable[[str], None] = _load_global,
                 root: Optional[Path] = None,
                 needed: Callable[[object], list[str]] = _needed_or_none) -> list[str]:
    """Make the CUDA wheels' libraries loadable by MXNet without LD_LIBRARY_PATH.

    The driver comes first: without ``libcuda.so.1`` nothing else can work, so its absence
    raises BackendError with what to do. Then the libraries of :func:`cuda_preload_list` are
    loaded with RTLD_GLOBAL, each after those it needs; once loaded, a library satisfies later
    lookups of its soname, which is how libmxnet.so finds them. One that fails is left for
    MXNet's own import to report. ``root``: libmxnet.so (default: the installed one's).
    Returns the loaded paths in order.
    """
    try:
        load(DRIVER_LIB)
    except OSError as e:
        raise BackendError(DRIVER_HINT.format(error=e)) from None
    root = root or mxnet_library()
    if root is None:
        return []  # no libmxnet.so: the import says so
    loaded = []
    for path in cuda_preload_list(lib_dirs, root, needed):
        try:
            load(path)
            loaded.append(path)
        except OSError:
            pass
    return loaded


def _version_text(version: int) -> str:
    return f"{version // 1000}.{version % 1000 // 10}"


def nvrtc_version(path: str) -> int:
    """The CUDA version of the NVRTC library at ``path``, as the driver's: 11070 = 11.7."""
    nvrtc = ctypes.CDLL(path)
    major, minor = ctypes.c_int(), ctypes.c_int()
    if nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)):
        raise OSError(f"nvrtcVersion failed in {path}")
    return major.value * 1000 + minor.value * 10


def fusion_for_driver(loaded: list[str], driver: Optional[Callable[[], int]] = None,
                      nvrtc: Callable[[str], int] = nvrtc_version, environ=os.environ) -> None:
    """Turn MXNet's operator fusion off (MXNET_USE_FUSION=0, unless set already) when the
    driver is older than the NVRTC among ``loaded``.

    MXNet 1.9.1 compiles fused kernels to PTX with NVRTC at the first hybridized call and
    has the driver load that PTX; a driver older than NVRTC's CUDA version refuses it. No
    NVRTC of CUDA 11.2 is on PyPI (11.7 is the oldest), so a driver older than R515 trains
    without fusion: the same results, a little slower.
    """
    if "MXNET_USE_FUSION" in environ:
        return
    paths = [p for p in loaded if Path(p).name.startswith("libnvrtc.so")]
    try:
        have, need = (driver or cuda_driver_version)(), nvrtc(paths[0]) if paths else 0
    except OSError:
        return  # MXNet's import or first kernel says what is wrong
    if have < need:
        environ["MXNET_USE_FUSION"] = "0"
        log.warning("the NVIDIA driver supports CUDA %s, older than NVRTC's %s: MXNet's operator "
                    "fusion is off (MXNET_USE_FUSION=0)", _version_text(have),
                    _version_text(need))


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
    mx.npx.set_np()
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


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    """What the driver says of one GPU."""

    name: str
    capability: tuple  # (major, minor), e.g. (8, 6)
    driver: int  # the newest CUDA the driver supports, as cuDriverGetVersion: 12020 = 12.2

    def describe(self, index: int) -> str:
        return (f"GPU {index} ({self.name}, compute capability "
                f"{self.capability[0]}.{self.capability[1]})")


def has_kernels(capability: tuple) -> bool:
    """Whether mxnet-cu112 1.9.1 has kernels that run on a GPU of this compute capability."""
    return KERNEL_MAJORS[0] <= capability[0] <= KERNEL_MAJORS[1]


def _cuda_call(fn, *args) -> None:
    status = fn(*args)
    if status:
        raise OSError(f"{fn.__name__} returned CUDA error {status}")


def cuda_driver_version(lib=None) -> int:
    """The newest CUDA version the installed driver supports (12020 = 12.2); raises OSError
    when the driver library does not load or answer."""
    cuda = lib or ctypes.CDLL(DRIVER_LIB)
    version = ctypes.c_int()
    _cuda_call(cuda.cuDriverGetVersion, ctypes.byref(version))
    return version.value


def cuda_gpu_info(index: int) -> GpuInfo:
    """Name, compute capability and driver of GPU ``index``, asked of the CUDA driver API
    (libcuda.so.1, not through MXNet, whose own lookup needs the unversioned libcuda.so).
    Raises OSError when the driver does not load or answer."""
    cuda = ctypes.CDLL(DRIVER_LIB)
    _cuda_call(cuda.cuInit, 0)
    dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    _cuda_call(cuda.cuDeviceGet, ctypes.byref(dev), index)
    for value, attribute in ((major, 75), (minor, 76)):  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_*
        _cuda_call(cuda.cuDeviceGetAttribute, ctypes.byref(value), attribute, dev)
    name = ctypes.create_string_buffer(256)
    _cuda_call(cuda.cuDeviceGetName, name, len(name), dev)
    return GpuInfo(name.value.decode(errors="replace"), (major.value, minor.value),
                   cuda_driver_version(cuda))


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

