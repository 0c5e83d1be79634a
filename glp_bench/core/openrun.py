"""Opening a run directory for writing (prune, export, latency): its write lock taken (``runlock``), what a
killed writer left cleaned, ``--fresh`` (the old run moved aside), a resumed run checked against the arguments
and inputs it was started with."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import runlock
from .errors import RunDirError
from .preflight import clean_temp_files, writable_dir
from .rundir import RunDir, now

IDENTITY_KEY = "identity"  # the manifest section of the run's inputs (glp_bench.data.identity)


@dataclass
class OpenRun:
    """A run directory opened for writing: ``run`` (loaded when it exists), ``lock`` (its lock file, held) and
    ``moved`` (where ``fresh`` put the old run). As a context manager: releases the lock on exit, if it took it."""

    run: RunDir
    lock: Path
    moved: Path | None = None
    took_lock: bool = True

    def __enter__(self) -> OpenRun:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        if self.took_lock:
            runlock.release_file(self.lock)
            self.took_lock = False


def open_run(path: str | os.PathLike, *, create: bool = False, fresh: bool = False, option: str = "--run",
             config: dict | None = None, resume_keys: tuple[str, ...] = (),
             identity: Callable[[], dict] | None = None) -> OpenRun:
    """Open run directory ``path`` for writing: take its lock, remove stale temp files, load its manifest.

    ``create``: the run may not exist yet (its folder must be writable; ``option`` names it in errors); else a
    missing run raises ``RunDirError`` before any lock is taken. ``fresh``: an existing run is moved aside to
    ``<path>.bak-<time>``. ``identity``: computes the inputs' fingerprint under the lock; it is set on the run
    and a resumed run must match it (``check_identity``). ``config``: a resumed run must agree on ``resume_keys``."""
    run = RunDir(path)
    if create:
        writable_dir(run.path, option)
    elif not run.exists():
        run.load()  # raises: not a run directory
    took = not runlock.held(path)
    lock = runlock.acquire(path, option=option)  # one writer per run directory
    opened = OpenRun(run, lock, took_lock=took)
    try:
        clean_temp_files(run.path)  # what a killed writer left (atomic-write temp files, export temp folders)
        if identity is not None:
            run.identity = identity()
        if run.exists() and fresh:
            opened.moved = Path(f"{run.path}.bak-{now().replace(':', '').replace('+00:00', '')}")
            run.path.rename(opened.moved)
        if run.exists():
            run.load()
            if config is not None:
                run.check_compatible(config, resume_keys)
            if run.identity is not None:
                check_identity(run, run.identity)
    except BaseException:
        opened.release()
        raise
    return opened


def differences(old: dict, new: dict) -> list[str]:
    """What changed between two identities, one phrase each (empty: the same)."""
    out = []
    for part, label in (("model", "base model"), ("data", "data")):
        a, b = old.get(part) or {}, new.get(part) or {}
        if a.get("source") != b.get("source") or (a.get("source") == "hub" and a.get("id") != b.get("id")):
            out.append(f"{label} was {a.get('id')!r}, now {b.get('id')!r}")
            continue
        fa, fb = a.get("files") or {}, b.get("files") or {}
        for name in sorted(set(fa) | set(fb)):
            if name not in fb:
                out.append(f"{label} file {name} is gone")
            elif name not in fa:
                out.append(f"{label} file {fb[name].get('name', name)} is new")
            elif fa[name] != fb[name]:
                out.append(f"{label} file {fb[name].get('name', name)} changed")
    return out


def check_identity(run: RunDir, identity: dict) -> None:
    """Refuse to resume ``run`` (loaded) when its model or data changed; record the identity in a run that has
    none yet. A new run gets it through ``RunDir.identity`` on creation."""
    old = run.section(IDENTITY_KEY)
    if old is None:
        run.set_section(IDENTITY_KEY, identity)  # written by the run's next save
        return
    diffs = differences(old, identity)
    if diffs:
        shown = "; ".join(diffs[:4]) + (f" (+{len(diffs) - 4} more)" if len(diffs) > 4 else "")
        raise RunDirError(
            f"{run.path} was computed from other inputs ({shown}); restore them to resume, or start over with "
            "--fresh (the old run is moved aside) or a new --run"
        )
