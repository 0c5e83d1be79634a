"""Where a user-named output may go (``report --output/--plot``, ``latency --out``, ``gate --json``,
``finetune --out``, ``deploy --out``): never over, or into, what glp-bench owns, so one mistyped path cannot
destroy finished work. Refused, before any work:

* a run's ``manifest.json``, its lock file, anything inside its models' folders (``depth-04/...``),
  ``search/`` or ``teacher/``, and for a folder output (``finetune --out``, ``deploy --out``) the run folder
  itself and those folders (``latency/`` too);
* anything inside a deploy bundle (its files are checked by sha256);
* an existing glp-bench results file of another kind (a run's manifest, a latency results file, a gate
  verdict, ...): an output replaces only a file of its own kind.

A run's top folder and its ``latency/`` folder stay open to outputs (``<run>/report.md``, a second latency
file). Each refusal is a ``GlpError`` naming the option, what the path is, and the fix (exit 2).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from glp_runtime.bundle import FORMAT as BUNDLE_FORMAT
from glp_runtime.bundle import MANIFEST as BUNDLE_MANIFEST

from .errors import GlpError
from .rundir import FORMAT as RUN_FORMAT
from .rundir import LATENCY_DIR, MANIFEST, SEARCH_DIR, TEACHER_FILE
from .runlock import lock_path

RUN_FOLDERS = (SEARCH_DIR, Path(TEACHER_FILE).parts[0])  # a run's own folders besides its models'
_FORMAT_HEAD = re.compile(rb'\A\s*\{\s*"format"\s*:\s*"(glp-bench-[A-Za-z0-9-]+)"')


def results_format(path: Path) -> str | None:
    """The ``format`` of a glp-bench results file (every one starts with it), else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    m = _FORMAT_HEAD.match(head)
    return m.group(1).decode() if m else None


def _is_run(folder: Path) -> bool:
    return results_format(folder / MANIFEST) == RUN_FORMAT


def _is_bundle(folder: Path) -> bool:
    return results_format(folder / BUNDLE_MANIFEST) == BUNDLE_FORMAT


def _run_folder(root: Path, name: str, latency: bool) -> str | None:
    """What ``root/name`` is to the run, when it is one of the run's own folders (``latency/`` too if asked)."""
    d = root / name
    if (name in RUN_FOLDERS or latency and name == LATENCY_DIR) and d.is_dir():
        return f"its {name} folder"
    if (d / "model").is_dir() or (d / "onnx").is_dir():
        return f"the folder of its model {name}"
    return None


def _real(path: Path) -> Path:
    """``path`` with symlinks followed (a link to a manifest is the manifest)."""
    path = Path(path).expanduser().absolute()
    return path.resolve() if path.exists() or path.is_symlink() else path.parent.resolve() / path.name


def owner(path: str | os.PathLike, *, folder: bool = False) -> str | None:
    """Why ``path`` belongs to a run or a bundle (a phrase), else None. ``folder``: the output is a folder,
    so a run folder itself counts (a file output's path can never be one)."""
    real = _real(Path(path))
    if real.name.startswith(".") and real.name.endswith(".lock"):  # runlock's .NAME.lock beside the run
        run = real.parent / real.name[1:-len(".lock")]
        if _is_run(run) and lock_path(run) == real:
            return f"the lock file of the run {run}"
    if folder and _is_run(real):
        return "a run directory"
    for parent in real.parents:
        if _is_bundle(parent):
            return f"inside the deploy bundle {parent}"
        if _is_run(parent):
            rel = real.relative_to(parent).parts
            if rel == (MANIFEST,):
                return f"the manifest of the run {parent}"
            what = _run_folder(parent, rel[0], latency=folder and len(rel) == 1) if len(rel) > 1 or folder else None
            if what:
                return f"inside the run {parent} ({what})"
    return None


def check_output(path: str | os.PathLike, option: str, *, writes: str | None = None, folder: bool = False,
                 example: str = "") -> None:
    """Refuse an output ``path`` that belongs to a run or a bundle, or an existing glp-bench results file whose
    format is not ``writes`` (None: the output is no results file, so every one is refused)."""
    hint = f" (e.g. {example})" if example else ""
    why = owner(path, folder=folder)
    if why:
        raise GlpError(f"{option} {path} is {why}; writing there would destroy finished work: "
                       f"choose another {'folder' if folder else 'file'}{hint}")
    real = _real(Path(path))
    found = results_format(real) if real.is_file() else None
    if found and found != writes:
        raise GlpError(f"{option} {path} is a {found} results file, which this output would replace: "
                       f"choose another file{hint}")
