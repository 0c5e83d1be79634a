"""Versioned, atomic JSON results files and the environment they were produced in.

Every results file glp-bench writes has ``{"format": <kind>, "version": N, "environment": {...}}``
so that readers can refuse files they do not understand (pyperf's habit) and so numbers are never
separated from the machine that produced them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from .errors import RunDirError
from .machine import cpu_model, logical_cores, physical_cores


def umask() -> int:
    """This process's umask (``/proc/self/status``; elsewhere set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish_permissions(folder: Path) -> None:
    """Temp files are private (0600/0700) and so are safetensors' weights: ``folder`` and the files in it get
    the usual 0755/0644, minus the umask, as ``open`` would have given them."""
    mask = umask()
    folder.chmod(0o755 & ~mask)
    for f in folder.iterdir():
        if f.is_file() and not f.is_symlink():
            f.chmod(0o644 & ~mask)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temp file in the same folder, fsync, ``os.replace``. The file
    gets the permissions ``open`` gives (0666 minus the umask), not the temp file's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # a full disk: name the file meant (write errors name none, mkstemp the temp file)
        Path(tmp).unlink(missing_ok=True)
        from .diskerrors import with_filename

        raise with_filename(e, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Strict JSON (``allow_nan=False``): a NaN or infinity, which JSON cannot hold, is written as null
    (an undefined value, e.g. a correlation of constant predictions), never as ``NaN``."""
    text = json.dumps(finite(obj), indent=2, sort_keys=False, default=_default, allow_nan=False)
    atomic_write_text(path, text + "\n")


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, +-inf; numpy's too) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    if type(obj).__module__ == "numpy":
        return finite(_default(obj))
    return obj


def _default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def read_versioned(path: str | os.PathLike, kind: str, supported: int) -> dict:
    """Load a results file of format ``kind``; refuse other kinds and newer versions clearly."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path} is not valid JSON ({e}); delete it or restore it from a backup") from None
    if not isinstance(data, dict) or data.get("format") != kind:
        raise RunDirError(f"{path} is not a glp-bench {kind} file")
    version = data.get("version")
    if not isinstance(version, int) or version > supported:
        raise RunDirError(
            f"{path} has {kind} format version {version!r}, this glp-bench reads up to {supported}; "
            "upgrade glp-bench or re-create the file"
        )
    return data


def sha256_file(path: str | os.PathLike) -> str:
    """The file's SHA-256, hex (``hashlib.file_digest``; glp_runtime keeps its own loop for Python 3.10)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def environment() -> dict:
    """What produced a result: versions, CPU, cores, accelerator. Cheap; imports lazily."""
    from importlib import metadata

    from .. import __version__

    def ver(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    env = {
        "glp_bench": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "logical_cores": logical_cores(),
        "physical_cores": physical_cores(),
        "packages": {
            p: ver(p)
            for p in ("torch", "transformers", "optimum-onnx", "onnx", "onnxruntime", "onnxruntime-gpu", "datasets")
            if ver(p)
        },
    }
    try:
        import torch

        if torch.cuda.is_available():
            env["cuda_device"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - environment probing must never fail a run
        pass
    return env


def stamp(kind: str, version: int, body: dict) -> dict:
    """``body`` wrapped with the format header and the environment."""
    return {"format": kind, "version": version, "environment": environment(), **body}
