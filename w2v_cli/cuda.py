"""The CUDA wheels and the driver: which libraries to preload before MXNet's GPU build, read
from ``libmxnet.so``'s ELF header, and whether the driver can load NVRTC's output.

Only the GPU build (mxnet-cu112) needs this; backend.mxnet() calls it before the import.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib.util
import logging
import os
import site
import struct
import sys
from pathlib import Path
from typing import Callable, Iterable, Optional

from .errors import BackendError

log = logging.getLogger("w2v_cli.backend")  # one-line notes; the CLI shows them as "note: ..."


DRIVER_LIB = "libcuda.so.1"


DRIVER_HINT = (
    f"the GPU build of MXNet (mxnet-cu112) is installed but the NVIDIA driver library "
    f"{DRIVER_LIB} cannot be loaded ({{error}}); install the NVIDIA driver (`nvidia-smi` "
    "should list the GPU), or use the CPU build: `pip install '.[cpu]'` after "
    "`pip uninstall mxnet-cu112`"
)


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


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    """What the driver says of one GPU."""

    name: str
    capability: tuple  # (major, minor), e.g. (8, 6)
    driver: int  # the newest CUDA the driver supports, as cuDriverGetVersion: 12020 = 12.2

    def describe(self, index: int) -> str:
        return (f"GPU {index} ({self.name}, compute capability "
                f"{self.capability[0]}.{self.capability[1]})")


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
