"""The one place that speaks MXNet's two array front ends.

Dense runs use the numpy front end (``mx.np``, ``npx.batch_dot``), as the chapter does.
Row-sparse gradients need the legacy NDArray one: under ``npx.set_np()`` Gluon refuses to
allocate a row_sparse gradient, so a sparse run builds, trains and checkpoints inside
:func:`scope` (``True``). Every other module reaches arrays through the helpers here, which
follow whichever front end is active, and never switches front ends itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

import numpy as np

from .backend import current_mxnet


def scope(sparse_grad: bool):
    """The front end to build and train a net in: legacy NDArray for sparse gradients, the
    numpy front end (unchanged) otherwise."""
    return current_mxnet().util.np_array(False) if sparse_grad else contextlib.nullcontext()


def numpy_front_end() -> bool:
    return current_mxnet().util.is_np_array()


def module():
    """The array module of the active front end: ``mx.np`` or ``mx.nd``."""
    mx = current_mxnet()
    return mx.np if mx.util.is_np_array() else mx.nd


def batch_dot(a, b, transpose_b: bool = False):
    mx = current_mxnet()
    dot = mx.npx.batch_dot if mx.util.is_np_array() else mx.nd.batch_dot
    return dot(a, b, transpose_b=transpose_b)


def stop_gradient(x):
    """``x`` forward, no gradient backward: an NDArray or a Symbol being traced, of either
    front end (the numpy one has no operator of its own for it in MXNet 1.9.1)."""
    mx = current_mxnet()
    block = mx.sym.BlockGrad if isinstance(x, mx.sym.Symbol) else mx.nd.BlockGrad
    if mx.util.is_np_array():
        return block(x.as_nd_ndarray()).as_np_ndarray()
    return block(x)


def take(x, idx):
    """Rows ``idx`` of ``x`` (a gather along axis 0)."""
    mx = current_mxnet()
    return mx.np.take(x, idx, axis=0) if mx.util.is_np_array() else mx.nd.take(x, idx)


def concat(xs: list):
    """1-D arrays end to end."""
    if len(xs) == 1:
        return xs[0]
    mx = current_mxnet()
    return mx.np.concatenate(xs) if mx.util.is_np_array() else mx.nd.concat(*xs, dim=0)


def zeros(n: int, ctx):
    return module().zeros((n,), ctx=ctx)


def on(x: np.ndarray, ctx):
    """A copy of numpy ``x`` on ``ctx`` (synchronous: for set-up, not for every step)."""
    return module().array(x, ctx=ctx, dtype=x.dtype)


def split_rows(x, ctxs: list) -> list:
    """An MXNet array cut by rows, one piece per device in ``ctxs`` (uneven allowed)."""
    return current_mxnet().gluon.utils.split_and_load(x, ctxs, even_split=False)


def wait_all() -> None:
    """Wait for every queued operation (before reading a clock)."""
    current_mxnet().nd.waitall()


def save(path, tables: dict) -> None:
    """Named arrays to an MXNet ``.params`` file, as ``save_parameters`` writes them."""
    mx = current_mxnet()
    (mx.npx.save if mx.util.is_np_array() else mx.nd.save)(str(path), tables)


def to_numpy(x) -> np.ndarray:
    return x.asnumpy()


def state_array(x: np.ndarray, numpy_kind: bool):
    """An optimizer state array from a checkpoint (on the CPU: Gluon moves it to the
    parameter's device at its next update)."""
    a = current_mxnet().nd.array(x)
    return a.as_np_ndarray() if numpy_kind else a


def is_dense_array(obj) -> bool:
    mx = current_mxnet()
    return isinstance(obj, mx.nd.NDArray) and obj.stype == "default"


def is_numpy_array(obj) -> bool:
    return isinstance(obj, current_mxnet().np.ndarray)


def scatter_rows(target, idx, value) -> None:
    """``target[idx] = value`` in place (rows of a 2-D table; idx: (1, n) on its device).
    Also called on a parameter server, inside `import mxnet`: the submodule, not ``mx.nd``."""
    from mxnet import ndarray as nd
    nd._internal._scatter_set_nd(lhs=target, rhs=value, indices=idx, shape=target.shape,
                                 out=target)


def from_numpy(x: np.ndarray):
    """``x`` as an MXNet array of the active front end on cpu(0) sharing its memory.

    ``nd.array(x)`` copies synchronously: it waits for every operation queued before it, so
    a step's Python work could not overlap the previous step's computation. The array keeps
    ``x`` alive; ``x`` must not be written afterwards.
    """
    mx = current_mxnet()
    shared = mx.nd.from_numpy(np.ascontiguousarray(x), zero_copy=True)
    return shared.as_np_ndarray() if mx.util.is_np_array() else shared


class HostArrays:
    """numpy arrays handed to MXNet as :func:`from_numpy` does (zero-copy, no wait), but
    without a Python deleter: each is kept alive here until :meth:`release`.

    ``nd.from_numpy`` frees through a Python callback that runs on the engine thread and
    needs the GIL, so the engine stalled whenever the training thread ran Python. Call
    :meth:`release` only once the device has finished every operation reading the arrays;
    dropped without a release, it waits for the device first.
    """

    def __init__(self):
        self._held: list = []  # (numpy array, the ctypes shape MXNet was given)

    def array(self, x: np.ndarray):
        """``x`` as an MXNet array of the active front end on cpu(0), sharing its memory."""
        mx = current_mxnet()
        lib = mx.ndarray.ndarray
        x = np.ascontiguousarray(x)
        x.flags.writeable = False  # as nd.from_numpy: MXNet reads it later
        tensor = lib.DLManagedTensor()  # deleter left NULL: MXNet calls nothing on free
        dl = tensor.dl_tensor
        dl.data = x.ctypes.data
        dl.ctx = lib.DLContext(1, 0)  # kDLCPU, device 0
        dl.ndim = x.ndim
        dl.dtype = lib.DLDataType(*_dl_type(lib, x.dtype))
        dl.shape = shape = (ctypes.c_int64 * x.ndim)(*x.shape)
        handle = mx.base.NDArrayHandle()
        # Private API: MXNet 1.9.1 has no public call that takes DLPack without a deleter.
        mx.base.check_call(mx.base._LIB.MXNDArrayFromDLPackEx(
            ctypes.byref(tensor), True, ctypes.byref(handle)))
        self._held.append((x, shape))
        shared = mx.nd.NDArray(handle=handle)
        return shared.as_np_ndarray() if mx.util.is_np_array() else shared

    def release(self) -> None:
        """Let the arrays go (their memory is freed once nothing else holds them)."""
        self._held.clear()

    def __del__(self):
        # The engine may still read the arrays: wait before their memory goes.
        if self._held:
            with contextlib.suppress(Exception):  # e.g. MXNet already gone at exit
                current_mxnet().nd.waitall()


def _dl_type(lib, dtype: np.dtype) -> tuple:
    """DLPack's (code, bits, lanes) for ``dtype``, from MXNet's own table."""
    code = lib.DLDataType.TYPE_MAP.get(dtype.name)
    if code is None:
        raise ValueError(f"{dtype} arrays cannot be handed to MXNet")
    return code


def quiet_lazy_update_notice() -> None:
    """Spend MXNet's once-per-thread notice that lazy adam differs from standard adam on a
    2-row update with stderr closed: w2v documents what its sparse path computes, and the
    notice would land in the middle of the progress line. Call it from the training thread.
    """
    nd = current_mxnet().nd
    w = nd.ones((2, 1))
    grad = nd.sparse.row_sparse_array((nd.ones((1, 1)), nd.array([1])), shape=(2, 1))
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)  # the notice is printed by C++ code, past Python's sys.stderr
    try:
        nd.adam_update(w, grad, nd.zeros((2, 1)), nd.zeros((2, 1)), lr=0.1, out=w,
                       lazy_update=True)
        w.wait_to_read()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def slice_rows(x, begin: int, end: int):
    """Rows ``begin:end`` of ``x`` (a view that autograd follows)."""
    mx = current_mxnet()
    if mx.util.is_np_array():
        return mx.npx.slice(x, (begin,) + (None,) * (x.ndim - 1), (end,) + (None,) * (x.ndim - 1))
    return mx.nd.slice_axis(x, axis=0, begin=begin, end=end)
