"""What prepare and train print while they run: progress lines, scores, the loss plot.

Diagnostics all: they go to stderr, so stdout holds results alone.
"""

from __future__ import annotations

import time

import click

from .errors import W2VError


def _prepare_progress(tty: bool):
    def report(p):
        if not tty:
            return
        line = f"read {p.tokens:,} tokens ({p.tokens / max(p.seconds, 1e-9):,.0f}/s)"
        if p.total_bytes:
            frac = min(p.bytes / p.total_bytes, 1.0)
            eta = p.seconds * (1 - frac) / frac if frac > 0 else 0.0
            line += f"  {100 * frac:.0f}%  ETA {eta:.0f} s"
        click.echo("\r" + line, err=True, nl=False)
    return report


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


# Without a terminal (a log file, a launched worker) progress is a line this often, not a
# line redrawn in place: a long job's log shows how far it has got without growing fast.
PROGRESS_LINE_SECONDS = 10.0


def _train_progress(tty: bool, every: float = PROGRESS_LINE_SECONDS, clock=time.monotonic):
    last = {"at": clock()}

    def report(p):
        eta = (p.batches - p.batch) * p.batch_size / max(p.tokens_per_sec, 1e-9) \
            if p.batch_size else 0.0
        who = f"worker {p.worker[0]}/{p.worker[1]}: " if p.worker else ""
        line = (f"{who}epoch {p.epoch}/{p.epochs}  batch {p.batch}/{p.batches}  "
                f"loss {p.loss:.4f}  {p.tokens_per_sec:,.0f} tokens/sec"
                + ("" if p.epoch_done else f"  ETA {eta:.0f} s"))
        if tty:
            # the spaces clear what is left of a longer line drawn before
            click.echo("\r" + line + ("  " * 4 if p.epoch_done else ""), err=True,
                       nl=p.epoch_done)
        elif p.epoch_done or clock() - last["at"] >= every:
            click.echo(line, err=True)
            last["at"] = clock()
    return report


def _eval_report(epochs: int):
    from .quality import format_row

    return lambda row, _quality: click.echo("\n".join(format_row(row, epochs)), err=True)


def _plot_loss(record: dict, workdir, plotter) -> None:
    """Draw loss.png in the workdir after training, by ``plotter`` (plots.loss_plotter). The
    run is already saved, so no failure here (a missing matplotlib, a full disk) may turn it
    into an error: it only skips the plot."""
    from .info import LOSS_PLOT_FILE
    from .quality import curves

    try:
        path = plotter.loss_curve(curve=record.get("curve", []), path=workdir / LOSS_PLOT_FILE,
                                  epochs=len(record["epochs"]), scores=curves(record),
                                  marked=record.get("quality", {}).get("kept", {}).get("epoch"))
    except W2VError as e:
        click.echo(f"loss plot skipped: {e}", err=True)
    else:
        click.echo(f"loss curve -> {path}", err=True)
