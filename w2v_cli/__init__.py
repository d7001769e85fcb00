"""w2v: pretrain skip-gram word2vec embeddings with MXNet Gluon."""

__version__ = "0.1.0"
