"""Checks done before any work: output locations are writable and of the right kind, and files read
back (manifests, latency results) have the fields and types glp-bench relies on. Each failure is a
``GlpError`` naming the option or file and the fix (exit 2), never a crash after an hour of work."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import GlpError, RunDirError


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


# --- shapes of files read back -------------------------------------------------------------------------
def _type_error(path, field: str, value, expected: str) -> RunDirError:
    return RunDirError(f"{path}: field {field} is {type(value).__name__} {value!r:.40}, expected {expected}; "
                       "the file was edited or damaged: restore it from a backup or re-create it")


def check_manifest(data: dict, path) -> None:
    """The manifest fields every command reads, with their types."""
    config = data.get("config")
    if not isinstance(config, dict):
        raise _type_error(path, "config", config, "an object")
    for key in ("task", "model"):  # a missing key is reported by the command that needs it
        if key in config and not isinstance(config[key], str):
            raise _type_error(path, f"config.{key}", config.get(key), "a string")
    for key in ("seed", "original_depth"):
        if key in config and (not isinstance(config[key], int) or isinstance(config[key], bool)):
            raise _type_error(path, f"config.{key}", config[key], "an integer")
    for key in ("models", "strategies"):
        if not isinstance(data.get(key, {}), dict):
            raise _type_error(path, key, data.get(key), "an object")
    for name, rec in data.get("models", {}).items():
        if not isinstance(rec, dict):
            raise _type_error(path, f"models.{name}", rec, "an object")
        depth, kept = rec.get("depth"), rec.get("kept_layers")
        if not isinstance(depth, int) or isinstance(depth, bool):
            raise _type_error(path, f"models.{name}.depth", depth, "an integer")
        if not isinstance(kept, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in kept):
            raise _type_error(path, f"models.{name}.kept_layers", kept, "a list of integers")
        for key in ("dev_scores", "onnx", "files"):
            if rec.get(key) is not None and not isinstance(rec[key], dict):
                raise _type_error(path, f"models.{name}.{key}", rec[key], "an object")
        for metric, v in (rec.get("dev_scores") or {}).items():
            if not isinstance(v, int | float) or isinstance(v, bool):
                raise _type_error(path, f"models.{name}.dev_scores.{metric}", v, "a number")
    for name, srec in data.get("strategies", {}).items():
        if not isinstance(srec, dict) or not isinstance(srec.get("models", {}), dict):
            raise _type_error(path, f"strategies.{name}", srec, "an object with a models object")


def _is_num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_latency(doc: dict, path) -> None:
    """The ``latency/<target>.json`` fields that report, gate and deploy read, with their types."""
    ms = doc.get("measurements", [])
    if not isinstance(ms, list):
        raise _type_error(path, "measurements", ms, "a list")
    for key in ("settings", "host", "target", "run", "reference"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise _type_error(path, key, doc[key], "an object")
    for i, m in enumerate(ms):
        where = f"measurements[{i}]"
        if not isinstance(m, dict):
            raise _type_error(path, where, m, "an object")
        for key in ("key", "model", "variant"):
            if not isinstance(m.get(key), str):
                raise _type_error(path, f"{where}.{key}", m.get(key), "a string")
        for key in ("depth", "batch", "seq", "threads"):
            if not _is_int(m.get(key)):
                raise _type_error(path, f"{where}.{key}", m.get(key), "an integer")
        summary, samples = m.get("summary_s"), m.get("samples_s")
        if summary is not None and (not isinstance(summary, dict) or not all(v is None or _is_num(v) for v in summary.values())):
            raise _type_error(path, f"{where}.summary_s", summary, "an object of numbers or null")
        if samples is not None and (not isinstance(samples, list) or not all(
                isinstance(r, list) and all(_is_num(x) for x in r) for r in samples)):
            raise _type_error(path, f"{where}.samples_s", samples, "a list of lists of numbers")


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
