"""The project's exception types.

The core raises these; the CLI turns each into ``Error: <message>`` on stderr and the
exit code held by the class, so scripts can tell failures apart without parsing text.

Exit codes: 1 other, 2 usage (Click's own option errors use 2 as well), 3 data, 4 download,
5 model, 6 backend, 7 missing extra, 8 workdir locked, 9 storage (disk full, unwritable),
10 resume, 11 launch (a parameter-server job failed), 12 diverged (a loss or parameter
became nan or infinite), 130 / 143 interrupted by SIGINT / SIGTERM (after a checkpoint was
written), 141 standard output's reader closed the pipe (the CLI, quietly).
"""


class W2VError(Exception):
    """Base class of every error the core raises on purpose."""

    exit_code = 1


class UsageError(W2VError):
    """An option value or argument that cannot work (k too large, window 0, ...)."""

    exit_code = 2


class DataError(W2VError):
    """A corpus, vocabulary or id file that is missing, empty or malformed."""

    exit_code = 3


class DownloadError(W2VError):
    """The PTB archive could not be fetched or failed its checksum."""

    exit_code = 4


class ModelError(W2VError):
    """No trained model, or a checkpoint that does not match the vocabulary."""

    exit_code = 5


class BackendError(W2VError):
    """MXNet is missing or cannot use the requested device."""

    exit_code = 6


class MissingExtraError(W2VError):
    """An optional dependency (an extra such as ``plot``) is not installed."""

    exit_code = 7


class LockError(W2VError):
    """Another w2v process is writing to the same working directory."""

    exit_code = 8


class StorageError(W2VError):
    """A file could not be written (disk full, read-only, permission); the old file is intact."""

    exit_code = 9


class ResumeError(W2VError):
    """``--resume`` found nothing to resume, or settings or data that differ from the checkpoint."""

    exit_code = 10


class Interrupted(W2VError):
    """Training stopped on SIGINT or SIGTERM after writing a checkpoint.

    The exit code follows the shell's 128 + signal number convention.
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class LaunchError(W2VError):
    """A process of a parameter-server job failed, or the job ran out of time."""

    exit_code = 11


class DivergedError(W2VError):
    """Training diverged: the loss or the parameters became nan or infinite (nothing saved)."""

    exit_code = 12


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (MXNet's run to a stack trace), or its
    class name when the message is empty. A message that is a stack trace ("Traceback (most
    recent call last):", then frames, then "MXNetError: what") gives what follows its last
    "...Error:"."""
    text = str(e).strip()
    lines = text.splitlines()
    if lines and lines[0].startswith("Traceback"):
        errors = [x.split("Error:", 1)[1].strip() for x in lines if "Error:" in x]
        if errors and errors[-1]:
            return errors[-1]
    return lines[0] if text else type(e).__name__
