"""The ``w2v`` command's entry point, also for ``python -m w2v_cli`` and for launchers that
start it by interpreter path (``w2v launch`` starts its workers this way).

Ctrl-C (or SIGTERM) at any moment exits 130 (143) without a traceback, also while the
modules load, the first tenths of a second: only the standard library is imported before
the ``try``, and an interrupt that an import swallows still decides the exit code.
"""

import signal
import sys

# Exit codes of interrupts that Python or a C extension caught and reported instead of
# raising: one in a weakref callback or a C module's init (imports run both) is reported
# as "Exception ignored"; numpy prints one that cuts its C import short, then raises
# ImportError.
_swallowed: list = []


def main() -> None:
    sys.unraisablehook = lambda u: _keep(u.exc_value, sys.__unraisablehook__, u)
    sys.excepthook = lambda *exc: _keep(exc[1], sys.__excepthook__, *exc)
    try:
        from .cli import cli

        cli.main(prog_name="w2v")  # exits itself, with the command's exit code
    except KeyboardInterrupt as e:  # before the command has started, or after it has ended
        sys.exit(_exit_code(e))
    except SystemExit as e:
        if _swallowed and not e.code:  # the command went on to the end
            sys.exit(_swallowed[0])
        raise
    except Exception:
        if not _swallowed:
            raise
        sys.exit(_swallowed[0])  # an import that the interrupt broke


def _keep(e: BaseException, report, *args) -> None:
    if isinstance(e, KeyboardInterrupt):
        _swallowed.append(_exit_code(e))
    else:
        report(*args)


def _exit_code(e: KeyboardInterrupt) -> int:
    term = type(e).__name__ == "Terminated"  # interrupt.Terminated: SIGTERM, once a command runs
    return 128 + (signal.SIGTERM if term else signal.SIGINT)


if __name__ == "__main__":
    main()
