"""One writer per run directory: an OS-level lock (``fcntl.flock``) that the OS drops when the process dies.

The lock file sits *beside* the run directory (``runs/.cola-x.lock`` for ``runs/cola-x``), so that
``prune --fresh`` can move the directory aside while holding it. It holds the holder's pid, host, command
and start time, which a refused second writer names. A process holds a directory's lock until it exits
(or ``release``); taking it again in the same process is a no-op. Readers (report, gate, deploy) never
take it: every write is atomic, so they always see a whole file.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

from .errors import RunDirError

_HELD: dict[str, int] = {}  # resolved lock path -> open fd, kept for the process lifetime


def lock_path(run_dir: str | os.PathLike) -> Path:
    p = Path(run_dir).expanduser().absolute()
    return p.parent / f".{p.name}.lock"


def holder(run_dir: str | os.PathLike) -> dict | None:
    """What the lock file says about its (last) holder, or None."""
    try:
        return json.loads(lock_path(run_dir).read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None


def _try_lock(fd: int) -> bool:
    """An exclusive, non-blocking flock on ``fd``; False (and ``fd`` closed) when another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    return True


def acquire(run_dir: str | os.PathLike, command: str | None = None) -> Path:
    """Take the write lock of ``run_dir`` or raise ``RunDirError`` naming the process that holds it."""
    path = lock_path(run_dir)
    key = str(path)
    if key in _HELD:
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RunDirError(f"cannot create the lock file {path} ({e.strerror}); choose a writable --run") from None
    if not _try_lock(fd):
        h = holder(run_dir) or {}
        who = (f"pid {h.get('pid')} on {h.get('host')} since {h.get('since')}: {h.get('command')}"
               if h else "another process")
        raise RunDirError(
            f"{run_dir} is being written by {who}; wait for it to finish (or stop it), or use another --run"
        ) from None
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "command": command or " ".join(["glp-bench", *sys.argv[1:]])}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    _HELD[key] = fd
    return path


def release(run_dir: str | os.PathLike) -> None:
    fd = _HELD.pop(str(lock_path(run_dir)), None)
    if fd is not None:
        os.close(fd)  # closing drops the flock


def acquire_folder(folder: str | os.PathLike, what: str) -> None:
    """Lock ``folder`` itself (flock on its directory fd: no file left behind), e.g. one deploy at a time
    into a bundle's parent folder; RunDirError when another process holds it."""
    folder = Path(folder).expanduser().absolute()
    key = f"{folder}/"
    if key in _HELD:
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as e:
        raise RunDirError(f"cannot open {folder} ({e.strerror}); choose a writable location") from None
    if not _try_lock(fd):
        raise RunDirError(f"another process is writing {what} in {folder}; wait for it to finish, or choose "
                          "another location") from None
    _HELD[key] = fd


def release_folder(folder: str | os.PathLike) -> None:
    fd = _HELD.pop(f"{Path(folder).expanduser().absolute()}/", None)
    if fd is not None:
        os.close(fd)
