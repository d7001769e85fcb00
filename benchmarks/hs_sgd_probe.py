"""Probe (issue 20): skip-gram with hierarchical softmax trained by plain SGD, as the C tool
and gensim train it, instead of adam. Not part of `make bench`; docs/objectives.md has
its figures.

    python benchmarks/hs_sgd_probe.py --rate 0.05 --node-cap 50 --gensim-start -- \\
        train --loss hs --dense-grad --epochs 5 --seed 0 --workdir DIR \\
        --eval-similarity SIMLEX_DEV ...

Everything after ``--`` is a `w2v` command line; the run is `w2v train` with four changes
patched in:

- the optimizer is Gluon's ``sgd`` whose rate starts at ``--rate`` per (context, center)
  pair and falls linearly to 1e-4 of it over the run (gensim's alpha 0.025 -> 0.0001);
- each pair weighs 1 (w2v weighs a center's contexts 1 / n_ctx);
- ``--node-cap N``: an inner node's summed gradient in a batch is scaled by
  min(1, N / its scored positions in the batch). A batch sums the updates the C tool makes
  one pair after another; for the root (in every path) that sum is thousands of pairs
  taken at one point, and at 0.05 a pair the run diverges without the cap;
- ``--gensim-start``: the first table uniform in +-0.5 / dim, the inner nodes 0 (gensim's
  and the C tool's start) instead of Gluon's +-0.07 for both.

The schedule needs the run's step count up front: ``--steps-per-epoch`` (671 for PTB with
the default batch of 512 centers). Dense gradients keep the probe simple (SGD without
momentum or decay is exact lazily too).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.05, help="SGD rate per pair at start")
    parser.add_argument("--node-cap", type=float, default=50.0, help="0: no cap")
    parser.add_argument("--gensim-start", action="store_true")
    parser.add_argument("--steps-per-epoch", type=int, default=671)
    parser.add_argument("--c-subsample", action="store_true",
                        help="keep w with sqrt(t/f) + t/f (the C tool's and gensim's), not sqrt(t/f)")
    parser.add_argument("--skip-saturated", type=float, default=0.0,
                        help="weigh 0 the positions whose |score| is at least this (the C tool "
                             "and gensim skip an inner node at |f| >= MAX_EXP = 6); 0: off")
    parser.add_argument("--cbow-whole-grad", action="store_true",
                        help="CBOW: every context word gets the whole gradient of the mean")
    parser.add_argument("w2v", nargs=argparse.REMAINDER, help="-- then a w2v command line")
    args = parser.parse_args()
    w2v_args = args.w2v[1:] if args.w2v[:1] == ["--"] else args.w2v
    patch(args, epochs_of(w2v_args))
    from w2v_cli.cli import cli

    cli(w2v_args)


def epochs_of(w2v_args: list) -> int:
    """The last --epochs on the command line (Click takes the last), else w2v's default."""
    values = [w2v_args[i + 1] for i, a in enumerate(w2v_args[:-1]) if a == "--epochs"]
    return int(values[-1]) if values else 5


def node_counts(b, vocab_size: int) -> np.ndarray:
    """(V,) float64: the weighted positions of each second-table row in batch ``b``."""
    counts, start = np.zeros(vocab_size), 0
    for words, g in b.parts:
        n = words.size * g
        scored = b.weight[start:start + n].reshape(*words.shape, g) > 0
        counts += np.bincount(words.ravel(), weights=scored.sum(2).ravel(), minlength=vocab_size)
        start += n
    return counts


def patch(args, epochs: int) -> None:
    from w2v_cli import batches, train
    from w2v_cli.backend import current_mxnet

    state = {"step": 0, "total": args.steps_per_epoch * epochs}

    def build(config, vocab_size, ctxs, kvstore):
        if config.sparse_grad:  # the cap multiplies a dense gradient by a (V, 1) column
            raise SystemExit("hs_sgd_probe.py: give w2v train --dense-grad")
        mx = current_mxnet()
        net = train.build_net(vocab_size, config.embed_size, ctxs, config.sparse_grad)
        if args.gensim_start:
            rng = np.random.default_rng(config.seed)
            bound = 0.5 / config.embed_size
            net[0].weight.set_data(mx.np.array(
                rng.uniform(-bound, bound, (vocab_size, config.embed_size)).astype(np.float32)))
            net[1].weight.set_data(mx.np.zeros((vocab_size, config.embed_size)))
        # trainer.step(rows) divides by the batch's centers: undo it, so the rate is per pair
        rate = args.rate * config.batch_size
        trainer = mx.gluon.Trainer(train.parameters(net), "sgd", {"learning_rate": rate},
                                   kvstore=kvstore)
        state.update(rate=rate, vocab=vocab_size)
        return net, trainer, None

    def update(self, trainer, b):
        mx = current_mxnet()
        if args.node_cap:
            scale = np.minimum(1.0, args.node_cap / np.maximum(node_counts(b, state["vocab"]),
                                                               1e-9))
            grad = trainer._params[1].grad()
            grad *= mx.np.array(scale.astype(np.float32)[:, None], ctx=grad.ctx)
        trainer.set_learning_rate(state["rate"] * max(1e-4, 1 - state["step"] / state["total"]))
        state["step"] += 1
        trainer.step(b.rows)

    plain = batches.SkipGramPaths.part

    def part(self, rows, idx, width, rng=None):
        p = plain(self, rows, idx, width, rng)
        p.weight = p.weight * np.maximum(rows.n_ctx[idx], 1)[:, None, None]  # 1 a pair
        return p

    train.build, train.Local.update, batches.SkipGramPaths.part = build, update, part
    if args.c_subsample:
        from w2v_cli import sampling

        def keep_probability(counts, t):
            if t <= 0:
                return np.ones(len(counts))
            ratio = t * counts[1:].sum() / np.maximum(counts, 1)
            return np.minimum(1.0, np.sqrt(ratio) + ratio)

        sampling.keep_probability = keep_probability
    if args.skip_saturated:
        from w2v_cli import model

        plain_bce = model._summed_bce

        def summed_bce(loss, scores, label, weight, group):
            live = (current_mxnet().np.abs(scores.reshape((-1,))) < args.skip_saturated)
            return plain_bce(loss, scores, label, weight * live.astype("float32").detach(), group)

        model._summed_bce = summed_bce
        model._hybridizable = lambda net: False  # the eager path: the scores are arrays
    if args.cbow_whole_grad:
        from w2v_cli import model

        plain_input = model.input_vectors

        def input_vectors(embed_v, center, mix=None, batch_dot=None):
            if mix is None:
                return plain_input(embed_v, center)
            mx = current_mxnet()
            v = embed_v(center)  # (R, C, E)
            mask = (mix > 0).astype("float32")
            whole = mx.npx.batch_dot(mask, v)  # forward: the mean; backward: the sum's gradient
            return mx.npx.batch_dot(mix, v).detach() + whole - whole.detach()

        model.input_vectors = input_vectors
        model._hybridizable = lambda net: False  # the eager path, so npx applies


if __name__ == "__main__":
    sys.exit(main())
