"""The query commands of ``w2v``: similar, analogy, evaluate, export, plot and info.

Each is a shim over the query core (vectors, queries, evaluate, export, plots, info) on the
workdir's vectors or, with ``--vectors FILE``, another tool's.
"""

from __future__ import annotations

import sys

import click
from click.core import ParameterSource

from .cli import _errors_to_exit, cli, workdir_option
from .clitypes import GivenPath
from .config import Config


which_option = click.option(
    "--which", type=click.Choice(["center", "context", "sum"]), default="center",
    show_default=True, help="Which embedding table: the center (input) vectors, the context "
                            "(output) vectors, or their sum.")


def vectors_options(fn):
    """--which, or --vectors FILE instead of the workdir's tables."""
    fn = click.option("--vectors-format", "vectors_format", default="auto", show_default=True,
                      type=click.Choice(["auto", "word2vec", "word2vec-binary"]),
                      help="The --vectors file's format: word2vec text or binary; auto tells "
                           "them apart from the first row.")(fn)
    fn = click.option("--vectors", "vectors_file", type=click.Path(exists=True, dir_okay=False),
                      help="Use the vectors in this word2vec text or binary file (gensim's, "
                           "the word2vec tool's, `w2v export`'s) instead of the workdir's.")(fn)
    return which_option(fn)


def _load_vectors(which, workdir, vectors_file, vectors_format):
    """The workdir's table ``which``, or the vectors in ``vectors_file`` (no MXNet needed)."""
    if vectors_file is None:
        from .vectors import Vectors

        return Vectors.load(Config(workdir=workdir).workdir_path, which)
    if click.get_current_context().get_parameter_source("which") == ParameterSource.COMMANDLINE:
        raise click.UsageError("--which chooses a workdir's table; it does not apply to --vectors")
    from . import vectorfile

    return vectorfile.load(vectors_file, vectors_format)


json_option = click.option("--json", "as_json", is_flag=True,
                           help="One JSON object per query on stdout.")
fold_case_option = click.option(
    "--fold-case/--keep-case", default=True, show_default=True,
    help="Match the file's words to the vocabulary case-insensitively.")


def _stdin_queries():
    """Queries from stdin, one a line, blank lines skipped, each answered as it arrives."""
    if sys.stdin.isatty():
        click.echo("reading queries from stdin, one a line (Ctrl-D ends)", err=True)
    raw = getattr(sys.stdin, "buffer", None)
    # UTF-8 as the vocabulary is, whatever the locale; a byte that is not shows as U+FFFD
    lines = sys.stdin if raw is None else (b.decode("utf-8", "replace") for b in raw)
    for line in lines:
        if line.strip():
            yield line.split()


def _answer(batches, solve, render, as_json: bool, header: bool) -> None:
    """Echo each answer (JSON or text lines); per-query errors go on and set the exit code."""
    import json

    exit_code = 0
    first = True
    for queries in batches:
        for result in solve(queries):
            if "error" in result:
                code = result.pop("exit_code")
                exit_code = exit_code or code
                if not as_json:
                    click.echo(f"Error: {result['error']}", err=True)
                    continue
            if as_json:
                click.echo(json.dumps(result, ensure_ascii=False))
                continue
            click.echo(("" if first or not header else "\n") + "\n".join(render(result, header)))
            first = False
    if exit_code:
        click.get_current_context().exit(exit_code)


@cli.command()
@click.argument("words", nargs=-1)
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many neighbours to show.")
@json_option
@vectors_options
@workdir_option
@_errors_to_exit
def similar(words, k, as_json, which, vectors_file, vectors_format, workdir):
    """Print the K words nearest to each WORD by cosine similarity (the word itself excluded).

    With no WORD, read words from stdin, one a line, and answer each as it comes.
    """
    from . import queries
    vectors = _load_vectors(which, workdir, vectors_file, vectors_format)
    if words:
        batches = [list(words)]
    else:  # one word a line; a line of several words is answered with an error
        batches = ([" ".join(q)] for q in _stdin_queries())
    _answer(batches, lambda qs: queries.similar(vectors, qs, k), queries.format_similar,
            as_json, header=len(words) != 1)


@cli.command()
@click.argument("words", nargs=-1)
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many answers to show.")
@click.option("--method", type=click.Choice(["add", "mul"]), default="add", show_default=True,
              help="3CosAdd (nearest to B - A + C) or 3CosMul (Levy and Goldberg).")
@json_option
@vectors_options
@workdir_option
@_errors_to_exit
def analogy(words, k, method, as_json, which, vectors_file, vectors_format, workdir):
    """A is to B as C is to ?: the K words closest to B - A + C, the three words excluded.

    WORDS are one or more triples A B C, e.g. `w2v analogy man king woman`. With no WORDS,
    read triples from stdin, one `A B C` a line.
    """
    from . import queries
    if len(words) % 3:
        raise click.UsageError(f"give the words in threes (A B C ...), got {len(words)}")
    vectors = _load_vectors(which, workdir, vectors_file, vectors_format)
    if words:
        batches = [[list(words[i:i + 3]) for i in range(0, len(words), 3)]]
    else:
        batches = ([q] for q in _stdin_queries())
    _answer(batches, lambda qs: queries.analogies(vectors, qs, k, method),
            queries.format_analogy, as_json, header=len(words) != 3)


@cli.command()
@click.option("--similarity", "similarity", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="Word-similarity file (`word1 word2 score` lines, WordSim-353 or SimLex-999 "
                   "style): Spearman rho of cosine vs. score. Repeatable.")
@click.option("--analogy", "analogy_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="Analogy file in the questions-words.txt format: accuracy per section. "
                   "Repeatable.")
@click.option("--method", type=click.Choice(["add", "mul"]), default="add", show_default=True,
              help="Analogy scoring: 3CosAdd or 3CosMul.")
@fold_case_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with every result.")
@vectors_options
@workdir_option
@_errors_to_exit
def evaluate(similarity, analogy_files, method, fold_case, as_json, which, vectors_file,
             vectors_format, workdir):
    """Score the vectors on word-similarity and analogy test sets."""
    import json

    from . import evaluate as ev

    if not similarity and not analogy_files:
        raise click.UsageError("give at least one --similarity FILE or --analogy FILE")
    vectors = _load_vectors(which, workdir, vectors_file, vectors_format)
    scores = ev.score(vectors, similarity, analogy_files, method, fold_case)
    if as_json:
        click.echo(json.dumps(scores, ensure_ascii=False))
        return
    for r in scores["similarity"]:
        click.echo(ev.format_similarity(r))
    for r in scores["analogy"]:
        click.echo("\n".join(ev.format_analogies(r)))


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["word2vec", "word2vec-binary", "npy", "tsv"]),
              default="word2vec", show_default=True,
              help="word2vec text, word2vec binary (both read by gensim's "
                   "KeyedVectors.load_word2vec_format), .npy plus a .vocab.txt word list, or "
                   "tsv: vectors.tsv and metadata.tsv for the TensorFlow Embedding Projector.")
@click.option("-o", "--output", required=True, type=GivenPath(),
              help="File to write, - for standard output (for npy the words go beside it "
                   "in NAME.vocab.txt; for tsv a folder). Missing parent folders are made.")
@vectors_options
@workdir_option
@_errors_to_exit
def export(fmt, output, which, vectors_file, vectors_format, workdir):
    """Write the trained vectors for other tools (<unk> left out, most frequent word first)."""
    from . import export as export_mod
    from . import fileio

    vectors = _load_vectors(which, workdir, vectors_file, vectors_format)
    paths = export_mod.export(vectors, fmt, output)
    what = f"{which} vectors" if vectors_file is None else f"from {vectors_file}"
    click.echo(f"{vectors.n_words} words x {vectors.matrix.shape[1]} ({what}) -> "
               f"{', '.join(map(str, paths))}", err=fileio.is_stdout(output))  # it holds the vectors


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@workdir_option
@_errors_to_exit
def info(as_json, workdir):
    """What the working directory holds: corpus, vocabulary, settings, epochs, losses, speed."""
    import json

    from . import info as info_mod

    summary = info_mod.describe(Config(workdir=workdir).workdir_path)
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
    else:
        click.echo("\n".join(info_mod.format_lines(summary)))


@cli.command()
@click.argument("words", nargs=-1, required=True)
@click.option("-k", "k", type=click.IntRange(min=1), default=8, show_default=True,
              help="Neighbours drawn around each word.")
@click.option("-o", "--output", type=GivenPath(dir_okay=False), default="words.png",
              show_default=True, help="File to write: PNG, or SVG or PDF when its name ends "
              "in .svg or .pdf; - for standard output (PNG). Missing parent folders are made.")
@vectors_options
@workdir_option
@_errors_to_exit
def plot(words, k, output, which, vectors_file, vectors_format, workdir):
    """Draw WORDS and their K nearest neighbours on a 2-D PCA map (PNG, SVG or PDF; needs
    matplotlib)."""
    from . import fileio, plots
    plots.plot_format(output)  # before loading the model, so a bad name or a missing
    plots.require_matplotlib()  # extra fails fast
    vectors = _load_vectors(which, workdir, vectors_file, vectors_format)
    drawn = plots.word_map(vectors, list(words), k, output)
    click.echo(f"{len(drawn['words'])} words -> {drawn['path']}", err=fileio.is_stdout(output))
