"""A lock on the working directory, so two w2v processes never interleave their writes.

The lock is ``WORKDIR/.w2v.lock``, held with ``flock`` for as long as the process writes. The
kernel drops an flock when its process dies, however it dies, so a lock left by a killed
process never blocks anyone: the file is still there (with the dead process's id) but not
locked, and the next process takes it over and reports it as stale. The file's content (pid,
host, command, start time) is only there for the message a blocked process shows.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .errors import DataError, LockError, StorageError

LOCK_FILE = ".w2v.lock"


@dataclass
class WorkdirLock:
    """A held lock. ``stale``: what a dead process left in the lock file (else None)."""

    path: Path
    fd: int
    stale: Optional[dict] = field(default=None)

    def release(self) -> None:
        if self.fd < 0:
            return
        # Unlink before unlocking: a process that opened the old file then finds it is no
        # longer the file at the lock's path, and retries (see acquire).
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> "WorkdirLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(info: dict) -> str:
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, "
            f"`w2v {info.get('command', '?')}` started {when}")


def _read(fd: int) -> Optional[dict]:
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode("utf-8"))
        return info if isinstance(info, dict) else None
    except (OSError, ValueError):
        return None


def acquire(workdir: Path, command: str, create: bool = True) -> WorkdirLock:
    """Lock ``workdir`` for ``command`` or raise LockError at once, naming the process that
    holds it. ``create``: make the folder if needed (else a missing one is a DataError)."""
    workdir = Path(workdir)
    path = workdir / LOCK_FILE
    if not create and not workdir.is_dir():
        raise DataError(f"no prepared dataset in {workdir}: run `w2v prepare` first")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"cannot create the working directory {workdir}: "
                           f"{e.strerror or e}") from None
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no lock (w2v targets Linux and macOS)
        return WorkdirLock(path, -1)
    for _ in range(100):
        try:  # never through a link: the lock writes into its file
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise StorageError(_not_a_file(path, "a symbolic link")) from None
            raise StorageError(f"cannot create the lock file {path}: {e.strerror or e}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StorageError(_not_a_file(path, "not a regular file"))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _read(fd) or {}
            os.close(fd)
            raise LockError(
                f"{workdir} is in use by another w2v process ({_describe(info)}); wait for it "
                f"to finish, stop it, or use another --workdir"
            ) from None
        except OSError as e:
            os.close(fd)
            raise StorageError(f"cannot lock {path}: {e.strerror or e}") from None
        # The holder we waited on may have unlinked the file between our open and our lock.
        try:
            same = os.lstat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        previous = _read(fd)
        stale = previous if previous and previous.get("pid") != os.getpid() else None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                "started": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        except OSError:
            pass  # the content is informational only; the flock is what locks
        return WorkdirLock(path, fd, stale)
    raise LockError(f"could not lock {workdir}: the lock file keeps changing")


def _not_a_file(path: Path, what: str) -> str:
    return (f"the lock file {path} is {what}; w2v writes its lock there and will not write "
            "through it: remove it, then run the command again")


def describe_stale(stale: dict) -> str:
    """A one-line note about a lock left by a dead process, for the CLI to show."""
    return f"removed a stale lock left by a process that is no longer running ({_describe(stale)})"
