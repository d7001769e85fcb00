"""Several machines: shards, the step budget, the launcher, and a real 2-worker dist_sync job."""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from w2v_cli import dataset, distributed, launch, params, sampling
from w2v_cli.config import Config
from w2v_cli.stream import EpochStream
from w2v_cli.errors import LaunchError, UsageError

from conftest import encode, planted_sentences


def test_shards_are_contiguous_disjoint_and_balanced_by_tokens():
    # sentence lengths 5, 1, 1, 1, 4, 4: 16 tokens
    offsets = np.array([0, 5, 6, 7, 8, 12, 16], dtype=np.int64)
    assert [distributed.shard_bounds(offsets, r, 2) for r in range(2)] == [(0, 4), (4, 6)]
    assert [distributed.shard_bounds(offsets, r, 3) for r in range(3)] == [(0, 1), (1, 5), (5, 6)]
    # more workers than sentences: some shards are empty, still disjoint and covering
    bounds = [distributed.shard_bounds(offsets, r, 8) for r in range(8)]
    assert bounds[0][0] == 0 and bounds[-1][1] == 6
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    with pytest.raises(UsageError):
        distributed.shard_bounds(offsets, 2, 2)


def test_shard_rebases_offsets_and_views_ids():
    ds = encode(["a b c", "b c", "a a a a"], min_count=1)
    part = distributed.shard(ds, 1, 3)
    assert part.offsets.tolist() == [0, 2, 6]
    assert part.sentences() == [["b", "c"], ["a", "a", "a", "a"]]
    assert distributed.ids_sha1(part.ids) == distributed.ids_sha1(ds.ids[3:].copy())


def test_expected_centers_matches_the_sampler():
    ds = encode(planted_sentences(n_sentences=400, length=3), min_count=1)
    # t = 0: every token of a sentence of 2+ tokens is a center
    assert distributed.expected_centers(ds.ids, ds.offsets, ds.vocab.counts, 0.0) == ds.ids.size
    t = 1e-2  # keeps about a third of each word: many sentences drop below 2 tokens
    expected = distributed.expected_centers(ds.ids, ds.offsets, ds.vocab.counts, t,
                                            chunk_tokens=100)
    rng = np.random.default_rng(0)
    drawn = []
    for _ in range(200):
        kept, off = sampling.subsample(ds.ids, ds.offsets, ds.vocab.counts, t, rng)
        drawn.append(sampling.windows(kept, off, 1, rng).centers.size)
    kept = np.minimum(1, np.sqrt(t * ds.vocab.counts[1:].sum() / ds.vocab.counts[ds.ids]))
    assert expected < 0.9 * kept.sum()  # short sentences matter: a lone kept token is no center
    assert abs(np.mean(drawn) - expected) < 0.02 * expected


def test_fixed_step_stream_draws_again_when_short():
    ds = encode(["a b c d e"] * 4, min_count=1)  # 20 centers a pass
    config = Config(batch_size=8, subsample=0, window=1, negatives=1)
    stream = EpochStream(ds, ds.vocab.counts, config, np.random.default_rng(0), steps=6)
    got = list(stream)  # 48 rows: two full passes and part of a third
    assert [b.center.shape[0] for b in got] == [8] * 6
    centers = np.concatenate([b.center for b in got])
    assert np.bincount(centers, minlength=6)[1:].min() >= 8  # each word twice a pass


def test_make_worker_without_the_dmlc_environment_says_how_to_launch(monkeypatch):
    for v in ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT", "DMLC_NUM_SERVER",
              "DMLC_NUM_WORKER"):
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(UsageError, match="w2v launch"):
        distributed.make_worker(Config(kvstore="dist_sync"))
    assert not distributed.make_worker(Config(kvstore="device")).distributed


def test_launch_memory_counts_the_processes_started_here():
    from w2v_cli.launch import PROCESS_BYTES, check_memory

    check_memory(2, 1, available=4 * PROCESS_BYTES)  # scheduler, server, 2 workers: fits
    with pytest.raises(UsageError, match=r"^4 processes on this machine need at least 256\.0 "
                       r"MiB of memory .* more than the 255\.0 MiB available"):
        check_memory(2, 1, available=4 * PROCESS_BYTES - (1 << 20))
    check_memory(1000, 10, hosts=["a", "b"], available=PROCESS_BYTES)  # only the scheduler


def test_plan_sets_the_dmlc_environment_for_every_role():
    nodes = launch.plan(["w2v", "train"], num_workers=2, num_servers=1, port=9123)
    assert [n.name for n in nodes] == ["scheduler", "server-0", "worker-0", "worker-1"]
    for n in nodes:
        assert n.env == {"DMLC_ROLE": n.role, "DMLC_PS_ROOT_URI": "127.0.0.1",
                         "DMLC_PS_ROOT_PORT": "9123", "DMLC_NUM_SERVER": "1",
                         "DMLC_NUM_WORKER": "2"}
        assert n.host is None
    assert nodes[2].argv == ["w2v", "train"]
    assert nodes[0].argv[1:] == ["-c", launch.SERVE_CODE]
    with pytest.raises(UsageError):
        launch.plan([], 2)


def test_plan_spreads_over_hosts_through_ssh(tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# cluster\nnode1\n\nnode2  # second\n")
    hosts = launch.read_hosts(hostfile)
    assert hosts == ["node1", "node2"]
    nodes = launch.plan(["w2v", "train", "--workdir", "my work"], 3, 1, port=9000,
                        root_uri="10.0.0.1", hosts=hosts, env={"DMLC_INTERFACE": "eth0"})
    assert [(n.name, n.host) for n in nodes] == [
        ("scheduler", None), ("server-0", "node1"), ("worker-0", "node2"),
        ("worker-1", "node1"), ("worker-2", "node2")]
    argv = launch.ssh_argv(nodes[2], "/shared/w2v")
    assert argv[:2] == ["ssh", "-o"] and argv[-2] == "node2"
    assert argv[-1] == ("cd /shared/w2v && env DMLC_INTERFACE=eth0 DMLC_NUM_SERVER=1 "
                        "DMLC_NUM_WORKER=3 "
                        "DMLC_PS_ROOT_PORT=9000 DMLC_PS_ROOT_URI=10.0.0.1 DMLC_ROLE=worker "
                        "w2v train --workdir 'my work'")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pids(log_dir):
    return [int(p.read_text()) for p in log_dir.glob("*.pid")]


def test_run_stops_every_process_when_a_worker_fails(tmp_path):
    # Each node records its pid, then the server sleeps; worker-1 fails.
    rec = "import os,sys,time; open(sys.argv[1],'w').write(str(os.getpid())); "
    nodes = [launch.Node("server", 0, [sys.executable, "-c", rec + "time.sleep(60)",
                                       str(tmp_path / "s.pid")]),
             launch.Node("worker", 0, [sys.executable, "-c", rec + "time.sleep(60)",
                                       str(tmp_path / "w0.pid")]),
             # worker-1 fails once the others are surely running (their pid files exist)
             launch.Node("worker", 1, [sys.executable, "-c", rec + (
                 "import pathlib; d = pathlib.Path(sys.argv[1]).parent\n"
                 "while len(list(d.glob('*.pid'))) < 3: time.sleep(0.05)\n"
                 "sys.exit(3)"), str(tmp_path / "w1.pid")])]
    start = time.monotonic()
    with pytest.raises(LaunchError, match="worker-1 exited with status 3"):
        launch.run(nodes, timeout=30, log_dir=tmp_path / "logs")
    assert time.monotonic() - start < 25
    pids = _pids(tmp_path)
    assert len(pids) == 3 and not any(map(_alive, pids))


def test_a_thread_that_cannot_start_stops_the_job_with_an_error(monkeypatch):
    """Without --log-dir a thread passes each worker's output on; when the system has no
    thread left for worker-1, the job stops (worker-0 and worker-1 too) with LaunchError."""
    nodes = [launch.Node("worker", i, [sys.executable, "-c", "import time; time.sleep(60)"])
             for i in range(2)]
    real_start, started, procs = launch.threading.Thread.start, [], []

    def start(thread):
        if started:
            raise RuntimeError("can't start new thread")
        started.append(thread)
        real_start(thread)

    class Recorded(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            procs.append(self)
    monkeypatch.setattr(launch.threading.Thread, "start", start)
    monkeypatch.setattr(launch.subprocess, "Popen", Recorded)
    with pytest.raises(LaunchError, match=r"^cannot pass on the output of worker-1: can't start "
                       r"new thread \(too many processes"):
        launch.run(nodes, timeout=30)
    assert len(procs) == 2 and all(p.poll() is not None for p in procs)  # stopped, not running


def test_run_stops_every_process_at_the_timeout(tmp_path):
    rec = "import os,sys,time; open(sys.argv[1],'w').write(str(os.getpid())); time.sleep(60)"
    nodes = [launch.Node("worker", i, [sys.executable, "-c", rec, str(tmp_path / f"{i}.pid")])
             for i in range(2)]
    with pytest.raises(LaunchError, match="ran out of time; still running: worker-0, worker-1"):
        launch.run(nodes, timeout=4, log_dir=tmp_path / "logs")
    pids = _pids(tmp_path)
    assert len(pids) == 2 and not any(map(_alive, pids))


def _launch(wd, logs, *options, timeout=150, servers=1, env=None) -> tuple[list, list]:
    """A real parameter-server job over 127.0.0.1: scheduler, ``servers`` servers and 2
    workers running ``w2v train --kvstore dist_sync --device cpu *options`` in ``wd``.
    Returns the launcher's summary and the run records of rank 0 and rank 1."""
    worker = [sys.executable, "-m", "w2v_cli", "train", "--workdir", str(wd),
              "--kvstore", "dist_sync", "--device", "cpu", *options]
    nodes = launch.plan(worker, num_workers=2, num_servers=servers, env=env)
    try:
        results = launch.run(nodes, timeout=timeout, log_dir=logs)
    except LaunchError as e:
        text = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in logs.glob("*.log"))
        pytest.fail(f"{e}\n{text}")
    return results, [json.loads((wd / name).read_text())
                     for name in ("run.json", "run.rank1.json")]


@pytest.mark.parametrize("grad", [(), ("--dense-grad",)], ids=["row-sparse", "dense"])
def test_two_workers_one_server_dist_sync_on_loopback(tmp_path, grad):
    """A real parameter-server job: by default row-sparse tables on the server."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(planted_sentences(n_sentences=400)) + "\n", encoding="utf-8")
    wd = tmp_path / "work"
    ds = dataset.prepare(Config(workdir=str(wd), corpus=(str(corpus),), min_count=1))
    logs = tmp_path / "logs"
    results, records = _launch(wd, logs, "--epochs", "3", "--batch-size", "32",
                               "--embed-size", "8", "--subsample", "0", "--lr", "0.01", *grad)
    sparse = not grad
    assert all(r["config"]["sparse_grad"] is sparse for r in records)
    # the launcher's summary: each worker's final tokens/sec, by rank; progress lines say whose
    assert [(r["rank"], r["tokens_per_sec"]) for r in results] == [
        (rec["worker"]["rank"], rec["final"]["tokens_per_sec"]) for rec in records]
    for r in range(2):
        log = (logs / f"worker-{r}.log").read_text()
        assert "\r" not in log and "/2: epoch 3/3  batch" in log, log
    shards = [r["worker"] for r in records]
    assert [s["rank"] for s in shards] == [0, 1]
    assert all(s["num_workers"] == 2 and s["kvstore"] == "dist_sync" for s in shards)
    # disjoint shards covering the corpus, each what that worker hashed as its ids
    (a0, b0), (a1, b1) = shards[0]["sentences"], shards[1]["sentences"]
    assert (a0, b1) == (0, ds.n_sentences) and b0 == a1 and 0 < b0 < ds.n_sentences
    for s, (a, b) in zip(shards, ((a0, b0), (a1, b1))):
        own = np.asarray(ds.ids[ds.offsets[a]:ds.offsets[b]])
        assert s["ids_sha1"] == distributed.ids_sha1(own) and s["tokens"] == own.size
    assert shards[0]["tokens"] + shards[1]["tokens"] == ds.ids.size
    # identical parameters: worker 1's digest is that of the model.params rank 0 wrote
    tables = params.load_tables(wd, len(ds.vocab))
    saved = distributed.tables_sha1({"0.weight": tables["center"], "1.weight": tables["context"]})
    assert shards[0]["params_sha1"] == shards[1]["params_sha1"] == saved
    assert not (wd / "model.rank1.params").exists()
    # the rows a row-sparse step moved: at most a batch's 32 centers, at most the vocabulary
    for s in shards:
        rows = s.get("rows_per_step")
        assert (rows is not None) is sparse
        if sparse:
            assert 1 < rows["center"] <= 32 and 1 < rows["context"] <= len(ds.vocab), rows
    # the loss falls on both workers, every epoch
    for r in records:
        losses = [e["loss"] for e in r["epochs"]]
        assert losses[0] > losses[1] > losses[2] and losses[2] < 0.9 * losses[0], losses
        assert len({e["tokens"] for e in r["epochs"]}) == 1


def test_row_sparse_tables_start_as_the_dense_ones():
    from w2v_cli import arrays
    from w2v_cli.backend import mxnet
    from w2v_cli.model import build_net, table

    mx = mxnet()
    starts = []
    for sparse, row_sparse in ((False, False), (True, False), (True, True)):
        mx.random.seed(3)
        with arrays.scope(sparse):
            net = build_net(50, 4, [mx.cpu()], sparse, row_sparse_weights=row_sparse)
            if row_sparse:  # its rows are read through a trainer's kvstore
                mx.gluon.Trainer(net.collect_params(), "adam", kvstore="local")
            starts.append([table(net, i, mx.cpu()) for i in (0, 1)])
    assert isinstance(net[0], mx.gluon.contrib.nn.SparseEmbedding)
    for tables in starts[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(starts[0], tables))
    assert not np.array_equal(starts[0][0], starts[0][1])


def _planted_job(tmp_path, *options, **launch) -> list:
    """2 workers on the planted corpus (min count 1) with ``options``; checks that they
    trained row-sparse tables, agree on every parameter and recover the planted clusters
    (the nearest word of >= 90% of words is in its cluster). Returns both run records."""
    from w2v_cli.vectors import Vectors

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(planted_sentences()) + "\n", encoding="utf-8")
    wd = tmp_path / "work"
    dataset.prepare(Config(workdir=str(wd), corpus=(str(corpus),), min_count=1))
    _, records = _launch(wd, tmp_path / "logs", "--embed-size", "16", "--window", "2",
                         "--subsample", "0", "--lr", "0.01", "--seed", "1", *options, **launch)
    assert all(r["config"]["sparse_grad"] is True for r in records)
    assert records[0]["worker"]["params_sha1"] == records[1]["worker"]["params_sha1"]
    vectors = Vectors.load(wd)
    words = vectors.vocab.tokens[1:]
    hits = sum(vectors.most_similar(w, 1)[0][0][:2] == w[:2] for w in words)
    assert hits / len(words) >= 0.9, hits
    return records


def test_two_workers_recover_planted_clusters_with_tables_split_over_two_servers(tmp_path):
    """MXNet splits an array bigger than MXNET_KVSTORE_BIGARRAY_BOUND elements by rows over
    the servers: a bound of 64 splits the (33, 16) tables here as a 1M-word table would be."""
    _planted_job(tmp_path, "--epochs", "4", "--batch-size", "32", "--negatives", "3",
                 servers=2, env={"MXNET_KVSTORE_BIGARRAY_BOUND": "64"})


def test_two_workers_train_cbow_with_hierarchical_softmax_on_row_sparse_tables(tmp_path):
    """CBOW's mixed context rows and the Huffman paths go through the eager loss of the
    row-sparse path as skip-gram's do: the workers agree and the clusters come out."""
    records = _planted_job(tmp_path, "--epochs", "3", "--batch-size", "64",
                           "--model", "cbow", "--loss", "hs")
    for r in records:
        assert r["config"]["model"] == "cbow" and r["config"]["loss"] == "hs"
        losses = [e["loss"] for e in r["epochs"]]
        assert losses[-1] < losses[0], losses


@pytest.mark.ptb
def test_two_workers_on_ptb_reach_one_process_loss_in_one_epoch(ptb_archive, tmp_path):
    """Issue 22: within 0.02 of one process's loss after 1 epoch. Like with like: the defaults
    on both sides (noise groups in buckets), and the same examples per update: each dist step
    is both workers' 512 centers, so one process takes batches of 1024 (as many updates an
    epoch; Adam follows their count, not their scale)."""
    from w2v_cli.train import train

    wd = tmp_path / "work"
    dataset.prepare(Config(workdir=str(wd), data_dir=str(ptb_archive.parent)))
    one = tmp_path / "one"
    shutil.copytree(wd, one)
    _, records = _launch(wd, tmp_path / "logs", "--epochs", "1", "--batch-size", "512")
    ds = dataset.load(one)
    single = train(Config(workdir=str(one), device="cpu", epochs=1, batch_size=1024), ds)
    resolved = {k: single["config"][k] for k in ("sparse_grad", "noise_group", "bucket")}
    assert resolved == {"sparse_grad": True, "noise_group": 8, "bucket": True}  # as the workers'
    for r in records:
        assert {k: r["config"][k] for k in resolved} == resolved
        assert abs(r["final"]["loss"] - single["final"]["loss"]) < 0.02, (
            r["final"]["loss"], single["final"]["loss"])


def test_cli_launch_and_train_errors(tmp_path, workdir):
    from click.testing import CliRunner

    from w2v_cli.cli import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["launch", "--help"])
    assert result.exit_code == 0 and "--hostfile" in result.output
    # a worker that fails: the job stops, the error names it, the exit code is LaunchError's
    result = runner.invoke(cli, ["launch", "-n", "1", "--timeout", "60", "--log-dir",
                                 str(tmp_path / "logs"), "--", sys.executable, "-c",
                                 "import sys; sys.exit(3)"])
    assert result.exit_code == 11, result.output
    assert "Error: worker-0 exited with status 3" in result.output
    assert {p.name for p in (tmp_path / "logs").iterdir()} == {"scheduler.log", "server-0.log",
                                                               "worker-0.log"}
    # a scheduler address that is not this machine's: refused before anything starts
    result = runner.invoke(cli, ["launch", "-n", "1", "--root-uri", "192.0.2.1",  # TEST-NET-1
                                 "--log-dir", str(tmp_path / "logs2"), "--", "true"])
    assert result.exit_code == 2, result.output
    assert ("Error: --root-uri 192.0.2.1: not an address of this machine, where the scheduler "
            "runs (cannot listen there: Cannot assign requested address)") in result.output
    assert not (tmp_path / "logs2").exists()
    # more processes than this machine has memory for: refused before anything starts
    result = runner.invoke(cli, ["launch", "-n", "10000000", "--log-dir",
                                 str(tmp_path / "logs3"), "--", "true"])
    assert result.exit_code == 2, result.output
    assert "Error: 10000002 processes on this machine need at least 610.4 TiB" in result.output
    assert not (tmp_path / "logs3").exists()
    # train as a dist worker, but not started by a launcher
    dataset.save(encode(["a b a b"], 1), workdir)
    env = {v: None for v in ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT",
                           "DMLC_NUM_SERVER", "DMLC_NUM_WORKER")}
    result = runner.invoke(cli, ["train", "--kvstore", "dist_sync"], env=env)
    assert result.exit_code == 2 and "w2v launch -n WORKERS" in result.output


def test_empty_dmlc_role_is_refused_before_mxnet_would_start_serving(monkeypatch):
    from w2v_cli import backend
    from w2v_cli.errors import BackendError

    backend.mxnet()
    monkeypatch.delitem(sys.modules, "mxnet")  # as before the first import
    monkeypatch.setenv("DMLC_ROLE", "")
    with pytest.raises(BackendError, match="DMLC_ROLE is set but empty"):
        backend.mxnet()


def test_memory_a_dist_worker_needs_leaves_adam_to_the_servers():
    from w2v_cli.limits import memory_needs

    counts = np.full(1000, 5, dtype=np.int64)

    def tables(**kw):
        (size, what, _), *_ = memory_needs(Config(embed_size=10, **kw), counts, 5000)
        return size // (1000 * 10 * 4), what

    assert tables(sparse_grad=True)[0] == 6 and tables(sparse_grad=False)[0] == 8
    assert tables(kvstore="dist_sync", sparse_grad=True)[0] == 2
    size, what = tables(kvstore="dist_sync", sparse_grad=False)
    assert size == 4 and "Adam's moments are the servers'" in what


def test_the_servers_adam_catches_pushed_center_rows_up_to_dense_adam():
    """ServerAdam on a row_sparse table: a row a step pushes ends that step where dense Adam
    (zero gradient on the rows not pushed) has it; the others wait for their next push."""
    from w2v_cli.backend import mxnet
    from w2v_cli.server_adam import ServerAdam

    mx = mxnet()
    nd = mx.nd
    v, e = 20, 4
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((v, e)).astype(np.float32)
    pushes = [np.sort(rng.choice(v, size=rng.integers(1, 6), replace=False)) for _ in range(30)]
    grads = [rng.standard_normal((rows.size, e)).astype(np.float32) for rows in pushes]
    server = ServerAdam(caught_up=(0,), learning_rate=0.01, rescale_grad=0.5)
    dense = mx.optimizer.Adam(learning_rate=0.01, rescale_grad=0.5, lazy_update=False)
    w_server, w_dense = nd.array(w0).tostype("row_sparse"), nd.array(w0)
    s_server, s_dense = server.create_state(0, w_server), dense.create_state(0, w_dense)
    for rows, g in zip(pushes, grads):
        idx = nd.array(rows, dtype="int64")
        server.update(0, w_server, nd.sparse.row_sparse_array((nd.array(g), idx), shape=(v, e)),
                      s_server)
        full = np.zeros((v, e), np.float32)
        full[rows] = g
        dense.update(0, w_dense, nd.array(full), s_dense)
    last = pushes[-1]
    got, want = w_server.asnumpy(), w_dense.asnumpy()
    np.testing.assert_allclose(got[last], want[last], rtol=1e-5, atol=1e-6)
    for a, b in zip(s_server, s_dense):
        np.testing.assert_allclose(a.asnumpy()[last], b.asnumpy()[last], rtol=1e-4, atol=1e-9)
    behind = np.setdiff1d(np.arange(v), last)  # their drift since their last push is pending
    assert not np.allclose(got[behind], want[behind], atol=1e-4)
    # a lazy table (index 1 here) is MXNet's lazy adam: rows not pushed never move
    w_lazy = nd.array(w0).tostype("row_sparse")
    s_lazy = server.create_state(1, w_lazy)
    server.update(1, w_lazy, nd.sparse.row_sparse_array(
        (nd.array(grads[0]), nd.array(pushes[0], dtype="int64")), shape=(v, e)), s_lazy)
    untouched = np.setdiff1d(np.arange(v), pushes[0])
    np.testing.assert_array_equal(w_lazy.asnumpy()[untouched], w0[untouched])


def test_a_failing_server_optimizer_stops_its_server_with_a_message():
    """MXNet swallows an updater's exception and the job would train on with nothing
    updated; ServerAdam ends the server instead, so the launcher stops the job."""
    code = ("from w2v_cli.backend import mxnet; mx = mxnet()\n"
            "from w2v_cli.server_adam import ServerAdam\n"
            "opt = ServerAdam(caught_up=(0,))\n"
            "w = mx.nd.zeros((4, 2)).tostype('row_sparse')\n"
            "opt.update(0, w, 'not a gradient', opt.create_state(0, w))\n"
            "print('still running')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "still running" not in proc.stdout
    assert "error: the server's optimizer failed" in proc.stderr


def test_worker_records_of_another_job_go_when_a_run_finishes(tmp_path):
    from w2v_cli import train

    ds = encode(planted_sentences(n_sentences=120), min_count=1)
    wd = tmp_path / "w"
    dataset.save(ds, wd)
    for rank in (1, 2, 3):
        (wd / params.worker_record_name(rank)).write_text("{}\n")
    (wd / "run.rankx.json").write_text("not a rank\n")

    params.remove_worker_records(wd, 3)  # rank 0 of a 3-worker job keeps ranks 1 and 2
    assert sorted(p.name for p in wd.glob("run.rank*")) == [
        "run.rank1.json", "run.rank2.json", "run.rankx.json"]

    config = Config(workdir=str(wd), epochs=2, batch_size=64, embed_size=8, device="cpu")

    def fail(p):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # a run that does not finish leaves them
        train.train(config, ds, on_progress=fail)
    assert sorted(p.name for p in wd.glob("run.rank*")) == [
        "run.rank1.json", "run.rank2.json", "run.rankx.json"]
    train.train(config, ds)  # a one-machine run that finishes: no worker of it has a record
    assert sorted(p.name for p in wd.glob("run.rank*")) == ["run.rankx.json"]
