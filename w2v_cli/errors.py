"""The project's exception types.

The core raises these; the CLI turns each into ``Error: <message>`` on stderr and the
exit code held by the class, so scripts can tell failures apart without parsing text.
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
