"""Run identity: what a run was computed from, so a resume never mixes base models or data sets.

The manifest's top-level ``identity`` key holds::

    {"model": {"source": "folder" | "hub", "id": ..., "files": {name: {"size": n, "sha256": h}}},
     "data":  {"source": "folder" | "hub", "id": ..., "files": {split: {"name": f, "size": n, "sha256": h}}}}

Only local folders are fingerprinted (weights, config and tokenizer files of the model; the split files
of the data); a hub id is recorded by name. A manifest written before identities existed gets one now
(nothing to compare with). The comparison (``differences``, ``check_identity``) is in ``glp_bench.core.openrun``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import DataError, ModelError, RunDirError
from ..core.jsonio import sha256_file
from ..core.openrun import IDENTITY_KEY as KEY
from ..core.openrun import differences

# The files that decide what a model computes: weights, config, tokenizer (README, images: not).
_MODEL_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model", ".py")


def _record(path: Path) -> dict:
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def check_safetensors(path: Path) -> None:
    """A truncated or garbage ``*.safetensors`` is bad input: say which file, before any work."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            f.keys()
    except Exception as e:  # noqa: BLE001 - safetensors raises several kinds for a broken file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelError(f"{path} is not a valid safetensors file ({first}); restore or re-download the model") from None


def model_identity(model: str) -> dict:
    """Fingerprint of a local model folder (checking its safetensors files), or the hub id."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return {"source": "hub", "id": model, "files": {}}
    files = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix in _MODEL_SUFFIXES:
            if f.suffix == ".safetensors":
                check_safetensors(f)
            try:
                files[f.name] = _record(f)
            except OSError as e:
                raise ModelError(f"cannot read {f} ({e.strerror}); fix its permissions") from None
    return {"source": "folder", "id": str(folder.resolve()), "files": files}


def data_identity(task_name: str, data_dir: str | os.PathLike | None) -> dict:
    """Fingerprint of the task's split files in a local folder, or the hub dataset's name."""
    from .loaders import HUB_DATASET, _split_file, _splits, resolve_task_dir
    from .resolve import get_task

    task = get_task(task_name)  # a name or a Task (custom tasks: their own train and dev files)
    if task.is_custom:
        return {"source": "files", "id": task.name,
                "files": {s: {"name": task.definition[s], **_record(Path(task.definition[s]))} for s in ("train", "dev")}}
    folder = resolve_task_dir(task, data_dir)
    if folder is None:
        return {"source": "hub", "id": f"{HUB_DATASET}/{task.name}", "files": {}}
    files = {}
    for split in _splits(task):
        found = _split_file(folder, task, split)
        if found is not None:
            try:
                files[split] = {"name": found[0].name, **_record(found[0])}
            except OSError as e:
                raise DataError(f"cannot read {found[0]} ({e.strerror}); fix its permissions") from None
    return {"source": "folder", "id": str(folder.resolve()), "files": files}


def current_identity(task_name: str, model: str, data_dir: str | os.PathLike | None) -> dict:
    return {"model": model_identity(model), "data": data_identity(task_name, data_dir)}


def check_data_unchanged(run, task, data_dir: str | os.PathLike | None, command: str) -> None:
    """Refuse ``command`` (export, deploy) on ``run`` when the data it would read (``task`` from ``data_dir``)
    differs from the data the run was pruned with: the recorded PyTorch dev scores would not be comparable.
    A run without an identity (made before identities existed) is not checked."""
    old = run.section(KEY, {}).get("data")
    if not old:
        return
    diffs = differences({"data": old}, {"data": data_identity(task, data_dir)})
    if diffs:
        shown = "; ".join(diffs[:4]) + (f" (+{len(diffs) - 4} more)" if len(diffs) > 4 else "")
        raise RunDirError(
            f"{run.path} was pruned on other data ({shown}); {command} would score on data its recorded PyTorch "
            "scores were not computed on: restore the file (or pass the --data-dir the run used), or prune again "
            "with --fresh")
