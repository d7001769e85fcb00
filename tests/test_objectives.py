"""--model skipgram|cbow and --loss ns|hs: the Huffman tree, each objective's loss against a
direct computation, planted clusters, exact resume and the refusals."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import encode, planted_sentences
from w2v_cli import batches as B
from w2v_cli import arrays, checkpoint, dataset, huffman, info, params, train
from w2v_cli.backend import mxnet
from w2v_cli.cli import cli
from w2v_cli.config import Config, check, resolved
from w2v_cli.errors import DataError, Interrupted, ResumeError, UsageError
from w2v_cli.examples import Rows
from w2v_cli.model import batch_loss, build_net
from w2v_cli.vectors import Vectors

mx = mxnet()
COMBINATIONS = [("skipgram", "ns"), ("skipgram", "hs"), ("cbow", "ns"), ("cbow", "hs")]


# --- the Huffman tree ----------------------------------------------------------------------

def test_huffman_codes_of_a_small_vocabulary_are_the_ones_worked_out_by_hand():
    # id:     0 (<unk>)  1  2  3  4  5
    # count:  99         5  3  2  1  1
    # <unk> is left out. Leaves from the rarest: 5 (1), 4 (1), 3 (2), 2 (3), 1 (5); the
    # smaller of each merge gets bit 0, the other bit 1; a leaf goes first only when
    # strictly smaller than the oldest inner node waiting.
    #   merge 0: 5 (1, bit 0) + 4 (1, bit 1)       -> node 0 (2)
    #   merge 1: node 0 (2, bit 0) + 3 (2, bit 1)  -> node 1 (4)   tie: the inner node first
    #   merge 2: 2 (3, bit 0) + node 1 (4, bit 1)  -> node 2 (7)
    #   merge 3: 1 (5, bit 0) + node 2 (7, bit 1)  -> node 3 (12), the root
    # Paths from the root, (node, bit of the branch taken):
    #   1: (3, 0)
    #   2: (3, 1) (2, 0)
    #   3: (3, 1) (2, 1) (1, 1)
    #   4: (3, 1) (2, 1) (1, 0) (0, 1)
    #   5: (3, 1) (2, 1) (1, 0) (0, 0)
    tree = huffman.build(np.array([99, 5, 3, 2, 1, 1]))
    assert tree.length.tolist() == [0, 1, 2, 3, 4, 4]
    np.testing.assert_array_equal(tree.nodes, [[0, 0, 0, 0], [3, 0, 0, 0], [3, 2, 0, 0],
                                               [3, 2, 1, 0], [3, 2, 1, 0], [3, 2, 1, 0]])
    np.testing.assert_array_equal(tree.codes, [[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0],
                                               [1, 1, 1, 0], [1, 1, 0, 1], [1, 1, 0, 0]])
    # the sigmoid's target at each node is 1 - code (word2vec.c: g = 1 - code - sigmoid(f))
    np.testing.assert_array_equal(tree.targets[4], [0, 0, 1, 0])
    assert tree.nodes.dtype == np.int32 and tree.codes.dtype == np.float32


def test_huffman_ties_between_words_go_by_id_and_the_tree_is_a_prefix_code():
    # Equal counts: the C tool's order (count descending, then id) makes the highest id the
    # rarest leaf, merged first with bit 0.
    tree = huffman.build(np.array([0, 1, 1, 1]))
    # merge 0: 3 (bit 0) + 2 (bit 1) -> node 0 (2); merge 1: 1 (1, bit 0) + node 0 -> root 1
    assert [tree.codes[w, :tree.length[w]].tolist() for w in (1, 2, 3)] == [[0], [1, 1], [1, 0]]
    rng = np.random.default_rng(0)
    counts = np.concatenate([[0], rng.integers(1, 50, 300)])
    tree = huffman.build(counts)
    codes = {tuple(tree.codes[w, :tree.length[w]]) for w in range(1, 301)}
    assert len(codes) == 300  # every word its own code
    assert all(c[:n] not in codes for c in codes for n in range(len(c)))  # none a prefix
    assert set(tree.nodes[tree.length > 0, 0]) == {298}  # every path starts at the root
    # the Huffman property: no code shorter than a rarer word's
    order = np.argsort(-counts[1:], kind="stable") + 1
    assert np.all(np.diff(tree.length[order]) >= 0)
    with pytest.raises(DataError, match="at least two words"):
        huffman.build(np.array([5, 3]))


# --- each objective's loss, against a direct computation ----------------------------------

def _rows():
    # 3 centers with 2, 1 and 3 contexts (ids of a vocabulary of 8)
    items = np.array([[2, 3, 0], [4, 0, 0], [5, 6, 7]], np.int32)
    n_ctx = np.array([2, 1, 3])
    return Rows(np.array([1, 7, 3], np.int32), items, n_ctx, n_ctx.copy())


def _bce(score, label):
    return np.log1p(np.exp(-np.abs(score))) + np.maximum(score, 0) - score * label


def _loss_of(batch, net):
    lent = [mx.np.array(x) for x in batch.arrays()]
    return batch_loss(net, batch, lent).item()


COUNTS = np.array([0, 40, 30, 20, 10, 8, 6, 3])


@pytest.mark.parametrize("grouping", [B.Padded(), B.Trimmed()])
def test_cbow_negatives_score_the_masked_mean_of_the_contexts(grouping):
    rows, net = _rows(), build_net(8, 4, mx.cpu())
    layout = B.Layout(grouping, B.CbowNegatives(COUNTS, 2), (0, 0))
    rng = np.random.default_rng(3)
    batch = layout.batch(rows, rng)
    v, u = (net[i].weight.data().asnumpy().astype(np.float64) for i in (0, 1))
    noise = B.sampling.draw(layout.objective.cdf, 2 * 3, np.random.default_rng(3))
    # one part (Padded) draws the 3 rows' noise in row order; check that case exactly
    expected = 0.0
    for r, (c, n) in enumerate(zip(rows.center, rows.n_ctx)):
        mean = v[rows.items[r, :n]].mean(axis=0)  # over the real contexts only
        words = [c] + noise[2 * r:2 * r + 2].tolist()
        for j, w in enumerate(words):
            if j and w == c:
                continue  # a noise word equal to the center weighs 0
            expected += _bce(mean @ u[w], float(j == 0)) / 3
    if isinstance(grouping, B.Padded):
        assert _loss_of(batch, net) == pytest.approx(expected, rel=1e-5)
    assert batch.mix.shape == (3, 1, 3) and batch.center.shape == (3, 3)
    np.testing.assert_allclose(batch.mix[:, 0].sum(axis=1), 1)


@pytest.mark.parametrize("grouping", [B.Padded(), B.Trimmed()])
def test_skip_gram_paths_give_the_sum_over_contexts_of_minus_log_p_center(grouping):
    rows, net = _rows(), build_net(8, 4, mx.cpu())
    batch = B.Layout(grouping, B.SkipGramPaths(COUNTS), (0, 0)).batch(rows)
    v, u = (net[i].weight.data().asnumpy().astype(np.float64) for i in (0, 1))
    tree = huffman.build(COUNTS)
    expected = 0.0
    for r, (c, n) in enumerate(zip(rows.center, rows.n_ctx)):
        for ctx in rows.items[r, :n]:  # each context's vector predicts the center's path
            d = tree.length[c]
            scores = u[tree.nodes[c, :d]] @ v[ctx]
            p = np.prod(np.where(tree.codes[c, :d] == 0, 1 / (1 + np.exp(-scores)),
                                 1 / (1 + np.exp(scores))))
            expected += -np.log(p)  # every (context, center) pair weighs 1
    assert _loss_of(batch, net) == pytest.approx(expected, rel=1e-5)
    assert len(batch.parts) == (1 if isinstance(grouping, B.Padded) else 3)


def test_cbow_paths_give_minus_log_p_center_given_the_mean():
    rows, net = _rows(), build_net(8, 4, mx.cpu())
    batch = B.Layout(B.Padded(), B.CbowPaths(COUNTS), (0, 0)).batch(rows)
    v, u = (net[i].weight.data().asnumpy().astype(np.float64) for i in (0, 1))
    tree = huffman.build(COUNTS)
    expected = 0.0
    for r, (c, n) in enumerate(zip(rows.center, rows.n_ctx)):
        mean, d = v[rows.items[r, :n]].mean(axis=0), tree.length[c]
        expected += sum(_bce(u[node] @ mean, t) for node, t in
                        zip(tree.nodes[c, :d], tree.targets[c, :d]))
    assert _loss_of(batch, net) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("grouping", [B.Padded(), B.Trimmed()])
def test_every_cbow_context_takes_the_whole_gradient_of_its_rows_mean(grouping, sparse):
    # The C tool's and gensim's update: the mean forward, each real context given dL/dmean
    # backward (not 1/n of it), padding (id 0 here) nothing. The rows' contexts are distinct,
    # so each context row's gradient is its one row's dL/dmean.
    rows = _rows()
    with arrays.scope(sparse):
        net = build_net(8, 4, mx.cpu(), sparse_grad=sparse)
        batch = B.Layout(grouping, B.CbowPaths(COUNTS), (0, 0)).batch(rows)
        lent = [arrays.on(x, mx.cpu()) for x in batch.arrays()]
        with mx.autograd.record():
            loss = batch_loss(net, batch, lent)
        loss.backward()
        grad = net[0].weight.grad()
        grad = (grad.tostype("default") if sparse else grad).asnumpy().astype(np.float64)
    v, u = (net[i].weight.data().asnumpy().astype(np.float64) for i in (0, 1))
    tree = huffman.build(COUNTS)
    expected = np.zeros_like(v)
    for r, (c, n) in enumerate(zip(rows.center, rows.n_ctx)):
        mean, d = v[rows.items[r, :n]].mean(axis=0), tree.length[c]
        nodes, targets = tree.nodes[c, :d], tree.targets[c, :d]
        d_mean = ((1 / (1 + np.exp(-(u[nodes] @ mean))) - targets)[:, None] * u[nodes]).sum(0)
        expected[rows.items[r, :n]] = d_mean  # every context the same, whole
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
    assert not grad[0].any()


# --- training --------------------------------------------------------------------------------

def _planted_config(tmp_path, model, loss, **kw):
    sgd = (model, loss) == ("skipgram", "hs")  # trained by sgd at its own default rate
    settings = dict(workdir=str(tmp_path), epochs=3, batch_size=64, embed_size=16, window=2,
                    negatives=3, subsample=0.0, lr=None if sgd else 0.01, seed=1,
                    device="cpu", log_interval=10, model=model, loss=loss)
    return Config(**{**settings, **kw})


@pytest.mark.parametrize("model,loss", COMBINATIONS)
def test_each_combination_recovers_planted_clusters(tmp_path, model, loss):
    ds = encode(planted_sentences(), min_count=1)
    record = train.train(_planted_config(tmp_path, model, loss), ds)
    losses = [e["loss"] for e in record["epochs"]]
    assert losses[-1] < losses[0]
    assert record["epochs"][0]["tokens"] == 2000 * 8
    assert record["config"]["model"] == model and record["config"]["loss"] == loss
    sgd = (model, loss) == ("skipgram", "hs")
    assert record["config"]["optimizer"] == ("sgd" if sgd else "adam")
    assert record["config"]["lr"] == (0.05 if sgd else 0.01)
    vectors = Vectors.load(tmp_path)
    words = vectors.vocab.tokens[1:]
    hits = sum(vectors.most_similar(w, 1)[0][0][:2] == w[:2] for w in words)
    assert hits / len(words) >= 0.9, hits


def _interrupt_at(epoch, batch):
    def on_progress(p):
        if (p.epoch, p.batch) == (epoch, batch) and not p.epoch_done:
            os.kill(os.getpid(), signal.SIGINT)
    return on_progress


@pytest.mark.parametrize("sparse,device", [(True, "cpu"), (False, "cpu"), (False, "cpu:0,1")])
@pytest.mark.parametrize("model,loss", COMBINATIONS)
def test_resume_is_exact_on_each_combination(tmp_path, model, loss, sparse, device):
    ds = encode(planted_sentences(n_sentences=120), min_count=1)
    runs = {}
    for name in ("whole", "resumed"):
        wd = tmp_path / name
        dataset.save(ds, wd)
        config = _planted_config(wd, model, loss, batch_size=160, embed_size=8, seed=7,
                                 lr=0.002, log_interval=1, sparse_grad=sparse, device=device)
        if name == "resumed":
            with pytest.raises(Interrupted):
                train.train(config, ds, on_progress=_interrupt_at(2, 3))
            runs[name] = train.train(config, ds, resume=True)
        else:
            runs[name] = train.train(config, ds)
    a, b = (params.load_tables(tmp_path / n, len(ds.vocab)) for n in ("whole", "resumed"))
    assert np.array_equal(a["center"], b["center"]) and np.array_equal(a["context"], b["context"])
    assert [e["loss"] for e in runs["resumed"]["epochs"]] == pytest.approx(
        [e["loss"] for e in runs["whole"]["epochs"]], rel=1e-6)


def test_resume_with_another_model_or_loss_is_refused(tmp_path):
    ds = encode(planted_sentences(n_sentences=120), min_count=1)
    dataset.save(ds, tmp_path)
    train.train(_planted_config(tmp_path, "cbow", "hs", epochs=1), ds)
    with pytest.raises(ResumeError, match="cannot resume: --model is 'skipgram' but the "
                                          "checkpoint has 'cbow'; --loss is 'ns' but the "
                                          "checkpoint has 'hs'"):
        train.train(_planted_config(tmp_path, "skipgram", "ns", epochs=2), ds, resume=True)
    # hierarchical softmax draws no noise: --negatives decides nothing there
    checkpoint.check_resume({**_planted_config(tmp_path, "cbow", "hs").to_dict(), "negatives": 9},
                            _planted_config(tmp_path, "cbow", "hs"),
                            *[checkpoint.dataset_fingerprint(ds)] * 2)


def test_resume_with_another_model_names_the_model_not_the_mix_it_makes(planted_workdir):
    """A skip-gram run has noise groups; --resume --model cbow would fail check()'s "noise
    groups need skip-gram" first unless the changed setting is named before."""
    wd = str(planted_workdir)
    common = ["--workdir", wd, "--device", "cpu", "--embed-size", "8"]
    result = CliRunner().invoke(cli, ["train", "--epochs", "1", *common])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["train", "--resume", "--epochs", "2", "--model", "cbow",
                                      "--workdir", wd])
    assert result.exit_code == 10, result.output
    assert ("Error: cannot resume: --model is 'cbow' but the checkpoint has 'skipgram'"
            in result.output)


def test_resume_with_too_few_epochs_says_where_the_checkpoint_stands(tmp_path):
    ds = encode(planted_sentences(n_sentences=120), min_count=1)
    dataset.save(ds, tmp_path)
    config = _planted_config(tmp_path, "skipgram", "ns", epochs=3, batch_size=160,
                             embed_size=8, log_interval=1)
    with pytest.raises(Interrupted):
        train.train(config, ds, on_progress=_interrupt_at(2, 1))  # inside epoch 2, 1 done
    with pytest.raises(ResumeError, match=r"--epochs 1 ends before the checkpoint, which "
                                          r"stands inside epoch 2 \(1 done\): give --epochs 2 "
                                          "or more"):
        train.train(_planted_config(tmp_path, "skipgram", "ns", epochs=1, batch_size=160,
                                    embed_size=8, log_interval=1), ds, resume=True)


def test_resuming_a_finished_run_says_there_is_nothing_to_train(planted_workdir):
    wd = str(planted_workdir)
    result = CliRunner().invoke(cli, ["train", "--epochs", "1", "--workdir", wd, "--device",
                                      "cpu", "--embed-size", "8"])
    assert result.exit_code == 0, result.output
    before = (planted_workdir / "model.params").read_bytes()
    result = CliRunner().invoke(cli, ["train", "--resume", "--workdir", wd])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("note: the run had done its 1 epoch: nothing was "
                                    "trained (give --epochs with more to go on)\n")
    assert (planted_workdir / "model.params").read_bytes() == before
    # a resume refused for another reason says only that
    result = CliRunner().invoke(cli, ["train", "--resume", "--epochs", "2", "--seed", "5",
                                      "--workdir", wd])
    assert result.exit_code == 10 and result.stderr.startswith("Error: cannot resume")


# --- settings and the command line ------------------------------------------------------------

def test_new_objectives_refuse_noise_groups():
    for model, loss in COMBINATIONS[1:]:
        check(Config(model=model, loss=loss, device="cpu:0,1"))  # split by groups
        with pytest.raises(UsageError, match="--noise-group works with --model skipgram "
                                             "--loss ns"):
            check(Config(model=model, loss=loss, noise_group=4))
    with pytest.raises(UsageError, match="--model 'glove'"):
        check(Config(model="glove"))


@pytest.fixture
def planted_workdir(tmp_path):
    wd = tmp_path / "work"
    dataset.save(encode(planted_sentences(n_sentences=200), min_count=1), wd)
    return wd


@pytest.mark.parametrize("option", [["--negatives", "3"], ["--noise-group", "4"],
                                    ["--group-noise", "4"]])
def test_noise_options_with_hs_are_a_usage_error(planted_workdir, option):
    result = CliRunner().invoke(cli, ["train", "--workdir", str(planted_workdir), "--loss", "hs",
                                      *option])
    assert result.exit_code == 2, result.output
    assert f"Error: {option[0]} does not apply with --loss hs" in result.output
    assert not (planted_workdir / "model.params").exists()


def test_cli_trains_cbow_hs_and_info_shows_it_and_resume_keeps_it(planted_workdir):
    wd = str(planted_workdir)
    common = ["--workdir", wd, "--device", "cpu", "--embed-size", "8", "--subsample", "0"]
    result = CliRunner().invoke(cli, ["train", "--epochs", "1", "--model", "cbow", "--loss", "hs",
                                      *common])
    assert result.exit_code == 0, result.output
    lines = info.format_lines(info.describe(planted_workdir))
    settings = next(line for line in lines if line.startswith("settings"))
    assert "model cbow, loss hs, embed-size 8" in settings and "negatives" not in settings
    result = CliRunner().invoke(cli, ["train", "--resume", "--epochs", "2", "--negatives", "2",
                                      "--workdir", wd])
    assert result.exit_code == 2 and "--negatives does not apply with --loss hs" in result.output
    result = CliRunner().invoke(cli, ["train", "--resume", "--epochs", "2", "--model",
                                      "skipgram", "--workdir", wd])
    assert result.exit_code != 0
    assert "--model is 'skipgram' but the checkpoint has 'cbow'" in result.output


def test_subsampling_defaults_by_loss_and_a_run_keeps_what_it_resolved_to(planted_workdir):
    picks = {(m, loss): resolved(Config(model=m, loss=loss)).subsample
             for m, loss in COMBINATIONS}
    assert picks == {("skipgram", "ns"): 1e-4, ("cbow", "ns"): 1e-4,
                     ("skipgram", "hs"): 2e-3, ("cbow", "hs"): 2e-3}
    assert resolved(Config(loss="hs", subsample=0.0)).subsample == 0.0  # given: kept
    wd = str(planted_workdir)
    common = ["--workdir", wd, "--device", "cpu", "--embed-size", "8"]
    result = CliRunner().invoke(cli, ["train", "--epochs", "1", "--loss", "hs", *common])
    assert result.exit_code == 0, result.output
    assert params.load_record(planted_workdir)["config"]["subsample"] == 2e-3
    settings = next(line for line in info.format_lines(info.describe(planted_workdir))
                    if line.startswith("settings"))
    assert "subsample 0.002" in settings
    result = CliRunner().invoke(cli, ["train", "--resume", "--epochs", "2", "--subsample",
                                      "1e-4", "--workdir", wd])
    assert result.exit_code != 0
    assert "--subsample is 0.0001 but the checkpoint has 0.002" in result.output
