"""Atomic file writes: a reader sees the old complete file or the new one, never a part.

Every file w2v writes goes through here: it is written under a temporary name in the same
folder (``.NAME.XXXXXX.tmp``), flushed, fsynced and renamed over the final name, and the
folder is fsynced so the rename itself survives a power cut. A failure while writing
(a full disk, a read-only folder) becomes a StorageError and leaves the previous file as it was.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .errors import StorageError, first_line

TEMP_SUFFIX = ".tmp"

_UMASK = os.umask(0)
os.umask(_UMASK)

STDOUT = "-"  # an output path that means standard output


def _storage_error(path: Path, e: OSError) -> StorageError:
    return storage_error(path, os_reason(e))


_SHORT_WRITE = re.compile(r"(\d+) requested and (\d+) written")  # numpy's tofile / np.save


def os_reason(e: BaseException) -> str:
    """What went wrong, in words: a full disk said plainly, however the writer reported it
    (an errno, MXNet's message, numpy's short write), else the system's message (the
    first line of any other error's)."""
    text = str(e)
    if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or \
            "No space left on device" in text:
        return "the disk is full (no space left on device)"
    if "FileStream.Write incomplete" in text:  # MXNet's writer says no more than this
        return "the write was cut short (the disk is probably full)"
    short = _SHORT_WRITE.search(text)
    if short:
        return (f"only {short[2]} of {short[1]} bytes could be written (the disk is probably "
                "full)")
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return first_line(e)


def storage_error(path: Path, reason: str) -> StorageError:
    """Writing ``path`` failed for ``reason``. A file written by rename is as it was; standard
    output, a FIFO, a device or a descriptor is written into, so nothing is claimed about it."""
    if str(path) == STDOUT:
        return StorageError(f"cannot write standard output: {reason}")
    try:
        mode = path.stat().st_mode
        direct = stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or _descriptor(path) is not None
    except OSError:
        direct = False
    kept = "" if direct else f" (the previous {path.name}, if any, is unchanged)"
    return StorageError(f"cannot write {path}: {reason}{kept}")


def _descriptor(path: Path) -> int | None:
    """The number of this process's open descriptor that ``path`` names (/dev/stdout,
    /dev/fd/3, /proc/self/fd/1, /proc/PID/fd/1 with this PID, or a symlink to one), else None.

    Opening such a path would make a new open file, at offset 0 and without the shell's
    append mode, and a rename would replace the file or fail on a pipe: it is written
    through the descriptor instead. The links are followed one at a time, since the last
    one (``/proc/self/fd/1 -> pipe:[N]``) names no path."""
    own = re.compile(rf"/proc/{os.getpid()}(/task/[0-9]+)?/fd|/dev/fd")  # /dev/fd: BSD, macOS
    for _ in range(40):  # the kernel's limit on links in one lookup
        if re.fullmatch("[0-9]+", path.name) and own.fullmatch(os.path.realpath(path.parent)):
            return int(path.name)
        try:
            path = path.parent / os.readlink(path)  # an absolute link replaces the whole
        except OSError:  # not a link (or not there): a path like any other
            return None
    return None


def is_stdout(path: str | os.PathLike) -> bool:
    """Whether writing ``path`` sends the bytes to standard output: ``-``, /dev/stdout, or a
    path naming another descriptor open on the same file. A message then goes to stderr."""
    if str(path) == STDOUT:
        return True
    fd = _descriptor(Path(path))
    try:
        return fd is not None and os.path.sameopenfile(fd, 1)
    except OSError:  # either is closed
        return False


def _target(path: Path) -> tuple[Path, str]:
    """Where writing ``path`` lands, and how: ``("replace", file)`` for a regular file or a
    missing one (a symlink followed to its target, so the link itself stays), ``("direct",
    path)`` for a FIFO or a character device (/dev/null), which a rename would replace."""
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return path, "replace"
    except OSError as e:
        raise _storage_error(path, e) from None
    if stat.S_ISREG(mode):
        return path, "replace"
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return path, "direct"
    kind = "a folder" if stat.S_ISDIR(mode) else "a block device" if stat.S_ISBLK(mode) \
        else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
    raise StorageError(f"cannot write {path}: it is {kind}; give a regular file, a FIFO, a "
                       f"character device such as /dev/null, or {STDOUT} for standard output")


def atomic_path(path: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """A context yielding a temporary path beside ``path``; on success it fsyncs it and
    renames it over ``path``.

    For writers that insist on opening the file themselves (``save_parameters``, ``np.save``).
    On any exception the temporary file is removed and ``path`` is untouched. OSErrors of
    the temporary file's creation, fsync and rename become StorageError; the body's own
    exceptions pass through (use :func:`atomic_write` to map those too). ``path`` is
    checked when this is called, so a refused one raises before anything is written.

    Only a regular file (or nothing) is replaced: a symlink's target is replaced and the link
    kept; a FIFO or a character device is yielded itself, to be written into; ``-`` is
    standard output, and a path naming an open descriptor (/dev/stdout, /dev/fd/3) that
    descriptor, written once the body has succeeded.
    """
    if str(path) == STDOUT:
        return _through_descriptor(None, path)
    path = Path(path)
    fd = _descriptor(path)
    if fd is not None:
        _check_writable(fd, path)
        return _through_descriptor(fd, path)
    path, how = _target(path)
    return contextlib.nullcontext(path) if how == "direct" else _replacing(path)


@contextlib.contextmanager
def atomic_paths(paths: list[str | os.PathLike]) -> Iterator[list[Path]]:
    """:func:`atomic_path` for files that belong together (a matrix and its words): every
    path is checked before any temporary file is made, and each is renamed into place only
    once the body has written them all and every temporary file is on disk, so a refused or
    failed write (or fsync) replaces none."""
    writers = [atomic_path(p) for p in paths]
    with contextlib.ExitStack() as stack:  # it leaves the last entered first: enter backwards,
        tmps = [stack.enter_context(w) for w in reversed(writers)][::-1]  # to commit in order
        yield tmps
        for path, tmp in zip(paths, tmps):  # before the first rename (each fsyncs again: cheap)
            if stat.S_ISREG(os.stat(tmp).st_mode):  # not a FIFO or device written into
                try:
                    with open(tmp, "rb+") as f:
                        os.fsync(f.fileno())
                except OSError as e:
                    raise _storage_error(Path(path), e) from None


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """The temporary file of :func:`atomic_path` for a regular (or missing) ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise _storage_error(path, e) from None
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        yield tmp_path
        try:
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp_path, path)
        except OSError as e:
            raise _storage_error(path, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise
    fsync_dir(path.parent)


def _check_writable(fd: int, path: Path) -> None:
    """StorageError unless descriptor ``fd`` is open for writing."""
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError as e:
        raise StorageError(f"cannot write {path}: descriptor {fd} is not open ({e.strerror})") \
            from None
    if flags & os.O_ACCMODE == os.O_RDONLY:
        raise StorageError(f"cannot write {path}: descriptor {fd} is open for reading only")


@contextlib.contextmanager
def _through_descriptor(fd: int | None, name: str | Path) -> Iterator[Path]:
    """A temporary file whose bytes go to descriptor ``fd`` (None: ``sys.stdout``) once the
    body has succeeded, so a failed write sends nothing rather than a part. The descriptor's
    own offset and append mode are kept, as a shell's ``>>`` or ``>`` set them."""
    with tempfile.TemporaryDirectory(prefix="w2v-out.") as d:
        tmp = Path(d) / "out"
        tmp.touch()
        yield tmp
        try:
            sys.stdout.flush()  # what was printed before comes first
            sys.stderr.flush()
            with open(tmp, "rb") as f, _opened(fd) as out:
                shutil.copyfileobj(f, out)
                out.flush()
        except BrokenPipeError:
            raise  # the reader has gone (`| head`): the CLI ends quietly, as cat would
        except OSError as e:  # a full disk behind a redirect
            raise _storage_error(Path(name), e) from None


def _opened(fd: int | None):
    """Descriptor ``fd`` as a binary file that leaves it open when closed; None: stdout."""
    if fd is None:
        return contextlib.nullcontext(sys.stdout.buffer)
    return open(fd, "wb", closefd=False)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` and move the result over ``path`` atomically; an OSError
    from ``write`` (ENOSPC, EIO, ...) becomes a StorageError, ``path`` stays as it was."""
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            write(tmp)
        except OSError as e:
            raise _storage_error(path, e) from None


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    write_files({path: data})


def write_json(path: str | os.PathLike, obj) -> None:
    write_bytes(path, (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write one array in numpy's .npy format, atomically."""
    write_files({path: array})


def write_files(files: dict[str | os.PathLike, bytes | np.ndarray]) -> None:
    """Write files that belong together through :func:`atomic_paths`, each ``bytes`` as they
    are or an array in numpy's .npy format: a refused path or a failed write (a StorageError)
    replaces none of them (a FIFO or a descriptor before it may have been written into)."""
    with atomic_paths(list(files)) as tmps:
        for (path, data), tmp in zip(files.items(), tmps):
            try:
                with open(tmp, "wb") as f:
                    if isinstance(data, np.ndarray):
                        # Through a plain .write(): given a real file, numpy calls
                        # ndarray.tofile, whose short write on a full disk is an OSError
                        # without errno ("N requested and M written"); Python's reports ENOSPC.
                        np.save(_Writer(f), data, allow_pickle=False)
                    else:
                        f.write(data)
            except OSError as e:
                raise _storage_error(Path(path), e) from None


class _Writer:
    def __init__(self, f):
        self.write = f.write


def link_or_copy(src: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Make ``dest`` hold the bytes of ``src``, atomically: a hard link when the file system
    allows one (no second copy on disk), else a copy."""
    src, dest = Path(src), Path(dest)
    if str(dest) == STDOUT or _target(dest)[1] == "direct":  # never unlink a FIFO or device
        atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp))
        return

    def write(tmp: Path) -> None:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
    atomic_write(dest, write)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success fsync every file in it and rename
    it to ``path`` (replacing a folder already there). A crash leaves either no ``path`` or a
    complete one; on an exception the temporary folder is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent))
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; give the folder the usual mode
    except OSError as e:
        raise _storage_error(path, e) from None
    try:
        yield tmp
        try:
            for f in tmp.iterdir():
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
            fsync_dir(tmp)
            if path.exists():
                # Only one writer holds the workdir lock, so moving the old folder aside and
                # deleting it after the rename cannot race with another writer.
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX,
                                            dir=path.parent))
                os.replace(path, old / "old")
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except OSError as e:
            raise _storage_error(path, e) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(path.parent)


# What tempfile names our temporaries: ".NAME." + 8 characters from [a-z0-9_] + ".tmp"; a
# user's own ".notes.tmp" does not match and is left alone.
_OUR_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX))


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files and folders (``.NAME.XXXXXX.tmp``) that a killed writer left
    in ``directory``. Call only while holding the workdir lock. Returns what was removed."""
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        if _OUR_TEMP.fullmatch(p.name):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
            removed.append(p)
    return removed


def read_json(path: str | os.PathLike, what: str, error, missing: str, advice: str = ""):
    """The parsed JSON in ``path``. ``error`` (an exception class) with the message
    ``missing`` when there is no such file, or saying the file is not a readable ``what``
    (followed by ``advice``, e.g. "; re-run `w2v prepare`") when it cannot be read or parsed."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(missing) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise error(f"{path} is not a readable {what}: {e}{advice}") from None


def check_format(path: Path, d, fmt: str, version: int, what: str, error,
                 oldest: int | None = None) -> dict:
    """Return ``d`` if it is a dict of format ``fmt`` at a version from ``oldest`` (default:
    ``version``) to ``version``; else raise ``error`` saying whether the file is not ours,
    from a newer w2v, or of an unknown version."""
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise error(f"{path} is not a w2v {what} file")
    v = d.get("version")
    if isinstance(v, int) and not isinstance(v, bool) and v > version:
        raise error(f"{path} was written by a newer w2v ({what} format version {v}); this w2v "
                    f"reads version {version}: upgrade w2v")
    if not (isinstance(v, int) and (version if oldest is None else oldest) <= v <= version):
        raise error(f"{path} has an unknown {what} format version {v!r}; this w2v reads "
                    f"version {version}")
    return d


def fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sha1_of(path: str | os.PathLike) -> str:
    """SHA-1 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
