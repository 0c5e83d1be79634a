"""A full disk, a read-only file system or a folder without write permission is not a bug: the CLI turns it
into one line naming the place (``glp-bench: error: no space left on the device holding X; ...``, exit 2).
Every write is atomic, so the manifest stays valid and the same command resumes once the cause is fixed."""

from __future__ import annotations

import errno
import os
import re

# errno -> kind; libraries that wrap the OSError (safetensors, torch, onnx) keep its text
KINDS = {errno.ENOSPC: "full", errno.EDQUOT: "full", errno.EROFS: "read-only", errno.EACCES: "denied",
         errno.EPERM: "denied"}
_TEXT = ((re.compile(r"no space left on device|os error 28|errno 28|storage ?full", re.I), "full"),
         (re.compile(r"read-only file system|os error 30|errno 30", re.I), "read-only"))


def disk_fault(exc: BaseException) -> tuple[str, str | None] | None:
    """``(kind, path or None)`` when ``exc`` (or an exception it was raised from) is a full disk, a read-only
    file system or a refused write; else None. ``kind``: ``full``, ``read-only`` or ``denied``."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in KINDS:
            return KINDS[e.errno], e.filename if isinstance(e.filename, str) else None
        for pattern, kind in _TEXT:
            if pattern.search(str(e)):
                return kind, None
        e = e.__cause__ or e.__context__
    return None


def message(kind: str, path: str | None, fallback: str | None) -> str:
    """The error line for :func:`disk_fault`'s result; ``fallback``: the place the command writes (its run or
    output) when the library did not say which file."""
    where = path or fallback
    resume = "finished work is saved: re-run the same command to resume"
    if kind == "full":
        at = f"the device holding {where}" if where else "a device glp-bench writes to"
        return f"no space left on {at}; free some space ({resume})"
    if kind == "read-only":
        return (f"{where or 'a place glp-bench writes to'} is read-only (a read-only file system); make it writable "
                f"or choose another location ({resume})")
    return (f"permission denied on {where or 'a place glp-bench uses'}; fix its permissions or choose another "
            f"location ({resume})")


def with_filename(e: OSError, path: str | os.PathLike) -> OSError:
    """``e`` naming ``path`` (the file meant, not a temp file beside it; ``write`` errors name none) when it is
    a disk fault; other errors as they are."""
    if e.errno in KINDS:
        return type(e)(e.errno, e.strerror or os.strerror(e.errno), str(path))
    return e
