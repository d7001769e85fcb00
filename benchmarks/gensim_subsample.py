"""gensim on PTB with the chapter's subsampling instead of its own: which of w2v's gaps to
gensim come from the data a pass keeps, and which from the training.

    python benchmarks/gensim_subsample.py --loss hs --epochs 5 --seed 0 -o vectors.txt
    w2v evaluate --vectors vectors.txt --similarity ... --analogy ...

gensim keeps a word of frequency f with probability (sqrt(f / t) + 1) * t / f, the C tool's
formula; the chapter (and w2v) with sqrt(t / f), which keeps fewer mid-frequency words (PTB:
344,000 tokens a pass against 406,000). `--subsample chapter` trains gensim with
`sample=0` on a corpus subsampled afresh each epoch by the chapter's formula, its rate
falling linearly from 0.025 to 0.0001 over the run as gensim's own does; `--subsample
gensim` is gensim's usual run. `--model` and `--loss` name the combination as `w2v train`
does; the other settings are the bench's (benchmarks/bench.py): 100 dimensions, window 5,
min count 10, 2 workers, PTB's <unk> dropped.
"""

from __future__ import annotations

import argparse
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np


def sentences(data_dir: Path) -> list:
    with zipfile.ZipFile(data_dir / "ptb.zip") as z:
        text = z.read("ptb/ptb.train.txt").decode("utf-8")
    return [[t for t in line.split() if t != "<unk>"] for line in text.splitlines()]


def main() -> None:
    from gensim.models import Word2Vec

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--model", choices=("skipgram", "cbow"), default="skipgram")
    ap.add_argument("--loss", choices=("ns", "hs"), default="ns")
    ap.add_argument("--subsample", choices=("chapter", "gensim"), default="chapter")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    hs = args.loss == "hs"
    settings = dict(sg=int(args.model == "skipgram"), hs=int(hs), negative=0 if hs else 5,
                    vector_size=100, window=5, min_count=10, workers=2, seed=args.seed)
    corpus = sentences(args.data_dir)
    if args.subsample == "gensim":
        model = Word2Vec(corpus, epochs=args.epochs, sample=1e-4, **settings)
    else:
        counts = Counter(t for s in corpus for t in s)
        corpus = [[t for t in s if counts[t] >= 10] for s in corpus]
        # the corpus as one flat array of tokens and sentence ends; each token's keep
        # probability sqrt(t / f), f over the words kept by min count
        tokens = np.array([t for s in corpus for t in s], dtype=object)
        ends = np.cumsum([len(s) for s in corpus])[:-1]
        _, word, count = np.unique(tokens, return_inverse=True, return_counts=True)
        keep = np.minimum(1.0, np.sqrt(1e-4 * tokens.size / count))[word]
        model = Word2Vec(sample=0, **settings)
        model.build_vocab(corpus)
        rng = np.random.default_rng(args.seed)
        first, last, n = model.alpha, model.min_alpha, args.epochs
        for e in range(n):
            mask = rng.random(tokens.size) < keep  # one draw for the whole corpus
            kept = [part.tolist() for part in np.split(tokens[mask], np.cumsum(mask)[ends - 1])]
            model.train(kept, total_examples=len(kept), total_words=int(mask.sum()),
                        epochs=1, start_alpha=first - (first - last) * e / n,
                        end_alpha=first - (first - last) * (e + 1) / n)
    model.wv.save_word2vec_format(str(args.output))


if __name__ == "__main__":
    main()
