"""Turning SIGINT / SIGTERM into a request to stop at the next safe point.

Training checks the flag after each optimizer step; when it is set it writes a checkpoint and
stops, so Ctrl-C never leaves a half-done update or a half-written file. A second Ctrl-C
while the checkpoint is being written is swallowed too (the write is short and atomic); the
handlers are the previous ones again once the ``with`` block ends.

Every other command takes SIGTERM as Ctrl-C (:func:`raise_on_sigterm`): an exception, so
its cleanup runs (temporary files, the workdir lock) before it exits 143.
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """Set by a signal handler (or by hand); read by the training loop after each step."""

    def __init__(self):
        self.signum: Optional[int] = None

    def set(self, signum: int = signal.SIGINT) -> None:
        if self.signum is None:
            self.signum = signum

    def is_set(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


class catch_signals:
    """``with catch_signals() as stop:`` sets ``stop`` on SIGINT / SIGTERM instead of
    raising. Outside the main thread (where Python cannot install handlers) it is a flag
    that only the caller can set."""

    def __init__(self, stop: Optional[StopFlag] = None):
        self.stop = stop or StopFlag()
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self.stop

    def _handle(self, signum, frame) -> None:
        self.stop.set(signum)

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt (see raise_on_sigterm)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def raise_on_sigterm() -> None:
    """Make SIGTERM raise Terminated in the main thread, unless something (a caller, a test
    harness) already handles it. train and launch set their stop flags over this."""
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
        signal.signal(signal.SIGTERM, _raise_terminated)
