"""The ``w2v`` command line: parse, validate, call the core, echo. Nothing else lives here."""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import logging
import os
import signal
import sys

import click
from click.core import ParameterSource

from . import __version__, interrupt
from .clitypes import FiniteFloat, GivenPath
from .config import LOSSES, LR, MAX_SEED, MODELS, NS_OPTIONS, OPTIMIZERS, SUBSAMPLE, Config, default
from .cli_report import (_download_progress, _eval_report, _plot_loss, _prepare_progress,
                         _train_progress)
from .errors import Interrupted, StorageError, W2VError


class _Failure(click.ClickException):
    def __init__(self, error: W2VError):
        super().__init__(str(error))
        self.exit_code = error.exit_code


class _Stopped(_Failure):
    """An interrupt is not a failure of w2v: say what happened and how to go on, no Error:."""

    def show(self, file=None) -> None:
        click.echo(self.format_message(), err=True)


def _errors_to_exit(fn):
    """Show the core's errors as ``Error: ...`` with the error's exit code, not a traceback;
    Ctrl-C (which train catches itself) exits 130 as train does, not Click's "Aborted!" and 1."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Interrupted as e:
            raise _Stopped(e) from None
        except KeyboardInterrupt as e:
            signum = signal.SIGTERM if isinstance(e, interrupt.Terminated) else signal.SIGINT
            raise _Stopped(Interrupted(f"interrupted by {signum.name}; stopped", signum)) from None
        except W2VError as e:
            raise _Failure(e) from None
        except BrokenPipeError:
            _reader_gone()
    return wrapper


def _reader_gone() -> None:
    """Standard output's reader closed the pipe (`w2v export -o - | head`): end without a
    word, exit 141 as a tool killed by SIGPIPE does."""
    _stdout_to_devnull()
    sys.exit(128 + signal.SIGPIPE)


def _stdout_to_devnull() -> None:
    """Point standard output at /dev/null after a failed write, so that what is still in its
    buffer goes there and Python's flush at exit does not complain."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


class _Group(click.Group):
    """The ``w2v`` group. On the command line (and under CliRunner) it reports and exits
    itself rather than leave that to Click, so that every way out ends in one place: a
    failed write to standard output (the disk behind a redirect is full: ``Error:`` and
    exit 9, also for --version and for the flush at exit), Ctrl-C while Click parses (130).
    A failed write to stderr changes nothing: the exit code still says what happened."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        if sys.stdout is None:  # closed (`w2v similar x >&-`): Click would drop every line
            sys.stdout = _ClosedStdout()
        if sys.stderr is not None and not isinstance(sys.stderr, _BestEffort):
            sys.stderr = _BestEffort(sys.stderr)
        try:
            try:
                code = super().main(args, prog_name, complete_var, False, **extra)
            finally:
                sys.stdout.flush()  # here a failure is still reported; at exit, a traceback
        except click.ClickException as e:
            e.show()
            code = e.exit_code
        except click.Abort as e:  # Ctrl-C or SIGTERM while Click parses (w2v has no prompts)
            term = isinstance(e.__cause__, interrupt.Terminated)
            code = 128 + (signal.SIGTERM if term else signal.SIGINT)
        except BrokenPipeError:
            _reader_gone()
        except SystemExit as e:
            # Outside standalone mode Click exits by itself only when standard output's
            # reader went while Click wrote (`w2v train --help | head -1`), with 1.
            if e.code == 1:
                _reader_gone()
            raise
        except OSError as e:
            if e.filename is not None:  # a file's, not a stream's
                raise
            from pathlib import Path

            from .fileio import STDOUT, os_reason, storage_error

            _stdout_to_devnull()
            click.echo(f"Error: {storage_error(Path(STDOUT), os_reason(e))}", err=True)
            code = StorageError.exit_code
        sys.exit(code if isinstance(code, int) else 0)  # Click returns an Exit's code


class _BestEffort:
    """Standard error whose failed writes are dropped: a diagnostic that cannot be shown (a
    full disk behind 2>) must not change what the command does, nor its exit code."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, s):
        with contextlib.suppress(OSError):
            return self._stream.write(s)
        return len(s)

    def flush(self):
        with contextlib.suppress(OSError):
            self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _ClosedStdout(io.TextIOBase):
    """Standard output that the shell closed: a write fails, as one to a full disk does."""

    encoding, errors = "utf-8", "strict"

    @property
    def buffer(self):  # for bytes (`export -o -`), which fail alike
        return self

    def write(self, s):
        raise OSError(errno.EBADF, "it is closed")


@contextlib.contextmanager
def _workdir_locked(config: Config, command: str, create: bool = True):
    """Hold the workdir lock while ``command`` writes there; mention a stale lock taken over."""
    from . import lock

    workdir = config.workdir_path
    existed = workdir.exists()
    try:
        with lock.acquire(workdir, command, create) as held:
            if held.stale:
                click.echo("note: " + lock.describe_stale(held.stale), err=True)
            yield
    except BaseException:
        if not existed:  # a failed first command leaves no empty workdir behind
            with contextlib.suppress(OSError):
                (workdir / lock.LOCK_FILE).unlink(missing_ok=True)
                workdir.rmdir()  # only if nothing else was written there
        raise


def _opt(*decls, field: str | None = None, **kwargs):
    """An option whose default is the Config field of the same name, shown in --help."""
    name = field or decls[0].lstrip("-").split("/")[0].replace("-", "_")
    kwargs.setdefault("default", default(name))
    kwargs.setdefault("show_default", True)
    return click.option(*decls, **kwargs)


workdir_option = _opt(
    "--workdir", type=GivenPath(file_okay=False), envvar="W2V_WORKDIR",
    help="Working directory shared by prepare, train and similar [env W2V_WORKDIR].")
data_dir_option = _opt(
    "--data-dir", type=GivenPath(file_okay=False), envvar="W2V_DATA_DIR",
    help="Where the PTB archive is kept (downloaded once) [env W2V_DATA_DIR].")
seed_option = _opt("--seed", type=click.IntRange(0, MAX_SEED),
                   help="Random seed for sampling and initialization.")
device_option = _opt("--device", type=str, help="auto, cpu, cpu:N, gpu, gpu:N, or gpu:0,1,... "
                     "to split each batch across several GPUs. auto uses GPU 0 when MXNet sees "
                     "one that this build has kernels for (compute capability 5.0 to 8.9), "
                     "else the CPU.")
# Smaller chunks would cut sentences into pieces too short to hold a window.
MIN_CHUNK_TOKENS = 100
chunk_option = _opt("--chunk-tokens", type=click.IntRange(min=MIN_CHUNK_TOKENS),
                    help="Corpus tokens held in memory at once (prepare reads, train samples, "
                    "chunk by chunk); train samples a longer sentence in pieces of this size.")


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="w2v")
def cli():
    """Pretrain word2vec embeddings (skip-gram or CBOW) with MXNet Gluon.

    \b
    w2v prepare                      build the dataset (PTB by default)
    w2v train --epochs 5 --lr 0.002  train, writing model.params
    w2v similar chip -k 3            nearest words by cosine similarity
    """
    interrupt.raise_on_sigterm()  # SIGTERM cleans up and exits 143, as Ctrl-C exits 130
    notes = logging.getLogger("w2v_cli")
    if not any(isinstance(h, _NoteHandler) for h in notes.handlers):
        notes.addHandler(_NoteHandler())


class _NoteHandler(logging.Handler):
    """The core's log warnings (a device fallen back to, ...) as one ``note:`` line on stderr."""

    def emit(self, record):
        click.echo("note: " + record.getMessage(), err=True)


@cli.command()
@click.option("--corpus", "corpus", multiple=True, type=click.Path(exists=True),
              help="Text file (.gz, .bz2, .xz too) or folder of them, one sentence a line; "
                   "repeatable. Default: the PTB training set.")
@_opt("--min-count", type=click.IntRange(min=1),
      help="Tokens seen fewer times become <unk> (and are dropped).")
@_opt("--max-vocab", type=click.IntRange(min=0), help="Keep only this many of the most "
      "frequent words (besides <unk>); 0 keeps every word seen --min-count times.")
@_opt("--encoding-errors", type=click.Choice(["strict", "replace"]),
      help="Invalid UTF-8 in --corpus files: strict stops with the file and line, replace "
           "substitutes U+FFFD.")
@_opt("--lowercase/--keep-case", "lowercase", field="lowercase",
      help="Lower-case the corpus before counting, for corpora that mix case (PTB is lower "
           "case already).")
@chunk_option
@data_dir_option
@workdir_option
@_errors_to_exit
def prepare(corpus, min_count, max_vocab, encoding_errors, lowercase, chunk_tokens, data_dir,
            workdir):
    """Build the dataset: corpus -> vocabulary -> flat id array, in the workdir.

    The corpus is streamed: memory holds its distinct tokens and one chunk, not the corpus.
    """
    from . import dataset

    config = Config(workdir=workdir, data_dir=data_dir, corpus=tuple(corpus), min_count=min_count,
                    max_vocab=max_vocab, encoding_errors=encoding_errors,
                    lowercase=lowercase, chunk_tokens=chunk_tokens)
    with _workdir_locked(config, "prepare"):
        ds = dataset.prepare(config, progress=_download_progress(),
                             on_chunk=_prepare_progress(_stderr_is_tty()))
    if _stderr_is_tty():
        click.echo("\r\033[K", err=True, nl=False)  # clear the progress line
    stats = ds.vocab.meta["stats"]
    click.echo(f"{stats['sentences']} sentences, {stats['tokens']} tokens "
               f"({stats['kept_tokens']} kept), vocabulary of {len(ds.vocab)} "
               f"-> {config.workdir_path} ({stats['seconds']:.2f} s)")


@cli.command()
@_opt("--epochs", type=click.IntRange(min=1), help="Passes over the corpus.")
@_opt("--optimizer", type=click.Choice(OPTIMIZERS), show_default="sgd for --model "
      "skipgram --loss hs on one machine, else adam", help="adam (the chapter's); or sgd: "
      "plain SGD as the word2vec C tool trains, its rate falling linearly to 0 over the "
      "run, from the C tool's start (not on a parameter server; docs/objectives.md).")
@_opt("--lr", type=FiniteFloat(min=0, min_open=True), show_default=(
      f"{LR['adam']} with adam, {LR['sgd']} with sgd"), help="Learning rate: adam's, or "
      "sgd's per (context, center) pair at the start.")
@_opt("--batch-size", type=click.IntRange(min=1), help="Centers per batch.")
@_opt("--embed-size", type=click.IntRange(min=1), help="Embedding dimension.")
@_opt("--window", type=click.IntRange(min=1), help="Largest context window; each center "
      "draws its size uniformly from 1..window.")
@_opt("--model", type=click.Choice(MODELS), help="skipgram: each center predicts its "
      "context words; cbow: the mean of the context vectors predicts the center, and each "
      "context takes the whole error (the C tool's update). docs/objectives.md compares "
      "them.")
@_opt("--loss", type=click.Choice(LOSSES), help="ns: negative sampling; hs: hierarchical "
      "softmax over a Huffman tree of the vocabulary (then --negatives, --noise-group and "
      "--group-noise do not apply).")
@_opt("--negatives", type=click.IntRange(min=1), help="Noise words per context word "
      "(skipgram), or per center (cbow).")
@_opt("--noise-group", type=click.IntRange(min=0), show_default="8 for skip-gram with "
      "negative sampling, else 0", help="Let every this many centers of a "
      "batch share one draw of --group-noise noise words (a small matrix product per group), "
      "weighted as --negatives per context word. 0: each context word draws --negatives of its "
      "own (the chapter's estimator; slower, the same quality on PTB, benchmarks/README.md).")
@_opt("--group-noise", type=click.IntRange(min=1), help="Noise words per --noise-group.")
@_opt("--subsample", type=FiniteFloat(min=0), show_default=(
      f"{SUBSAMPLE['ns']:g} with --loss ns, {SUBSAMPLE['hs']:g} with --loss hs"),
      help="Subsampling threshold t: keep word w with probability sqrt(t / f(w)); 0 keeps "
      "every word.")
@_opt("--sample-once/--resample", "sample_once", field="sample_once",
      help="Draw windows and noise words once (the chapter) instead of afresh every epoch.")
@_opt("--sparse-grad/--dense-grad", "sparse_grad", field="sparse_grad",
      show_default="sparse on one CPU device, with or without --kvstore dist_*; else dense",
      help="Row-sparse gradients with lazy adam, the center rows caught up to dense adam "
           "(per-step cost follows the rows a batch touches, not the vocabulary size; with "
           "--kvstore dist_* only those rows move to and from the servers), or dense "
           "gradients and adam over every row.")
@_opt("--bucket/--no-bucket", "bucket", field="bucket",
      show_default="on with noise groups or --loss hs",
      help="Put centers with equally many contexts in the same batch, so no batch pads "
           "contexts (faster; changes which centers share a batch).")
@_opt("--log-interval", type=click.IntRange(min=1), help="Batches between progress updates.")
@_opt("--kvstore", type=click.Choice(["local", "device", "dist_sync", "dist_async"]),
      help="How gradients meet: local or device on one machine; dist_sync or dist_async run "
           "this process as one worker of MXNet's parameter server (start with `w2v launch`).")
@chunk_option
@seed_option
@device_option
@workdir_option
@_opt("--eval-similarity", multiple=True, type=click.Path(exists=True, dir_okay=False),
      show_default=False, help="Word-similarity file to score the center vectors on after "
      "every epoch, as `w2v evaluate --similarity` does; repeatable. One line per set on "
      "stderr, a row in metrics.jsonl, a panel in loss.png.")
@_opt("--eval-analogy", multiple=True, type=click.Path(exists=True, dir_okay=False),
      show_default=False, help="Analogy file to score after every epoch, as `w2v evaluate "
      "--analogy` does (3CosAdd); repeatable.")
@_opt("--early-stop", type=click.IntRange(min=0), help="Stop when the first --eval-similarity "
      "set's score (else the first --eval-analogy set's) has not improved for this many "
      "epochs; 0: never.")
@_opt("--keep", type=click.Choice(["best", "last"]), show_default="best with --early-stop, "
      "else last", help="Which epoch's parameters model.params holds at the end: the best "
      "scoring (see --early-stop) or the last.")
@click.option("--resume", is_flag=True, help="Continue the run in the workdir from its latest "
              "checkpoint, with its settings (options given must match them, except --epochs, "
              "--device, --log-interval and the --eval-*, --early-stop and --keep options).")
@click.option("--restart", is_flag=True, help="Start a new run even though the workdir holds "
              "an unfinished one (whose checkpoints go once the new run has written its "
              "first).")
@_errors_to_exit
def train(epochs, optimizer, lr, batch_size, embed_size, window, model, loss, negatives, noise_group,
          group_noise, subsample, sample_once, sparse_grad, bucket, log_interval, kvstore,
          chunk_tokens, seed, device, workdir, eval_similarity, eval_analogy, early_stop, keep,
          resume, restart):
    """Train skip-gram or CBOW, with negative sampling or hierarchical softmax, on the
    prepared dataset.

    Ctrl-C (or SIGTERM) stops after the current step with a checkpoint; continue with
    `w2v train --resume`. With --kvstore dist_* this process is one worker of a parameter
    server; the workers may share one workdir, whose lock only rank 0 takes.
    """
    from . import dataset, plots
    from . import train as train_mod

    settings = dict(workdir=workdir, epochs=epochs, optimizer=optimizer, lr=lr,
                    batch_size=batch_size,
                    embed_size=embed_size, window=window, model=model, loss=loss,
                    negatives=negatives,
                    noise_group=noise_group, group_noise=group_noise,
                    subsample=subsample, sample_once=sample_once, sparse_grad=sparse_grad,
                    bucket=bucket, log_interval=log_interval, kvstore=kvstore,
                    chunk_tokens=chunk_tokens, seed=seed, device=device,
                    eval_similarity=eval_similarity, eval_analogy=eval_analogy,
                    early_stop=early_stop, keep=keep)
    config = Config(**settings)
    if resume and restart:  # before touching the workdir
        raise click.UsageError("--resume and --restart exclude each other")
    if not config.workdir_path.is_dir():
        dataset.load(config.workdir_path)  # says to run `w2v prepare`; the lock would mkdir
    # A dist worker does not know its rank until it joins the parameter server, and the
    # workers of one machine may share this workdir: train() locks it in rank 0 only.
    dist = config.kvstore.startswith("dist")
    with contextlib.nullcontext() if dist else \
            _workdir_locked(config, "train --resume" if resume else "train", create=False):
        ctx = click.get_current_context()
        given = {k: v for k, v in settings.items()
                 if ctx.get_parameter_source(k) in (ParameterSource.COMMANDLINE,
                                                    ParameterSource.ENVIRONMENT)}
        _refuse_noise_options_with_hs(config, given, resume)
        config = train_mod.settings_for(config, given, resume=resume, restart=restart)
        ds = dataset.load(config.workdir_path)
        reports, show = [], _train_progress(_stderr_is_tty())

        def on_progress(p):
            reports.append(p)
            show(p)
        # A process that has yet to import MXNet imports matplotlib meanwhile, in a child
        # on the other core (plots.PlotProcess); a parameter-server worker draws no curve
        # unless it is rank 0, and draws it itself.
        plotter = plots.loss_plotter(in_child="mxnet" not in sys.modules and not dist)
        try:
            record = train_mod.train(config, ds, on_progress=on_progress, resume=resume,
                                     on_scores=_eval_report(config.epochs))
            if resume and not reports:  # every epoch asked for was done before
                n = len(record["epochs"])
                click.echo(f"note: the run had done its {n} epoch{'s' * (n != 1)}: nothing "
                           "was trained (give --epochs with more to go on)", err=True)
            if record.get("worker", {}).get("rank", 0) == 0:  # one curve a workdir, locked
                _plot_loss(record, config.workdir_path, plotter)
        finally:
            plotter.close()
    from .quality import summary

    for line in summary(record):
        click.echo(line, err=True)
    final = record["final"]
    who = ""
    if "worker" in record:
        w = record["worker"]
        who = f"worker {w['rank']}/{w['num_workers']} ({w['tokens']} tokens): "
    click.echo(f"{who}loss {final['loss']:.3f}, {final['tokens_per_sec']:.1f} tokens/sec "
               f"on {record['device']}")


def _refuse_noise_options_with_hs(config: Config, given: dict, resume: bool) -> None:
    """--negatives, --noise-group or --group-noise given with --loss hs (given now, or the
    run's on --resume) is a usage error: hierarchical softmax draws no noise words."""
    named = [f"--{k.replace('_', '-')}" for k in NS_OPTIONS if k in given]
    if not named:
        return
    loss = config.loss
    if resume and "loss" not in given:
        from . import checkpoint

        with contextlib.suppress(W2VError):  # no checkpoint: settings_for says so
            loss = checkpoint.saved_config(config.workdir_path).get("loss", loss)
    if loss == "hs":
        raise click.UsageError(f"{', '.join(named)} does not apply with --loss hs "
                               "(hierarchical softmax draws no noise words)")


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option("-n", "--num-workers", type=click.IntRange(min=1), required=True,
              help="Worker processes (each runs COMMAND).")
@click.option("-s", "--num-servers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Parameter-server processes.")
@click.option("--hostfile", type=click.Path(exists=True, dir_okay=False),
              help="ssh host file, one host a line: servers and workers go round-robin over "
                   "them. Default: every process on this machine, over loopback.")
@click.option("--root-uri", default="127.0.0.1", show_default=True,
              help="Address of this machine (the scheduler) that every host can reach.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=0, show_default=True,
              help="Scheduler port; 0 picks a free one.")
@click.option("--timeout", type=FiniteFloat(min=1), default=24 * 3600.0,
              show_default=True, help="Seconds before the whole job is stopped.")
@click.option("--log-dir", type=click.Path(file_okay=False),
              help="Write each process's output to LOG_DIR/<role>-<rank>.log.")
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE",
              help="An environment variable for every process, e.g. DMLC_INTERFACE=eth0; "
                   "repeatable.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@_errors_to_exit
def launch(num_workers, num_servers, hostfile, root_uri, port, timeout, log_dir, env, command):
    """Run COMMAND as the workers of an MXNet parameter-server job.

    \b
    w2v launch -n 2 -- w2v train --kvstore dist_sync --epochs 5
    w2v launch -n 4 -s 2 --hostfile hosts --root-uri 10.0.0.1 -- w2v train --kvstore dist_sync

    Starts the scheduler, the servers and the workers with the DMLC_* environment ps-lite
    reads, waits for the workers, and stops every process it started when they finish, when
    one fails (a worker whose server died would wait forever), or at the timeout. Ctrl-C or
    SIGTERM is passed on to the workers, and every process is stopped within 8 s (exit 130
    / 143). Ends with the tokens/sec of each worker and of the job.
    """
    from pathlib import Path

    from . import launch as launch_mod

    bad = [e for e in env if "=" not in e or not e.split("=", 1)[0]]
    if bad:
        raise click.BadParameter(f"expected KEY=VALUE, got {bad[0]!r}", param_hint="--env")
    hosts = launch_mod.read_hosts(hostfile) if hostfile else None
    launch_mod.check_root_uri(root_uri)
    launch_mod.check_memory(num_workers, num_servers, hosts)
    nodes = launch_mod.plan(list(command), num_workers, num_servers, port, root_uri, hosts,
                            env=dict(e.split("=", 1) for e in env))
    results = launch_mod.run(nodes, timeout, Path(log_dir) if log_dir else None)
    click.echo(f"{num_workers} worker(s) and {num_servers} server(s) finished"
               + (f"; {launch_mod.summary(results)}" if results else ""), err=True)


# The query commands register themselves on the group above.
from . import cli_query  # noqa: E402,F401
