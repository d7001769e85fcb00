"""The GPU install path: the CUDA wheels' libraries preloaded before MXNet, the driver required."""

import ctypes
import shutil
import subprocess

import pytest

from w2v_cli import backend
from w2v_cli.errors import BackendError


def _fake_site(tmp_path):
    """site-packages/nvidia/<pkg>/lib as the nvidia-*-cu11 wheels lay them out."""
    site = tmp_path / "site-packages"
    for pkg, libs in {"cublas": ["libcublas.so.11", "libcublasLt.so.11", "libnvblas.so.11"],
                      "cudnn": ["libcudnn.so.8", "libcudnn_ops_infer.so.8"],
                      "cuda_runtime": ["libcudart.so.11.0"]}.items():
        (site / "nvidia" / pkg / "lib").mkdir(parents=True)
        for lib in libs:
            (site / "nvidia" / pkg / "lib" / lib).write_bytes(b"")
    (site / "nvidia" / "cudnn" / "include").mkdir()
    (site / "nvidia" / "__init__.py").write_text("")
    (site / "nvidia" / "cudnn" / "lib" / "__init__.py").write_text("")  # not a library
    return site


def test_lib_dirs_found_under_every_site_folder(tmp_path):
    site = _fake_site(tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    dirs = backend.nvidia_lib_dirs([str(site), str(other), str(site)])
    assert [d.parent.name for d in dirs] == ["cublas", "cuda_runtime", "cudnn"]
    assert backend.nvidia_lib_dirs([str(other)]) == []


def test_preload_retries_libraries_whose_dependencies_come_later(tmp_path):
    dirs = backend.nvidia_lib_dirs([str(_fake_site(tmp_path))])
    # cuBLAS needs the runtime, cuDNN's ops library needs cuDNN and cuBLAS
    needs = {"libcublas.so.11": {"libcudart.so.11.0", "libcublasLt.so.11"},
             "libcudnn_ops_infer.so.8": {"libcudnn.so.8", "libcublas.so.11"}}
    done = []

    def load(path):
        name = path.rsplit("/", 1)[-1]
        if not needs.get(name, set()) <= set(done):
            raise OSError(f"{name}: cannot open shared object file")
        done.append(name)

    loaded = backend.preload_cuda(dirs, load)
    assert done[0] == "libcuda.so.1"
    assert [p.rsplit("/", 1)[-1] for p in loaded] == done[1:] == [
        "libcublasLt.so.11", "libnvblas.so.11", "libcudart.so.11.0", "libcudnn.so.8",
        "libcublas.so.11", "libcudnn_ops_infer.so.8"]


def test_preload_stops_when_nothing_more_loads(tmp_path):
    dirs = backend.nvidia_lib_dirs([str(_fake_site(tmp_path))])
    tried = []

    def load(path):
        tried.append(path)
        if "cudnn" in path:
            raise OSError("missing dependency")

    loaded = backend.preload_cuda(dirs, load)
    assert len(loaded) == 4 and not any("cudnn" in p for p in loaded)
    assert sum("libcudnn.so.8" in p for p in tried) == 2  # tried, retried once, left to MXNet


def test_missing_driver_is_a_clear_error(tmp_path):
    dirs = backend.nvidia_lib_dirs([str(_fake_site(tmp_path))])

    def load(path):
        if path == "libcuda.so.1":
            raise OSError("libcuda.so.1: cannot open shared object file: No such file or directory")

    with pytest.raises(BackendError, match=r"NVIDIA driver library libcuda.so.1 cannot be loaded"
                                           r".*install the NVIDIA driver"):
        backend.preload_cuda(dirs, load)


def test_mxnet_preloads_only_for_a_gpu_build_before_the_first_import(monkeypatch):
    backend.mxnet()  # the real (CPU) import, unpatched
    calls = []
    monkeypatch.setattr(backend, "preload_cuda", lambda dirs: calls.append(dirs))
    monkeypatch.setattr(backend, "gpu_build_installed", lambda: True)
    backend.mxnet()  # already imported: nothing to do
    assert calls == []
    monkeypatch.delitem(__import__("sys").modules, "mxnet")
    monkeypatch.setattr(backend.importlib, "import_module", lambda name: (_ for _ in ()).throw(
        ImportError("stop here")))
    with pytest.raises(BackendError, match="stop here"):
        backend.mxnet()
    assert len(calls) == 1


@pytest.mark.skipif(not shutil.which("cc"), reason="needs a C compiler")
def test_preload_makes_a_real_dependent_library_loadable(tmp_path):
    """Two real libraries in separate wheel folders, libdep needing libbase by soname: neither
    folder is on the loader's path, yet after preloading, libdep opens."""
    site = tmp_path / "site-packages"
    base_dir, dep_dir = site / "nvidia" / "zbase" / "lib", site / "nvidia" / "adep" / "lib"
    base_dir.mkdir(parents=True)
    dep_dir.mkdir(parents=True)
    (tmp_path / "base.c").write_text("int w2v_base(void) { return 41; }\n")
    (tmp_path / "dep.c").write_text("int w2v_base(void);\nint w2v_dep(void) { return w2v_base() + 1; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-Wl,-soname,libw2vbase.so.1", "-o",
                    str(base_dir / "libw2vbase.so.1"), str(tmp_path / "base.c")], check=True)
    subprocess.run(["cc", "-shared", "-fPIC", "-Wl,-soname,libw2vdep.so.1", "-o",
                    str(dep_dir / "libw2vdep.so.1"), str(tmp_path / "dep.c"),
                    "-L", str(base_dir), "-l:libw2vbase.so.1"], check=True)
    with pytest.raises(OSError):
        ctypes.CDLL(str(dep_dir / "libw2vdep.so.1"))  # its dependency is not on the path

    def load(path):
        if path != "libcuda.so.1":  # no driver here; the rest is real
            backend._load_global(path)

    loaded = backend.preload_cuda(backend.nvidia_lib_dirs([str(site)]), load)
    assert [p.rsplit("/", 1)[-1] for p in loaded] == ["libw2vbase.so.1", "libw2vdep.so.1"]
    assert ctypes.CDLL("libw2vdep.so.1").w2v_dep() == 42  # found by soname, as MXNet would
