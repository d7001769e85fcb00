import math

import numpy as np
import pytest

from w2v_cli.backend import mxnet
from w2v_cli.catchup import CatchUp, DriftSums

mx = mxnet()

V, E = 40, 3


def _table(sparse: bool, init: np.ndarray, lr: float):
    nn = mx.gluon.nn
    net = nn.Sequential()
    net.add(nn.Embedding(V, E, sparse_grad=sparse))
    net.initialize(mx.init.Zero())
    net[0].weight.set_data(mx.nd.array(init))
    return net, mx.gluon.Trainer(net.collect_params(), "adam", {"learning_rate": lr})


def _steps(n: int, seed: int = 0):
    """n steps of (ids, target): a few rows each, some rows idle for many steps."""
    rng = np.random.default_rng(seed)
    hot = np.arange(5)  # touched often; the rest rarely
    out = []
    for _ in range(n):
        ids = np.concatenate([rng.choice(hot, 2), rng.integers(0, V, rng.integers(0, 3))])
        out.append((ids, rng.normal(size=(1, 1, E)).astype(np.float32)))
    return out


def _run(steps, *, sparse: bool, catch_up: bool, lr=0.02, flush_every=0, ahead=False):
    init = np.random.default_rng(1).uniform(-0.1, 0.1, (V, E)).astype(np.float32)
    with mx.util.np_array(False):
        net, trainer = _table(sparse, init, lr)
        catch = CatchUp(trainer, net[0].weight) if catch_up else None
        for k, (ids, target) in enumerate(steps, start=1):
            if catch:
                upcoming = steps[k][0] if ahead and k < len(steps) else None
                catch.rows(ids, upcoming)
            with mx.autograd.record():
                loss = (net[0](mx.nd.array(ids[None, :])) * mx.nd.array(target)).sum()
            loss.backward()
            trainer.step(1)
            if catch and flush_every and k % flush_every == 0:
                catch.flush()
        if catch:
            catch.flush()
        mean, var = trainer._updaters[0].states[0]
        return net[0].weight.data().asnumpy(), mean.asnumpy(), var.asnumpy()


def test_lazy_adam_caught_up_is_dense_adam():
    steps = _steps(80)
    dense = _run(steps, sparse=False, catch_up=False)
    caught = _run(steps, sparse=True, catch_up=True)
    lazy = _run(steps, sparse=True, catch_up=False)
    for want, got in zip(dense, caught):  # weights, first and second moments
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    # the idle rows are what differs without the catch-up
    assert np.abs(lazy[0] - dense[0]).max() > 1e-3


def test_flushing_in_between_changes_nothing():
    steps = _steps(50, seed=3)
    once = _run(steps, sparse=True, catch_up=True)
    often = _run(steps, sparse=True, catch_up=True, flush_every=7)
    for a, b in zip(once, often):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_drift_sums_are_the_bias_corrected_learning_rates_discounted():
    drift = DriftSums()
    b1, b2, lr = 0.9, 0.999, 0.01
    sums = drift.sums(30, lr, b1, b2)
    r = b1 / math.sqrt(b2)
    lr_at = [lr * math.sqrt(1 - b2 ** s) / (1 - b1 ** s) for s in range(1, 2000)]
    for s in (0, 1, 7, 30):
        want = sum(lr_at[s + j - 1] * r ** j for j in range(1, 1500))
        assert sums[s] == pytest.approx(want, rel=1e-12)
    # steps 4..9 missed by a row last updated at step 3: S[3] - r**6 S[9]
    assert sums[3] - r ** 6 * sums[9] == pytest.approx(
        sum(lr_at[s - 1] * r ** (s - 3) for s in range(4, 10)), rel=1e-12)
    factors = drift.factors(np.array([3, 5]), np.array([9, 5]), lr, b1, b2)
    assert factors.dtype == np.float32 and factors.shape == (2, 3)
    np.testing.assert_allclose(factors[0], [sums[3] - r ** 6 * sums[9], b1 ** 6, b2 ** 6],
                               rtol=1e-6)
    np.testing.assert_allclose(factors[1], [0, 1, 1], atol=1e-12)  # nothing missed


@pytest.mark.parametrize("flush_every", [0, 7])
def test_catching_the_next_steps_rows_up_ahead_changes_nothing(flush_every):
    # rows(ids, upcoming) catches up, every other step, the next step's rows this step
    # leaves alone: the tables are those of a catch-up before every step, and dense Adam's.
    steps = _steps(60)
    each = _run(steps, sparse=True, catch_up=True, flush_every=flush_every)
    ahead = _run(steps, sparse=True, catch_up=True, flush_every=flush_every, ahead=True)
    dense = _run(steps, sparse=False, catch_up=False)
    for a, e, d in zip(ahead, each, dense):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(a, d, rtol=1e-5, atol=1e-7)


def test_rows_caught_up_ahead_are_not_caught_up_again():
    with mx.util.np_array(False):
        net, trainer = _table(True, np.ones((V, E), np.float32), 0.01)
        catch = CatchUp(trainer, net[0].weight)
        first, second = np.array([1, 2]), np.array([2, 3])
        catch.rows(first, second)
        np.testing.assert_array_equal(catch.last[:4], [0, 1, 1, 0])  # 3: never updated yet
        calls = []
        catch._apply = lambda *args: calls.append(args)
        catch.rows(second)  # already done by the call before
        assert not calls and catch._ready is None
        np.testing.assert_array_equal(catch.last[:4], [0, 1, 1, 1])  # step 1 updates 2, 3


def test_nothing_to_catch_up_before_the_first_step_and_after_a_flush():
    with mx.util.np_array(False):
        net, trainer = _table(True, np.ones((V, E), np.float32), 0.01)
        catch = CatchUp(trainer, net[0].weight)
        catch.flush()  # no step yet: no moments, nothing moves
        catch.rows(np.array([1, 2]))
        np.testing.assert_array_equal(catch.last[:3], [0, 1, 1])
        np.testing.assert_array_equal(net[0].weight.data().asnumpy(), 1)


def test_a_resumed_catch_up_knows_the_rows_adam_has_touched():
    with mx.util.np_array(False):
        net, trainer = _table(True, np.ones((V, E), np.float32), 0.01)
        catch = CatchUp(trainer, net[0].weight)
        for ids in ([1, 2], [2, 5]):
            catch.rows(np.array(ids))
            with mx.autograd.record():
                loss = net[0](mx.nd.array([ids])).sum()
            loss.backward()
            trainer.step(1)
        catch.flush()
        fresh = CatchUp(trainer, net[0].weight)  # as after loading a checkpoint
        fresh.resumed()
    np.testing.assert_array_equal(np.flatnonzero(fresh.last), [1, 2, 5])
    assert set(fresh.last[[1, 2, 5]]) == {2}
    np.testing.assert_array_equal(fresh.last, catch.last)


def _step(net, trainer, catch, ids, target):
    catch.rows(ids)
    with mx.autograd.record():
        loss = (net[0](mx.nd.array(ids[None, :])) * mx.nd.array(target)).sum()
    loss.backward()
    trainer.step(1)


def test_a_caught_up_copy_has_the_bits_of_a_flush_and_leaves_the_run_as_it_was():
    init = np.random.default_rng(1).uniform(-0.1, 0.1, (V, E)).astype(np.float32)
    with mx.util.np_array(False):
        net, trainer = _table(True, init, 0.02)
        catch = CatchUp(trainer, net[0].weight)
        for ids, target in _steps(30):
            _step(net, trainer, catch, ids, target)
        assert catch.behind().size > 10  # rows idle since their last step

        def state():
            return [x.asnumpy() for x in (net[0].weight.data(), *catch._moments())]

        before, last = state(), catch.last.copy()
        copy = catch.caught_up().asnumpy()
        for a, b in zip(before, state()):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(catch.last, last)
        assert not np.array_equal(copy, before[0])
        catch.flush()
        np.testing.assert_array_equal(copy, net[0].weight.data().asnumpy())


def test_a_catch_up_resumed_with_its_positions_goes_on_as_if_never_stopped():
    """What a checkpoint inside an epoch saves: the table and moments as they are, and
    ``last``. Catching a row up in one go, not in two pieces around a flush, keeps the bits."""
    init = np.random.default_rng(1).uniform(-0.1, 0.1, (V, E)).astype(np.float32)
    steps = _steps(80)
    tables = {}
    for how in ("whole", "resumed", "flushed"):
        with mx.util.np_array(False):
            net, trainer = _table(True, init, 0.02)
            catch = CatchUp(trainer, net[0].weight)
            for k, (ids, target) in enumerate(steps, start=1):
                if k == 41 and how == "resumed":
                    fresh = CatchUp(trainer, net[0].weight)  # as after loading the checkpoint
                    fresh.resumed(catch.last.copy())
                    catch = fresh
                if k == 41 and how == "flushed":
                    catch.flush()
                _step(net, trainer, catch, ids, target)
            catch.flush()
            tables[how] = net[0].weight.data().asnumpy()
    np.testing.assert_array_equal(tables["whole"], tables["resumed"])
    np.testing.assert_allclose(tables["whole"], tables["flushed"], rtol=1e-5, atol=1e-7)
    assert not np.array_equal(tables["whole"], tables["flushed"])  # float32 rounding apart


def test_saved_positions_that_do_not_fit_the_table_are_refused():
    with mx.util.np_array(False):
        net, trainer = _table(True, np.ones((V, E), np.float32), 0.01)
        catch = CatchUp(trainer, net[0].weight)
        for bad in (np.zeros(V - 1, np.int64), np.zeros(V, np.int32), np.full(V, 1, np.int64)):
            with pytest.raises(ValueError, match="do not fit the table and Adam's 0 steps"):
                catch.resumed(bad)
        catch.resumed(np.zeros(V, np.int64))
