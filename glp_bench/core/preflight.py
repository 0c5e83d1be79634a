"""Checks done before any work: output locations are writable and of the right kind (``outputs``), and
a run's stale temp files are cleaned. The shapes of files read back are checked in ``shapes``. Each
failure is a ``GlpError`` naming the option and the fix (exit 2), never a crash after an hour of work."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import GlpError


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_parent(path: Path, option: str) -> None:
    base = _nearest_existing(path.parent if not path.exists() else path)
    if not base.is_dir():
        raise GlpError(f"{option} {path}: {base} is a file, not a folder; choose another location")
    if not os.access(base, os.W_OK | os.X_OK):
        if os.statvfs(base).f_flag & os.ST_RDONLY:
            raise GlpError(f"{option} {path}: {base} is read-only (a read-only file system); make it writable or "
                           "choose another location")
        raise GlpError(f"{option} {path}: {base} is not writable; choose a writable location or fix its permissions")


def writable_dir(path: str | os.PathLike, option: str) -> Path:
    """``path`` is (or can be created as) a writable folder."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise GlpError(f"{option} {path} is a file, not a folder; choose a folder")
    _check_parent(path, option)
    # the lock file or temp files beside it need the parent writable too
    if path.exists():
        _check_parent(path.absolute().parent, option)
    return path


def writable_file(path: str | os.PathLike, option: str, *, writes: str | None, example: str = "") -> Path:
    """``path`` is (or can be created as) a writable file (atomic writes need its folder writable) that is no
    file of a run or a bundle, nor a results file of a format other than ``writes`` (``outputs.check_output``)."""
    from .outputs import check_output

    path = Path(path).expanduser()
    if path.is_dir() or str(path).endswith(os.sep):
        raise GlpError(f"{option} {path} is a folder; give a file name, e.g. {path}/report.md")
    _check_parent(path.absolute().parent, option)
    check_output(path, option, writes=writes, example=example)
    return path


# The temporary folders export's steps make beside the ONNX files (export, int8 candidates and their sources,
# quantization, node exclusion, the int8 alternatives, graph optimization); tests/test_confine.py keeps this list complete.
EXPORT_TEMP_PREFIXES = (".export-", ".int8-cands-", ".int8-src-", ".int8-alt-", ".src-", ".q-", ".exclude-", ".opt-")


def clean_temp_files(run_dir: str | os.PathLike) -> list[Path]:
    """Remove what a killed (or disk-full) writer left in a run directory: atomic-write temp files
    (``.NAME.*.tmp``, ``jsonio.atomic_write_text``; ``.NAME.tmp-PID``: prune's arrays and model staging folders)
    and export's temp folders (``*/onnx/.export-*``, ``.int8-cands-*``, ...: ``EXPORT_TEMP_PREFIXES``). Call only
    while holding the run's lock (``runlock.acquire``): then no other process owns them."""
    import shutil

    root = Path(run_dir)
    if not root.is_dir():
        return []
    stale = [p for p in root.rglob(".*.tmp") if p.is_file()] + list(root.rglob(".*.tmp-*")) + [
        p for prefix in EXPORT_TEMP_PREFIXES for p in root.glob(f"*/onnx/{prefix}*") if p.is_dir()]
    real = root.resolve()
    stale = [p for p in stale if p.resolve().is_relative_to(real)]  # never through a symlink out of the run
    for p in stale:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale
