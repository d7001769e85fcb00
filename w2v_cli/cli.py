"""The ``w2v`` command line: parse, validate, call the core, echo. Nothing else lives here."""

from __future__ import annotations

import contextlib
import functools
import sys

import click
from click.core import ParameterSource

from . import __version__
from .config import Config, default
from .errors import Interrupted, ResumeError, W2VError


class _Failure(click.ClickException):
    def __init__(self, error: W2VError):
        super().__init__(str(error))
        self.exit_code = error.exit_code


class _Stopped(_Failure):
    """An interrupt is not a failure of w2v: say what happened and how to go on, no Error:."""

    def show(self, file=None) -> None:
        click.echo(self.format_message(), err=True)


def _errors_to_exit(fn):
    """Show the core's errors as ``Error: ...`` with the error's exit code, not a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Interrupted as e:
            raise _Stopped(e) from None
        except W2VError as e:
            raise _Failure(e) from None
    return wrapper


@contextlib.contextmanager
def _workdir_locked(config: Config, command: str, create: bool = True):
    """Hold the workdir lock while ``command`` writes there; mention a stale lock taken over."""
    from . import lock

    with lock.acquire(config.workdir_path, command, create) as held:
        if held.stale:
            click.echo("note: " + lock.describe_stale(held.stale), err=True)
        yield


def _opt(*decls, field: str | None = None, **kwargs):
    """An option whose default is the Config field of the same name, shown in --help."""
    name = field or decls[0].lstrip("-").split("/")[0].replace("-", "_")
    kwargs.setdefault("default", default(name))
    return click.option(*decls, show_default=True, **kwargs)


workdir_option = _opt(
    "--workdir", type=click.Path(file_okay=False), envvar="W2V_WORKDIR",
    help="Working directory shared by prepare, train and similar [env W2V_WORKDIR].")
data_dir_option = _opt(
    "--data-dir", type=click.Path(file_okay=False), envvar="W2V_DATA_DIR",
    help="Where the PTB archive is kept (downloaded once) [env W2V_DATA_DIR].")
seed_option = _opt("--seed", type=int, help="Random seed for sampling and initialization.")
device_option = _opt("--device", type=str, help="auto, cpu, gpu or gpu:N. auto uses GPU 0 "
                     "when MXNet sees one, else the CPU.")


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="w2v")
def cli():
    """Pretrain skip-gram word2vec embeddings with MXNet Gluon.

    \b
    w2v prepare                      build the dataset (PTB by default)
    w2v train --epochs 5 --lr 0.002  train, writing model.params
    w2v similar chip -k 3            nearest words by cosine similarity
    """


@cli.command()
@click.option("--corpus", "corpus", multiple=True, type=click.Path(exists=True),
              help="Text file (.gz, .bz2, .xz too) or folder of them, one sentence a line; "
                   "repeatable. Default: the PTB training set.")
@_opt("--min-count", type=click.IntRange(min=1),
      help="Tokens seen fewer times become <unk> (and are dropped).")
@_opt("--encoding-errors", type=click.Choice(["strict", "replace"]),
      help="Invalid UTF-8 in --corpus files: strict stops with the file and line, replace "
           "substitutes U+FFFD.")
@data_dir_option
@workdir_option
@_errors_to_exit
def prepare(corpus, min_count, encoding_errors, data_dir, workdir):
    """Build the dataset: corpus -> vocabulary -> flat id array, in the workdir."""
    from . import dataset

    config = Config(workdir=workdir, data_dir=data_dir, corpus=tuple(corpus), min_count=min_count,
                    encoding_errors=encoding_errors)
    with _workdir_locked(config, "prepare"):
        ds = dataset.prepare(config, progress=_download_progress())
    stats = ds.vocab.meta["stats"]
    click.echo(f"{stats['sentences']} sentences, {stats['tokens']} tokens "
               f"({stats['kept_tokens']} kept), vocabulary of {len(ds.vocab)} "
               f"-> {config.workdir_path} ({stats['seconds']:.2f} s)")


def _download_progress():
    shown = {"last": -1}

    def report(done, total):
        pct = int(100 * done / total) if total else -1
        if pct != shown["last"]:
            shown["last"] = pct
            text = f"{pct}%" if total else f"{done / 1e6:.1f} MB"
            click.echo(f"\rdownloading PTB: {text}", err=True, nl=False)
            if total and done >= total:
                click.echo("", err=True)
    return report


@cli.command()
@_opt("--epochs", type=click.IntRange(min=1), help="Passes over the corpus.")
@_opt("--lr", type=click.FloatRange(min=0, min_open=True), help="Adam learning rate.")
@_opt("--batch-size", type=click.IntRange(min=1), help="Centers per batch.")
@_opt("--embed-size", type=click.IntRange(min=1), help="Embedding dimension.")
@_opt("--window", type=click.IntRange(min=1), help="Largest context window; each center "
      "draws its size uniformly from 1..window.")
@_opt("--negatives", type=click.IntRange(min=1), help="Noise words per context word.")
@_opt("--subsample", type=click.FloatRange(min=0), help="Subsampling threshold t: keep word w "
      "with probability sqrt(t / f(w)); 0 keeps every word.")
@_opt("--sample-once/--resample", "sample_once", field="sample_once",
      help="Draw windows and noise words once (the chapter) instead of afresh every epoch.")
@_opt("--log-interval", type=click.IntRange(min=1), help="Batches between progress updates.")
@seed_option
@device_option
@workdir_option
@click.option("--resume", is_flag=True, help="Continue the run in the workdir from its latest "
              "checkpoint, with its settings (options given must match them, except --epochs, "
              "--device and --log-interval).")
@click.option("--restart", is_flag=True, help="Start a new run even though the workdir holds "
              "an unfinished one (whose checkpoints are then deleted).")
@_errors_to_exit
def train(epochs, lr, batch_size, embed_size, window, negatives, subsample, sample_once,
          log_interval, seed, device, workdir, resume, restart):
    """Train skip-gram with negative sampling on the prepared dataset.

    Ctrl-C (or SIGTERM) stops after the current step with a checkpoint; continue with
    `w2v train --resume`.
    """
    from . import checkpoint, dataset
    from . import train as train_mod

    settings = dict(workdir=workdir, epochs=epochs, lr=lr, batch_size=batch_size,
                    embed_size=embed_size, window=window, negatives=negatives,
                    subsample=subsample, sample_once=sample_once, log_interval=log_interval,
                    seed=seed, device=device)
    config = Config(**settings)
    if resume and restart:
        raise click.UsageError("--resume and --restart exclude each other")
    with _workdir_locked(config, "train --resume" if resume else "train", create=False):
        left = None if resume or restart else checkpoint.unfinished(config.workdir_path)
        if left:
            raise ResumeError(f"{config.workdir_path} holds an unfinished run ({left}); continue "
                              "it with `w2v train --resume`, or pass --restart to discard it")
        if resume:
            # The checkpoint's settings, overridden by the options the user actually gave.
            ctx = click.get_current_context()
            given = {k: v for k, v in settings.items()
                     if ctx.get_parameter_source(k) in (ParameterSource.COMMANDLINE,
                                                        ParameterSource.ENVIRONMENT)}
            saved = checkpoint.saved_config(config.workdir_path)
            config = Config.from_dict({**saved, "workdir": workdir, **given})
        train_mod.check(config)
        ds = dataset.load(config.workdir_path)
        record = train_mod.train(config, ds, on_progress=_train_progress(_stderr_is_tty()),
                                 resume=resume)
    final = record["final"]
    click.echo(f"loss {final['loss']:.3f}, {final['centers_per_sec']:.1f} tokens/sec "
               f"on {record['device']}")


def _train_progress(tty: bool):
    def report(p):
        line = (f"epoch {p.epoch}/{p.epochs}  batch {p.batch}/{p.batches}  "
                f"loss {p.loss:.4f}  {p.centers_per_sec:,.0f} words/s")
        if p.epoch_done:
            click.echo(("\r" if tty else "") + line + "  " * 4, err=True)
        elif tty:
            click.echo("\r" + line, err=True, nl=False)
    return report


@cli.command()
@click.argument("words", nargs=-1, required=True)
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many neighbours to show.")
@workdir_option
@_errors_to_exit
def similar(words, k, workdir):
    """Print the K words nearest to WORD by cosine similarity (the word itself excluded)."""
    from .vectors import Vectors

    vectors = Vectors.load(Config(workdir=workdir).workdir_path)
    for n, word in enumerate(words):
        if len(words) > 1:
            click.echo(("\n" if n else "") + f"{word}:")
        for token, sim in vectors.most_similar(word, k):
            click.echo(f"cosine sim={sim:.3f}: {token}")


def main():  # pragma: no cover - the console script
    cli()
