"""The shapes of files glp-bench reads back (a run's manifest, latency results): the fields every reader
relies on, with their types. A wrong-typed field is one ``RunDirError`` naming the file, the field and
the fix (exit 2), not a crash in a reader. Pure: no I/O, no other glp-bench module."""

from __future__ import annotations

from .errors import RunDirError


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
