"""The GPU install path: the CUDA wheels' libraries preloaded before MXNet, the driver required."""

import ctypes
import shutil
import subprocess

import pytest

from w2v_cli import backend, cuda
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
    dirs = cuda.nvidia_lib_dirs([str(site), str(other), str(site)])
    assert [d.parent.name for d in dirs] == ["cublas", "cuda_runtime", "cudnn"]
    assert cuda.nvidia_lib_dirs([str(other)]) == []


# what each fake library links against; "root" stands for libmxnet.so
NEEDS = {"root": ["libc.so.6", "libcudnn.so.8", "libcuda.so.1", "libcublas.so.11",
                  "libcudart.so.11.0"],
         "libcublas.so.11": ["libcublasLt.so.11", "libc.so.6"],
         "libcudnn_ops_infer.so.8": ["libcudnn.so.8", "libcublas.so.11"]}


def _needs(path):
    return NEEDS.get(getattr(path, "name", path), [])


def test_preload_list_is_what_libmxnet_needs_each_after_its_own_needs(tmp_path):
    dirs = cuda.nvidia_lib_dirs([str(_fake_site(tmp_path))])
    order = cuda.cuda_preload_list(dirs, "root", _needs)
    # NVBLAS is in the cuBLAS wheel but nothing links against it; cuDNN opens its
    # libcudnn_*.so.8 itself, so they come along, after what they need
    assert [p.rsplit("/", 1)[-1] for p in order] == [
        "libcudnn.so.8", "libcublasLt.so.11", "libcublas.so.11", "libcudnn_ops_infer.so.8",
        "libcudart.so.11.0"]
    loaded = cuda.preload_cuda(dirs, lambda path: None, root="root", needed=_needs)
    assert loaded == order


def test_preload_leaves_a_library_that_fails_to_mxnet(tmp_path):
    dirs = cuda.nvidia_lib_dirs([str(_fake_site(tmp_path))])

    def load(path):
        if "cudnn" in path:
            raise OSError("missing dependency")

    loaded = cuda.preload_cuda(dirs, load, root="root", needed=_needs)
    assert [p.rsplit("/", 1)[-1] for p in loaded] == [
        "libcublasLt.so.11", "libcublas.so.11", "libcudart.so.11.0"]


def test_missing_driver_is_a_clear_error(tmp_path):
    dirs = cuda.nvidia_lib_dirs([str(_fake_site(tmp_path))])

    def load(path):
        if path == "libcuda.so.1":
            raise OSError("libcuda.so.1: cannot open shared object file: No such file or directory")

    with pytest.raises(BackendError, match=r"NVIDIA driver library libcuda.so.1 cannot be loaded"
                                           r".*install the NVIDIA driver"):
        cuda.preload_cuda(dirs, load)


def test_mxnet_preloads_only_for_a_gpu_build_before_the_first_import(monkeypatch):
    backend.mxnet()  # the real (CPU) import, unpatched
    calls = []
    monkeypatch.setattr(backend, "preload_cuda", lambda dirs: calls.append(dirs) or [])
    monkeypatch.setattr(backend, "mxnet_builds", lambda: ["mxnet-cu112"])
    monkeypatch.setattr(backend, "fusion_for_driver", lambda loaded: None)
    backend.mxnet()  # already imported: nothing to do
    assert calls == []
    monkeypatch.delitem(__import__("sys").modules, "mxnet")
    monkeypatch.setattr(backend.importlib, "import_module", lambda name: (_ for _ in ()).throw(
        ImportError("stop here")))
    with pytest.raises(BackendError, match="stop here"):
        backend.mxnet()
    assert len(calls) == 1


def _cc(tmp_path, out, soname, code, *link):
    src = tmp_path / (soname + ".c")
    src.write_text(code)
    subprocess.run(["cc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(out), str(src),
                    *link], check=True)


needs_cc = pytest.mark.skipif(not shutil.which("cc"), reason="needs a C compiler")


@needs_cc
def test_elf_needed_reads_what_a_library_links_against(tmp_path):
    _cc(tmp_path, tmp_path / "libw2vone.so.1", "libw2vone.so.1", "int one(void) { return 1; }\n")
    _cc(tmp_path, tmp_path / "libw2vtwo.so.2", "libw2vtwo.so.2", "int two(void) { return 2; }\n")
    _cc(tmp_path, tmp_path / "libboth.so", "libboth.so",
        "int one(void); int two(void);\nint both(void) { return one() + two(); }\n",
        "-Wl,--no-as-needed", "-L", str(tmp_path), "-l:libw2vtwo.so.2", "-l:libw2vone.so.1", "-lm")
    needed = cuda.elf_needed(tmp_path / "libboth.so")
    assert needed[:3] == ["libw2vtwo.so.2", "libw2vone.so.1", "libm.so.6"]  # in link order
    assert "libc.so.6" in needed
    assert set(cuda.elf_needed(tmp_path / "libw2vone.so.1")) <= {"libc.so.6"}
    (tmp_path / "notelf.so").write_bytes(b"#!/bin/sh\n")
    with pytest.raises(ValueError, match="not an ELF file"):
        cuda.elf_needed(tmp_path / "notelf.so")


@pytest.mark.skipif(cuda.mxnet_library() is None or not backend.gpu_build_installed(),
                    reason="the GPU build of MXNet is not installed")
def test_the_preload_list_is_what_the_installed_libmxnet_needs():
    root = cuda.mxnet_library()
    dirs = cuda.nvidia_lib_dirs()
    in_wheels = {f.name for d in dirs for f in d.iterdir()}
    direct = [n for n in cuda.elf_needed(root) if n in in_wheels]
    names = [p.rsplit("/", 1)[-1] for p in cuda.cuda_preload_list(dirs, root)]
    assert set(direct) <= set(names) and len(names) == len(set(names))
    assert "libcudart.so.11.0" in names and not any("nvblas" in n for n in names)
    for name in set(names) - set(direct):  # only what those need, or open as companions
        assert any(name in cuda.elf_needed(p) or name.startswith(p.rsplit("/", 1)[-1]
                                                                     .split(".so")[0])
                   for p in cuda.cuda_preload_list(dirs, root)), name


@needs_cc
def test_preload_makes_a_real_dependent_library_loadable(tmp_path):
    """Real libraries in separate wheel folders: libdep needs libbase by soname, libmxnet.so
    (a stand-in) needs libdep, and libextra, needed by nothing, stays unloaded. Neither folder
    is on the loader's path, yet after preloading, libdep opens by its soname."""
    site = tmp_path / "site-packages"
    base_dir, dep_dir = site / "nvidia" / "zbase" / "lib", site / "nvidia" / "adep" / "lib"
    base_dir.mkdir(parents=True)
    dep_dir.mkdir(parents=True)
    _cc(tmp_path, base_dir / "libw2vbase.so.1", "libw2vbase.so.1",
        "int w2v_base(void) { return 41; }\n")
    _cc(tmp_path, base_dir / "libw2vextra.so.1", "libw2vextra.so.1",
        "int w2v_extra(void) { return 7; }\n")
    _cc(tmp_path, dep_dir / "libw2vdep.so.1", "libw2vdep.so.1",
        "int w2v_base(void);\nint w2v_dep(void) { return w2v_base() + 1; }\n",
        "-L", str(base_dir), "-l:libw2vbase.so.1")
    _cc(tmp_path, tmp_path / "libmxnet.so", "libmxnet.so",
        "int w2v_dep(void);\nint w2v_root(void) { return w2v_dep(); }\n",
        "-L", str(dep_dir), "-l:libw2vdep.so.1")
    with pytest.raises(OSError):
        ctypes.CDLL(str(dep_dir / "libw2vdep.so.1"))  # its dependency is not on the path

    def load(path):
        if path != "libcuda.so.1":  # no driver here; the rest is real
            cuda._load_global(path)

    loaded = cuda.preload_cuda(cuda.nvidia_lib_dirs([str(site)]), load,
                                  root=tmp_path / "libmxnet.so")
    assert [p.rsplit("/", 1)[-1] for p in loaded] == ["libw2vbase.so.1", "libw2vdep.so.1"]
    assert ctypes.CDLL("libw2vdep.so.1").w2v_dep() == 42  # found by soname, as MXNet would


def test_two_builds_of_mxnet_over_one_folder_are_refused():
    backend.check_one_build(["mxnet"])
    backend.check_one_build(["mxnet-cu112"])
    with pytest.raises(BackendError) as e:
        backend.check_one_build(["mxnet", "mxnet-cu112"])
    assert str(e.value) == (
        "several builds of MXNet are installed over one `mxnet` folder (mxnet, mxnet-cu112), as "
        "switching between the cpu and gpu extras leaves them; keep one: `pip uninstall -y "
        "mxnet mxnet-cu112 && pip install '.[cpu]'` (or '.[gpu]')")


def test_mxnet_refuses_two_builds_before_importing(monkeypatch):
    monkeypatch.delitem(__import__("sys").modules, "mxnet")
    monkeypatch.setattr(backend, "mxnet_builds", lambda: ["mxnet", "mxnet-cu112"])
    with pytest.raises(BackendError, match="several builds of MXNet"):
        backend.mxnet()


@pytest.mark.parametrize("driver, fusion", [(11040, "0"), (11070, None), (12020, None)])
def test_fusion_is_off_when_the_driver_is_older_than_nvrtc(driver, fusion, caplog):
    environ = {}
    loaded = ["/x/nvidia/cuda_nvrtc/lib/libnvrtc.so.11.2", "/x/libcudart.so.11.0"]
    cuda.fusion_for_driver(loaded, lambda: driver, lambda path: 11070, environ)
    assert environ.get("MXNET_USE_FUSION") == fusion
    if fusion:
        assert caplog.messages == [
            "the NVIDIA driver supports CUDA 11.4, older than NVRTC's 11.7: MXNet's operator "
            "fusion is off (MXNET_USE_FUSION=0)"]
    environ = {"MXNET_USE_FUSION": "1"}  # the user's choice stands
    cuda.fusion_for_driver(loaded, lambda: 11000, lambda path: 11070, environ)
    assert environ == {"MXNET_USE_FUSION": "1"}
