"""One dataclass holding every setting and its default; saved with each run."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import UsageError

DEFAULT_WORKDIR = "w2v-work"
DEFAULT_DATA_DIR = "~/.cache/w2v"
KVSTORES = ("local", "device", "dist_sync", "dist_async")
NOISE_GROUP = 8  # --noise-group where it applies and is not given (with --group-noise 20)
MODELS = ("skipgram", "cbow")
LOSSES = ("ns", "hs")
NS_OPTIONS = ("negatives", "noise_group", "group_noise")  # meaningless with --loss hs
OPTIMIZERS = ("adam", "sgd")
LR = {"adam": 0.002, "sgd": 0.05}  # --lr where it is not given, by optimizer
# --subsample where it is not given, by --loss: hierarchical softmax keeps more of the frequent
# words (PTB, seeds 0-2, both architectures, 5 and 15 epochs: 2e-3 against 1e-4, 1e-3 and
# 3e-3, docs/objectives.md). 2e-3 keeps as many tokens a pass (613,000) as the C tool's and
# gensim's formula does at their default 1e-3 (609,000).
SUBSAMPLE = {"ns": 1e-4, "hs": 2e-3}


@dataclass
class Config:
    """Settings for prepare and train. The CLI shows these defaults in ``--help``."""

    # where things live
    workdir: str = DEFAULT_WORKDIR  # the CLI also reads W2V_WORKDIR
    data_dir: str = DEFAULT_DATA_DIR  # the CLI also reads W2V_DATA_DIR
    corpus: tuple[str, ...] = ()  # empty: PTB
    encoding_errors: str = "strict"  # strict | replace: invalid UTF-8 in the corpus

    # vocabulary
    min_count: int = 10
    max_vocab: int = 0  # keep at most this many words (besides <unk>), the most frequent; 0: no cap
    lowercase: bool = False  # prepare lower-cases the corpus first (str.lower), so The and the are one word

    # architecture and objective (docs/objectives.md)
    model: str = "skipgram"  # skipgram | cbow (the mean of the contexts predicts the center)
    loss: str = "ns"  # ns (negative sampling) | hs (hierarchical softmax over a Huffman tree)

    # sampling
    # t in keep probability sqrt(t / f(w)); 0 disables. None: SUBSAMPLE[loss]; saved resolved.
    subsample: Optional[float] = None
    window: int = 5
    negatives: int = 5
    # > 0: every `noise_group` centers of a batch share `group_noise` noise words, weighted
    # as `negatives` per context word (a different estimate of the chapter's loss; measured as
    # good in under half the time, benchmarks/README.md). None: NOISE_GROUP where it applies
    # (skip-gram with negative sampling, on any devices and on a dist worker), else 0; the run
    # saves what it resolved to. 0: each context draws its own noise words (the chapter).
    noise_group: Optional[int] = None
    group_noise: int = 20
    sample_once: bool = False
    seed: int = 0

    # model and optimiser
    embed_size: int = 100
    batch_size: int = 512
    epochs: int = 5
    # adam | sgd (plain SGD, its rate falling linearly over the run: sgd.py). None: sgd for
    # skip-gram with hierarchical softmax on one machine, else adam; saved resolved.
    optimizer: Optional[str] = None
    lr: Optional[float] = None  # adam's rate, or sgd's per pair at the start; None: LR[optimizer]
    device: str = "auto"  # auto | cpu | gpu | gpu:N | gpu:0,1,... | cpu:0,1,...
    # Row-sparse gradients + lazy adam (center rows caught up to dense Adam): per-step cost
    # follows the rows touched, not the vocabulary. None: on where it is faster and works,
    # one CPU device without a parameter server; the run saves what it resolved to.
    sparse_grad: Optional[bool] = None

    # speed and scale: chunked epochs, streaming and distributed training
    chunk_tokens: int = 1 << 20  # corpus tokens held at once by prepare and by each epoch's sampling
    # Batch rows of equal length together (no padded contexts; changes which centers share a batch).
    # None: on with noise groups and with --loss hs, else off; saved resolved.
    bucket: Optional[bool] = None
    kvstore: str = "device"  # local | device (one machine) | dist_sync | dist_async (parameter server)

    # reporting
    log_interval: int = 50  # batches between progress reports (and device syncs)

    # quality while training (quality.py): scored after every epoch; they change nothing trained
    eval_similarity: tuple[str, ...] = ()  # word-similarity files, as `w2v evaluate --similarity`
    eval_analogy: tuple[str, ...] = ()  # analogy files, as `w2v evaluate --analogy`
    early_stop: int = 0  # stop when the first set has not improved for this many epochs; 0: never
    keep: Optional[str] = None  # best | last: the epoch model.params holds; None: best with early_stop

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for name in TUPLES:
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        for name in TUPLES:
            if name in kwargs:
                kwargs[name] = tuple(kwargs[name])
        return cls(**kwargs)

    @property
    def workdir_path(self) -> Path:
        return Path(self.workdir).expanduser()

    @property
    def data_dir_path(self) -> Path:
        return Path(self.data_dir).expanduser()


TUPLES = ("corpus", "eval_similarity", "eval_analogy")  # lists in JSON


def noise_per_context(config: Config) -> int:
    """Noise words drawn with the examples for each context word: --negatives for the
    chapter's skip-gram; 0 when an objective draws its own per batch (--noise-group, CBOW)
    or needs none (--loss hs)."""
    own = (config.model, config.loss) == ("skipgram", "ns") and not config.noise_group
    return config.negatives if own else 0


def default(name: str):
    """The default of one Config field, for the CLI's option declarations."""
    return {f.name: f.default for f in dataclasses.fields(Config)}[name]


MAX_SEED = 2 ** 32 - 1  # numpy and MXNet seeds are unsigned 32-bit
FLOAT32_TINY = 2.0 ** -126  # float32's smallest normal number
FLOAT32_MAX = (2 - 2.0 ** -23) * 2.0 ** 127
# MXNet refuses a rate that is not a normal float32 number, and a run scales --lr down to as
# little as 1e-4 of it (sgd.MIN_RATE; adam's bias correction: to 0.15), so --lr stays 1e4 above.
LR_RANGE = (FLOAT32_TINY * 1e4, FLOAT32_MAX)


def resolved(config: Config) -> Config:
    """``config`` with ``optimizer``, ``lr`` and ``subsample`` decided where they are None
    (see Config). Plain SGD trains skip-gram's hierarchical softmax as well as adam or better
    on PTB (each set, at 5 and 15 epochs; docs/objectives.md); a parameter server runs adam
    only."""
    optimizer = config.optimizer
    if optimizer is None:
        sgd = ((config.model, config.loss) == ("skipgram", "hs")
               and not config.kvstore.startswith("dist"))
        optimizer = "sgd" if sgd else "adam"
    lr = LR.get(optimizer) if config.lr is None else config.lr
    subsample = SUBSAMPLE.get(config.loss) if config.subsample is None else config.subsample
    if (optimizer, lr, subsample) == (config.optimizer, config.lr, config.subsample):
        return config
    return dataclasses.replace(config, optimizer=optimizer, lr=lr, subsample=subsample)


def check_numbers(config: Config) -> None:
    """Raise UsageError for a float setting that is nan or infinite, or a seed out of range.

    The CLI refuses these at parse time; this catches them in settings read back from a
    checkpoint, or built by hand."""
    for name in ("lr", "subsample"):
        if getattr(config, name) is not None and not math.isfinite(getattr(config, name)):
            raise UsageError(f"--{name} must be a finite number, got {getattr(config, name)}")
    if not 0 <= config.seed <= MAX_SEED:
        raise UsageError(f"--seed must be between 0 and {MAX_SEED}, got {config.seed}")


def check(config: Config) -> None:
    """Raise UsageError for settings that cannot train (the CLI checks ranges at parse time)."""
    check_numbers(config)
    for name in ("epochs", "batch_size", "window", "embed_size", "log_interval", "chunk_tokens"):
        if getattr(config, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if config.negatives < 0:
        raise UsageError("--negatives must be 0 or more")
    if config.noise_group is not None and config.noise_group < 0:
        raise UsageError("--noise-group must be 0 or more")
    if config.group_noise < 1:
        raise UsageError("--group-noise must be at least 1")
    if config.model not in MODELS:
        raise UsageError(f"--model {config.model!r}: expected one of {', '.join(MODELS)}")
    if config.loss not in LOSSES:
        raise UsageError(f"--loss {config.loss!r}: expected one of {', '.join(LOSSES)}")
    if config.noise_group and (config.model, config.loss) != ("skipgram", "ns"):
        raise UsageError(f"--noise-group works with --model skipgram --loss ns, not --model "
                         f"{config.model} --loss {config.loss}")
    if config.model == "cbow" and config.loss == "ns" and not config.negatives:
        raise UsageError("--model cbow --loss ns needs --negatives of 1 or more")
    if config.noise_group and not config.negatives:
        raise UsageError("--noise-group needs --negatives of 1 or more (it weights the shared "
                         "noise words as that many per context word)")
    if config.lr is not None and not LR_RANGE[0] <= config.lr <= LR_RANGE[1]:
        raise UsageError(f"--lr must be between {LR_RANGE[0]:.4g} and {LR_RANGE[1]:.4g}, got "
                         f"{config.lr!r}: MXNet takes rates as normal float32 numbers, and a "
                         "run lowers the rate to as little as 1e-4 of --lr")
    if config.optimizer not in (None, *OPTIMIZERS):
        raise UsageError(f"--optimizer {config.optimizer!r}: expected one of "
                         f"{', '.join(OPTIMIZERS)}")
    if config.optimizer == "sgd" and config.kvstore.startswith("dist"):
        raise UsageError(f"--optimizer sgd works on one machine, not with --kvstore "
                         f"{config.kvstore}: train there with --optimizer adam")
    if config.subsample is not None and config.subsample < 0:
        raise UsageError("--subsample must be 0 or more")
    if config.kvstore not in KVSTORES:
        raise UsageError(f"--kvstore {config.kvstore!r}: expected one of {', '.join(KVSTORES)}")
    check_quality(config)
    # Several devices split a batch by groups (multidevice.py) and sum dense gradients.
    if config.sparse_grad and "," in config.device:
        raise UsageError(f"--sparse-grad works on one device, not --device {config.device}: "
                         "name one device, or train with --dense-grad")


KEEP = ("best", "last")


def check_quality(config: Config) -> None:
    """Raise UsageError for --early-stop / --keep / --eval-* settings that cannot work."""
    sets = (*config.eval_similarity, *config.eval_analogy)
    if config.early_stop < 0:
        raise UsageError("--early-stop must be 0 or more")
    if config.keep not in (None, *KEEP):
        raise UsageError(f"--keep {config.keep!r}: expected one of {', '.join(KEEP)}")
    for option, on in (("--early-stop", config.early_stop), ("--keep best", config.keep == "best")):
        if on and not sets:
            raise UsageError(f"{option} needs a score to follow: give --eval-similarity FILE "
                             "or --eval-analogy FILE")
    twice = sorted({p for p in sets if sets.count(p) > 1})
    if twice:
        raise UsageError(f"{twice[0]} is given twice as an evaluation set")
    if sets and config.kvstore.startswith("dist"):
        raise UsageError(f"--eval-similarity and --eval-analogy work on one machine, not with "
                         f"--kvstore {config.kvstore}: score the result with `w2v evaluate`")
