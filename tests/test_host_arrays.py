"""arrays.HostArrays: batches lent to MXNet without a Python deleter, kept until released."""

import weakref

import numpy as np
import pytest

from w2v_cli import batches as B
from w2v_cli import train as T
from w2v_cli.arrays import HostArrays, from_numpy, scope
from w2v_cli.backend import mxnet
from w2v_cli.examples import Rows
from w2v_cli.model import build_net

mx = mxnet()


@pytest.mark.parametrize("x", [np.arange(12, dtype=np.float32).reshape(3, 4),
                               np.array([5, 0, 7], np.int64),
                               np.arange(6, dtype=np.int32).reshape(2, 3)[:, ::2],  # strided
                               np.zeros((0, 3), np.float32)])
@pytest.mark.parametrize("numpy_front_end", [False, True])
def test_an_array_reads_as_the_numpy_array(x, numpy_front_end):
    host = HostArrays()
    with mx.util.np_array(numpy_front_end):
        a = host.array(x)
        assert isinstance(a, mx.np.ndarray if numpy_front_end else mx.nd.NDArray)
        assert a.shape == x.shape and a.dtype == x.dtype
        np.testing.assert_array_equal(a.asnumpy(), x)


def test_the_numpy_memory_stays_until_release_and_goes_after():
    host = HostArrays()
    x = np.arange(10, dtype=np.float32)
    alive = weakref.ref(x)
    a = host.array(x) * 2  # an operation reading it on the engine thread
    assert not x.flags.writeable  # MXNet reads it later: nobody may write it meanwhile
    del x
    np.testing.assert_array_equal(a.asnumpy(), np.arange(10) * 2)
    assert alive() is not None  # MXNet holds no reference of its own: HostArrays does
    host.release()
    assert alive() is None


def test_dropped_without_release_it_waits_for_the_engine_first():
    # Each step's arrays dropped at once, the steps still queued: without the wait in
    # __del__ the engine read freed memory (a crash, or wrong numbers).
    rng = np.random.default_rng(1)
    with scope(True):
        mx.random.seed(0)
        net = build_net(50, 8, mx.cpu(), sparse_grad=True)
        trainer = mx.gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.01})
        losses = []
        for _ in range(30):
            b = B.Layout(B.Padded(), B.OwnNegatives()).batch(
                Rows(rng.integers(1, 50, 64).astype(np.int32),
                     rng.integers(1, 50, (64, 6)).astype(np.int32),
                     rng.integers(1, 4, 64), np.full(64, 6)))
            losses.append(T.forward_backward(net, b, [mx.cpu()], HostArrays())[0])
            trainer.step(64)
        got = [x.asnumpy().item() for x in losses]
    assert all(np.isfinite(got)) and got[-1] < got[0]  # it trained on the real batches


def test_an_unsupported_dtype_is_refused():
    with pytest.raises(ValueError, match="complex64"):
        HostArrays().array(np.zeros(3, np.complex64))


class _Loss:
    def __init__(self, log, step):
        self.log, self.step = log, step

    def wait_to_read(self):
        self.log.append(("waited", self.step))


class _Host:
    def __init__(self, log, step):
        self.log, self.step = log, step

    def release(self):
        self.log.append(("released", self.step))


def test_a_steps_arrays_go_once_the_step_after_it_has_its_loss():
    log = []
    queued = T._Queued()
    for step in range(1, 6):
        queued.add([_Loss(log, step)], _Host(log, step))
    # STEPS_AHEAD = 2 steps stay queued; step 1 goes only after step 2's loss is read.
    assert T.STEPS_AHEAD == 2
    assert log == [("waited", 1), ("waited", 2), ("released", 1), ("waited", 3),
                   ("released", 2)]


@pytest.mark.parametrize("layout", ["padded", "trimmed", "grouped"])
def test_forward_backward_gives_the_same_loss_and_gradients_with_host_arrays(layout):
    rng = np.random.default_rng(0)
    rows, width = 6, 5
    length = rng.integers(1, width + 1, rows)
    mask = np.arange(width)[None, :] < length[:, None]
    r = Rows(rng.integers(1, 30, rows).astype(np.int32),
             (rng.integers(1, 30, (rows, width)) * mask).astype(np.int32),
             np.maximum(length // 2, 1), length)
    grouping, objective = {
        "padded": (B.Padded(), B.OwnNegatives()),
        "trimmed": (B.Trimmed(2), B.OwnNegatives()),
        "grouped": (B.Padded(), B.SharedNegatives(np.arange(30), 2, 4, 2)),
    }[layout]
    b = B.Layout(grouping, objective).batch(r, np.random.default_rng(1))
    results = []
    for lend in (False, True):
        with scope(True):
            mx.random.seed(0)
            net = build_net(30, 4, mx.cpu(), sparse_grad=True)
            host = HostArrays() if lend else None
            loss = T.forward_backward(net, b, [mx.cpu()], host)[0].asnumpy()
            grads = [p.grad().tostype("default").asnumpy() for p in (net[0].weight,
                                                                     net[1].weight)]
        results.append((loss, grads))
    (want, want_grads), (got, got_grads) = results
    np.testing.assert_array_equal(got, want)
    for g, w in zip(got_grads, want_grads):
        np.testing.assert_array_equal(g, w)
    assert np.abs(want_grads[0]).sum() > 0  # the batch did reach the tables


def test_from_numpy_keeps_its_array_itself():
    x = np.arange(4, dtype=np.float32)
    alive = weakref.ref(x)
    a = from_numpy(x)
    del x
    assert alive() is not None
    del a
    mx.nd.waitall()
    assert alive() is None
