"""--optimizer sgd (sgd.py): the positions a row is scored at, the cap, the falling rate, the
C tool's start, one step against a direct computation, and where sgd is the default or refused."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import encode, planted_sentences
from w2v_cli import dataset, info, sgd, train
from w2v_cli import batches as B
from w2v_cli.backend import mxnet
from w2v_cli.cli import cli
from w2v_cli.config import Config, check, resolved
from w2v_cli.errors import UsageError
from w2v_cli.examples import Rows
from w2v_cli.model import INIT_SCALE, build_net, parameters
from w2v_cli.vectors import Vectors

mx = mxnet()
COUNTS = np.array([0, 40, 30, 20, 10, 8, 6, 3])


def _rows():
    # 3 centers with 2, 1 and 3 contexts (ids of a vocabulary of 8)
    items = np.array([[2, 3, 0], [4, 0, 0], [5, 6, 7]], np.int32)
    n_ctx = np.array([2, 1, 3])
    return Rows(np.array([1, 7, 3], np.int32), items, n_ctx, n_ctx.copy())


def _paths_batch():
    return B.Layout(B.Padded(), B.SkipGramPaths(COUNTS), (0, 0)).batch(_rows())


def test_row_positions_count_each_node_once_per_context_on_its_path():
    batch, tree = _paths_batch(), B.SkipGramPaths(COUNTS).tree
    expected = np.zeros(len(COUNTS))
    for center, n in ((1, 2), (7, 1), (3, 3)):  # each context scores its center's whole path
        np.add.at(expected, tree.nodes[center, :tree.length[center]], n)
    rows, positions = sgd.row_positions(batch)
    # the rows the batch looked up (node 0 also pads short paths), each with its count
    assert rows.tolist() == sorted(set(batch.parts[0][0].ravel().tolist()))
    assert np.array_equal(positions, expected[rows])
    assert expected[tree.nodes[1, 0]] == 6  # the root: on every path, 2 + 1 + 3 contexts


def test_row_positions_of_a_multi_part_batch_cover_the_batchs_distinct_words():
    """Trimmed parts (adam's skip-gram layout) list their words once in ``Batch.words``:
    the rows a row_sparse gradient holds. Positions count each part's weighted slots."""
    rows_in = Rows(np.array([1, 2, 3], np.int32), np.array([[4, 5, 6], [6, 0, 0], [7, 4, 0]],
                                                           np.int32),
                   np.array([3, 1, 2]), np.array([3, 1, 2]))
    batch = B.Layout(B.Trimmed(3), B.OwnNegatives(), (0, 0)).batch(rows_in)
    assert len(batch.parts) == 3
    rows, positions = sgd.row_positions(batch)
    assert rows.tolist() == batch.words.tolist() == [4, 5, 6, 7]  # no part is padded
    assert positions.tolist() == [2, 1, 2, 1]


def test_row_positions_need_no_vocabulary_sized_array():
    """Ids whose (id, count) keys overflow int32 are sorted as int64: the same answer."""
    big = 2 ** 30 + 1
    words = np.array([[big, 7, 7]], np.int32)
    weight = np.array([1, 1, 1, 0, 1, 1], np.float32)  # (1, 3, 2): word slot 1 scored once
    batch = B.Batch(np.zeros((2, 1), np.int32), [(words, 2)], weight, weight, 2)
    rows, positions = sgd.row_positions(batch)
    assert rows.tolist() == [7, big] and positions.tolist() == [3, 2]


def test_cap_scale_leaves_rows_at_or_under_the_cap_alone():
    assert sgd.cap_scale(np.array([0.0, 3.0, 4.0, 8.0, 100.0]), cap=4).tolist() == \
        pytest.approx([1.0, 1.0, 1.0, 0.5, 0.04])


def test_the_rate_falls_linearly_from_lr_to_its_floor():
    config = Config(epochs=4, lr=0.05, subsample=0.0)
    step = sgd.LinearSgd(config, COUNTS)
    assert step.total == 4 * COUNTS[1:].sum() == 468  # subsample 0: every token a center
    assert [step.rate(d) for d in (0, 117, 234, 468, 10_000)] == pytest.approx(
        [0.05, 0.0375, 0.025, 0.05 * sgd.MIN_RATE, 0.05 * sgd.MIN_RATE])
    # with subsampling: the tokens a pass keeps on average
    counts = np.array([5, 1000, 10, 10])
    kept = 1000 * np.sqrt(1e-2 * 1020 / 1000) + 20
    assert sgd.expected_centers(counts, 1e-2) == pytest.approx(kept)


def test_the_c_tools_start_rescales_gluons_draw_and_zeroes_the_second_table():
    net = build_net(8, 4, mx.cpu())
    before = net[0].weight.data().asnumpy()
    sgd.start_tables(net, 4)
    np.testing.assert_allclose(net[0].weight.data().asnumpy(), before * 0.125 / INIT_SCALE,
                               rtol=1e-6)
    assert not net[1].weight.data().asnumpy().any()


def test_one_step_is_plain_sgd_on_the_summed_loss_with_the_root_capped():
    config = resolved(Config(model="skipgram", loss="hs", epochs=1, subsample=0.0))
    assert (config.optimizer, config.lr) == ("sgd", 0.05)
    net = build_net(8, 4, mx.cpu())
    trainer = mx.gluon.Trainer(parameters(net), "sgd", {"learning_rate": 1.0})
    batch = _paths_batch()
    before = [net[i].weight.data().asnumpy().copy() for i in (0, 1)]
    train.forward_backward(net, batch, [mx.cpu()])
    grads = [net[i].weight.grad().asnumpy().copy() for i in (0, 1)]
    step = sgd.LinearSgd(config, COUNTS)
    step.cap = 4.0  # the root is scored at 6 positions
    step.update(trainer, batch)
    rows, positions = sgd.row_positions(batch)
    scale = np.ones(8)
    scale[rows] = np.minimum(1, 4.0 / np.maximum(positions, 1e-9))
    assert scale.min() == pytest.approx(4 / 6)
    np.testing.assert_allclose(net[0].weight.data().asnumpy(), before[0] - 0.05 * grads[0],
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(net[1].weight.data().asnumpy(),
                               before[1] - 0.05 * grads[1] * scale[:, None], rtol=1e-5, atol=1e-7)
    assert getattr(trainer._optimizer, sgd.DONE) == batch.rows == 3
    assert step.rate(3) < 0.05  # the next step's rate has fallen


def test_sgd_is_the_default_for_skipgram_hs_on_one_machine_only():
    pick = {(m, loss, kv): resolved(Config(model=m, loss=loss, kvstore=kv))
            for m in ("skipgram", "cbow") for loss in ("ns", "hs")
            for kv in ("device", "dist_sync")}
    assert {k: (c.optimizer, c.lr) for k, c in pick.items() if c.optimizer == "sgd"} == \
        {("skipgram", "hs", "device"): ("sgd", 0.05)}
    assert all(c.lr == 0.002 for c in pick.values() if c.optimizer == "adam")
    assert resolved(Config(model="cbow", optimizer="sgd", lr=0.01)).lr == 0.01


@pytest.mark.parametrize("settings,message", [
    (dict(kvstore="dist_sync"), "--optimizer sgd works on one machine"),
    (dict(optimizer="rmsprop"), "--optimizer 'rmsprop': expected one of adam, sgd"),
])
def test_sgd_where_it_cannot_run_is_a_usage_error(settings, message):
    with pytest.raises(UsageError, match=message.replace("'", ".")):
        check(Config(**{"optimizer": "sgd", "loss": "hs", **settings}))


def test_cli_trains_hs_by_sgd_and_resume_keeps_the_runs_optimizer(tmp_path):
    wd = tmp_path / "work"
    dataset.save(encode(planted_sentences(n_sentences=200), min_count=1), wd)
    common = ["--workdir", str(wd), "--device", "cpu", "--embed-size", "8", "--subsample", "0"]
    result = CliRunner().invoke(cli, ["train", "--epochs", "1", "--loss", "hs",
                                      "--optimizer", "adam", "--dense-grad", *common])
    assert result.exit_code == 0, result.output
    settings = next(line for line in info.format_lines(info.describe(wd))
                    if line.startswith("settings"))
    assert "optimizer adam, lr 0.002" in settings
    result = CliRunner().invoke(cli, ["train", "--resume", "--epochs", "2", "--workdir", str(wd)])
    assert result.exit_code == 0, result.output  # the run's adam, not today's default sgd
    result = CliRunner().invoke(cli, ["train", "--resume", "--epochs", "3", "--optimizer", "sgd",
                                      "--workdir", str(wd)])
    assert result.exit_code != 0
    assert "--optimizer is 'sgd' but the checkpoint has 'adam'" in result.output


def test_lazy_sgd_on_row_sparse_gradients_matches_dense_sgd(tmp_path):
    """The cap scales a row_sparse gradient by the rows the batch looked up (no wait for the
    device): the same steps as on a dense gradient."""
    ds = encode(planted_sentences(n_sentences=300), min_count=1)
    tables = {}
    for sparse in (True, False):
        wd = tmp_path / str(sparse)
        config = Config(workdir=str(wd), epochs=2, batch_size=64, embed_size=8, window=2,
                        subsample=0.0, seed=3, device="cpu", loss="hs", sparse_grad=sparse)
        record = train.train(config, ds)
        assert record["config"]["optimizer"] == "sgd"
        assert record["config"]["sparse_grad"] is sparse
        tables[sparse] = Vectors.load(wd).matrix
    # the root is on every path, scored at least once per center: 64 > 50, capped each step
    assert config.batch_size > sgd.NODE_CAP
    np.testing.assert_allclose(tables[True], tables[False], rtol=1e-4, atol=1e-6)


def test_a_checkpoint_from_before_the_optimizer_setting_resumes_with_adam(tmp_path):
    """Runs saved before --optimizer existed trained skip-gram hs by adam: they go on so,
    though a new run of the same settings would take sgd."""
    import json

    wd = tmp_path / "work"
    dataset.save(encode(planted_sentences(n_sentences=200), min_count=1), wd)
    common = ["--workdir", str(wd), "--device", "cpu", "--embed-size", "8", "--subsample", "0"]
    result = CliRunner().invoke(cli, ["train", "--epochs", "1", "--loss", "hs",
                                      "--optimizer", "adam", *common])
    assert result.exit_code == 0, result.output
    states = list(wd.glob("checkpoints/*/state.json"))
    assert states
    for path in states:  # as a checkpoint written before the setting existed
        state = json.loads(path.read_text())
        del state["config"]["optimizer"]
        path.write_text(json.dumps(state))
    result = CliRunner().invoke(cli, ["train", "--resume", "--epochs", "2", "--workdir", str(wd)])
    assert result.exit_code == 0, result.output
    run = json.loads((wd / "run.json").read_text())
    assert run["config"]["optimizer"] == "adam" and len(run["epochs"]) == 2


def test_the_memory_check_counts_no_optimizer_state_for_sgd():
    from w2v_cli.limits import memory_needs

    counts = np.arange(1, 1001)
    tables = {(opt, sparse): memory_needs(Config(optimizer=opt, sparse_grad=sparse,
                                                 embed_size=10), counts, 5000)[0]
              for opt in ("adam", "sgd") for sparse in (True, False)}
    table = 1000 * 10 * 4  # one (V, E) float32 table
    assert {k: n // table for k, (n, _, _) in tables.items()} == {
        ("adam", True): 6, ("adam", False): 8, ("sgd", True): 2, ("sgd", False): 4}
    assert "plain SGD keeps no other state" in tables["sgd", True][1]
