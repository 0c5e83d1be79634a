"""One writer per run directory (or bundle folder): an OS-level lock (``fcntl.flock``) that the OS drops when
the process dies.

The lock is named after the *resolved* directory (symlinks followed), so every spelling of one directory
(``runs/x``, ``./runs/../runs/x``, a symlink to it) meets the same lock. The lock file sits *beside* the
directory (``runs/.cola-x.lock`` for ``runs/cola-x``), so that ``prune --fresh`` can move the directory aside
while holding it, and ``deploy`` can replace a bundle folder while holding its lock (a bundle's lock file is
removed when its deploy ends: ``release(remove=True)``). It holds the holder's pid,
host, command and start time, which a refused second writer names. A process holds a lock until it exits (or
``release``); taking it again in the same process is a no-op. Readers (report, gate) never take it; ``deploy``
asks :func:`being_written` so that it never ships a half-written choice.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from .errors import RunDirError

_HELD: dict[str, int] = {}  # resolved lock path -> open fd, kept for the process lifetime
PROBE_GRACE_S = 0.5  # a reader's probe (being_written) holds the lock for microseconds: retry that long


def resolved(path: str | os.PathLike) -> Path:
    """``path`` absolute with every symlink followed (for a path that does not exist yet: its existing part)."""
    return Path(path).expanduser().resolve()


def lock_path(run_dir: str | os.PathLike) -> Path:
    p = resolved(run_dir)
    return p.parent / f".{p.name}.lock"


def holder(run_dir: str | os.PathLike) -> dict | None:
    """What the lock file says about its (last) holder, or None."""
    try:
        return json.loads(lock_path(run_dir).read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None


def _try_lock(fd: int, mode: int = fcntl.LOCK_EX) -> bool:
    """A non-blocking flock on ``fd``; False (and ``fd`` closed) when another process holds it."""
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    return True


def describe(h: dict | None) -> str:
    return (f"pid {h.get('pid')} on {h.get('host')} since {h.get('since')}: {h.get('command')}"
            if h else "another process")


def _locked_fd(path: Path) -> int | None:
    """An open fd of ``path`` holding its exclusive flock, or None when another process holds it. A lock file
    removed by its holder (``release(remove=True)``) after this process opened it is opened again."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            return None
        try:
            st, now = os.fstat(fd), os.stat(path)
            if (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def acquire(run_dir: str | os.PathLike, command: str | None = None, option: str = "--run") -> Path:
    """Take the write lock of ``run_dir`` or raise ``RunDirError`` naming the process that holds it."""
    path = lock_path(run_dir)
    key = str(path)
    if key in _HELD:
        return path
    deadline = time.monotonic() + PROBE_GRACE_S
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = _locked_fd(path)
        except OSError as e:
            if e.errno == errno.EROFS:
                raise RunDirError(f"{path.parent} is read-only (a read-only file system: the lock file {path.name} "
                                  f"cannot be written); make it writable or choose another {option}") from None
            raise RunDirError(f"cannot create the lock file {path} ({e.strerror}); choose a writable {option}") from None
        if fd is not None:
            break
        if time.monotonic() > deadline:
            raise RunDirError(f"{run_dir} is being written by {describe(holder(run_dir))}; wait for it to finish "
                              f"(or stop it), or use another {option}") from None
        time.sleep(0.05)
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "command": command or " ".join(["glp-bench", *sys.argv[1:]])}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    _HELD[key] = fd
    return path


def held(run_dir: str | os.PathLike) -> bool:
    """Whether this process holds the write lock of ``run_dir``."""
    return str(lock_path(run_dir)) in _HELD


def release(run_dir: str | os.PathLike, remove: bool = False) -> None:
    """Drop the lock; ``remove``: delete the lock file first (a bundle's, so nothing is left beside it)."""
    release_file(lock_path(run_dir), remove)


def release_file(path: Path, remove: bool = False) -> None:
    """``release`` by the lock file's path (what ``acquire`` returned)."""
    fd = _HELD.pop(str(path), None)
    if fd is not None:
        if remove:
            path.unlink(missing_ok=True)  # while still held: a waiter then finds another file (_locked_fd)
        os.close(fd)  # closing drops the flock


def being_written(run_dir: str | os.PathLike) -> dict | None:
    """The holder (``holder``'s record, ``{}`` when unknown) when another process holds ``run_dir``'s write
    lock now, else None. Non-blocking: a shared flock taken and dropped at once."""
    path = lock_path(run_dir)
    if str(path) in _HELD:
        return None  # this process is the writer
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # never locked (or unreadable: nothing to learn)
    if not _try_lock(fd, fcntl.LOCK_SH):
        return holder(run_dir) or {}
    os.close(fd)
    return None
