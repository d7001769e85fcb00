"""Parameter-server step cost, dense tables against row-sparse ones (issue 22, item 1).

    w2v launch -n 2 -- python benchmarks/dist_rows.py --mode sparse --vocab 200000

Run as each worker of a ``w2v launch`` job: skip-gram steps with w2v's default shape
(512 centers, 10 contexts and 50 noise words each, 100 dimensions, adam on the servers)
over Zipf-distributed ids drawn before the clock starts, so only forward, backward, push
and pull are timed. Prints one line per worker: steps/s, centers/s, the distinct rows a
step touches in each table and the bytes a dense step moves against a row-sparse one.

``dense``: ``nn.Embedding``; every step pushes and pulls both whole tables.
``sparse``: ``gluon.contrib.nn.SparseEmbedding``: row-sparse weights kept on the servers,
the rows a batch reads pulled with ``row_sparse_pull``, row-sparse gradients pushed, lazy
adam on the servers. Two quirks of MXNet 1.9.1 this script works around or avoids:
- with sparse weights the kvstore is set up by the first pull, before ``trainer.step``
  sets the gradient scale, and Gluon then refuses any scale: pass ``rescale_grad=1/B``
  to the optimizer and call ``step(1)``;
- ``nn.Embedding(sparse_grad=True)`` (dense weight, sparse gradient) on a dist kvstore
  aborts in ps-lite ("copying size mismatch"), so it is not a mode here.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

CENTERS, CONTEXTS, NOISE, EMBED = 512, 10, 50, 100
WARMUP = 2


def draw(cdf: np.ndarray, shape, rng) -> np.ndarray:
    """Ids drawn from the distribution whose cumulative sum is ``cdf``."""
    return np.minimum(np.searchsorted(cdf, rng.random(shape)), cdf.size - 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["dense", "sparse"], required=True)
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()

    import mxnet as mx
    from mxnet import autograd, gluon, nd

    kv = mx.kv.create("dist_sync")
    rng = np.random.default_rng(kv.rank)
    freq = 1.0 / np.arange(1, args.vocab + 1)
    words, noise = np.cumsum(freq / freq.sum()), np.cumsum(freq ** 0.75 / (freq ** 0.75).sum())
    batches = [(draw(words, CENTERS, rng),
                np.concatenate([draw(words, (CENTERS, CONTEXTS), rng),
                                draw(noise, (CENTERS, NOISE), rng)], axis=1))
               for _ in range(args.steps + WARMUP)]

    mx.random.seed(0)
    net = gluon.nn.Sequential()
    for _ in range(2):
        net.add(gluon.contrib.nn.SparseEmbedding(args.vocab, EMBED) if args.mode == "sparse"
                else gluon.nn.Embedding(args.vocab, EMBED))
    net.initialize(mx.init.Uniform(0.07))
    trainer = gluon.Trainer(net.collect_params(), "adam",
                            {"learning_rate": 0.002, "rescale_grad": 1.0 / CENTERS}, kvstore=kv)
    loss_fn = gluon.loss.SigmoidBCELoss()
    width = CONTEXTS + NOISE
    label = nd.array(np.tile(np.r_[np.ones(CONTEXTS), np.zeros(NOISE)], (CENTERS, 1)))
    start = 0.0
    for s, (center, items) in enumerate(batches):
        if s == WARMUP:
            nd.waitall()  # before reading the clock
            start = time.perf_counter()
        c, it = nd.array(center).reshape((CENTERS, 1)), nd.array(items)
        with autograd.record():
            pred = nd.batch_dot(net[0](c), net[1](it), transpose_b=True)
            loss = loss_fn(pred.reshape((CENTERS, width)), label).sum()
        loss.backward()
        trainer.step(1)
        loss.wait_to_read()
    nd.waitall()
    seconds = time.perf_counter() - start
    rows = np.mean([(np.unique(c).size, np.unique(i).size) for c, i in batches[WARMUP:]], axis=0)
    dense = 2 * args.vocab * EMBED * 4
    sparse = rows.sum() * (EMBED * 4 + 8)  # float32 rows and their int64 ids
    print(f"worker {kv.rank}/{kv.num_workers}: {args.mode} vocab {args.vocab:,}: "
          f"{args.steps / seconds:.2f} steps/s, {CENTERS * args.steps / seconds:,.0f} centers/s; "
          f"rows a step: center {rows[0]:,.0f}, context {rows[1]:,.0f}; push per step (pull "
          f"alike): dense {dense / 1e6:.1f} MB, row-sparse {sparse / 1e6:.2f} MB", flush=True)


if __name__ == "__main__":
    main()
