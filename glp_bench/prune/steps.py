"""The search's steps as the stage runs them: the removal order per strategy (GLP's greedy loop, the baselines),
candidates scored through the executor, their held-out predictions stored and each step bootstrapped."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.rundir import RunDir
from .search import baseline_order, greedy_search


def removal_orders(pruner, strategies: list[str], min_depth: int, on_update, on_step, score_many,
                   **search_options) -> dict[str, list[int]]:
    """Removal order per strategy (GLP searched and logged in the manifest; baselines computed). ``score_many``
    scores a step's candidates (``candidate_scorer``); ``search_options`` go to ``greedy_search`` (``assess``,
    ``rescore_close``, ``rescore_many``)."""
    run, n = pruner.run, len(pruner.layers)
    orders = {}
    for strategy in strategies:
        rec = run.strategy_log(strategy)
        if strategy == "glp":
            order = greedy_search(pruner.layers, min_depth, score_many, rec["steps"], on_update=on_update,
                                  on_step=on_step, **search_options)
        else:
            order = baseline_order(strategy, n, pruner.plan.seed)[: n - min_depth]
        rec["order"] = order
        on_update()
        orders[strategy] = order
    return orders


def candidate_scorer(run: RunDir, executor, seeds: list[int]):
    """``score_many`` for ``greedy_search``: the executor scores each candidate with ``seeds``; the driver
    stores the held-out predictions (``RunDir.preds_path``) and logs the rest."""

    def score_many(removed, candidates):
        for c, rec in executor.score_many(tuple(removed), list(candidates), seeds=seeds):
            store_preds(run, len(removed), c, rec.pop("preds"))
            yield c, rec

    return score_many


@dataclass(frozen=True)
class ArmFiles:
    """Where successive halving keeps an arm's held-out predictions (``preds(step, arm, seed, rung)``) and
    paused states (``paused(step, arm, seed)``): a GLP step's candidates by default, ``sweep_files`` for the
    recipe sweep's learning rates."""

    preds: Callable[..., Path]
    paused: Callable[[int, Any, Any], Path]


def glp_files(run: RunDir) -> ArmFiles:
    return ArmFiles(run.preds_path, run.paused_path)


def sweep_files(run: RunDir) -> ArmFiles:
    return ArmFiles(lambda step, lr, seed, rung=None: run.sweep_preds_path(lr, seed, rung),
                    lambda step, lr, seed: run.sweep_paused_path(lr, seed))


def rung_scorer(run: RunDir, executor, seeds: list[int], rungs: tuple[float, ...], files: ArmFiles | None = None,
                job: Callable[[tuple[int, ...], Any], dict] | None = None):
    """``score_rung`` for ``greedy_search``'s successive halving: the executor trains each candidate from
    ``start`` to ``stop`` (shares of its budget) from the state saved at ``start`` (``files.paused``; a
    missing file: from the beginning, the same result); a paused candidate's state is saved for the next rung,
    a finished one's removed. Predictions are stored per rung (``files.preds``), the last as the full budget's.
    ``job(removed, arm)``: the score job's arguments (default: GLP's candidate ``arm``)."""
    files = files or glp_files(run)
    job = job or (lambda removed, c: {"removed": tuple(removed), "candidate": c})

    def score_rung(removed, candidates, start, stop):
        step = len(removed)
        rung = rungs.index(stop) if stop < 1 else None

        def resume_of(c):
            if start <= 0:
                return None
            paths = {str(s): files.paused(step, c, s) for s in seeds}
            return {s: str(p) for s, p in paths.items()} if all(p.is_file() for p in paths.values()) else None

        jobs = [(c, {**job(removed, c), "seeds": seeds, "pause_at": stop if stop < 1 else None,
                     "resume": resume_of(c)}) for c in candidates]
        for c, rec in executor.scores(jobs):
            store_preds(run, step, c, rec.pop("preds"), rung, files)
            for seed, state in (rec.pop("checkpoints", None) or {}).items():
                save_state(files.paused(step, c, seed), state)
            if stop >= 1:
                drop_paused(run, step, c, seeds, files)
            yield c, rec

    return score_rung


def rung_cutter(run: RunDir, task, held_labels, seed: int, seeds: list[int], files: ArmFiles | None = None,
                key: Callable[[Any], str] = str):
    """``cut(step, rung, records)`` for successive halving: the rung's measure per candidate
    (``glp_bench.prune.halving.rung_measure``, keyed by ``key``), its leader and those the paired bootstrap
    places clearly behind it (``behind``: ``{candidate: share of draws at least the leader}``); their paused
    states are removed."""
    from .halving import behind, rung_measure
    from .noise import draw_scores

    files = files or glp_files(run)
    labels = np.asarray(held_labels)
    name, metric = rung_measure(task)

    def cut(step: int, rung: int, records: dict) -> dict:
        preds = {c: np.stack([np.load(files.preds(step, c, s, rung)) for s in seeds]) for c in records}
        values = {c: float(np.mean([metric(p, labels) for p in preds[c]])) for c in preds}
        leader = max(values, key=lambda c: (values[c], c))
        out = behind(draw_scores(preds, labels, metric, seed=seed + step), leader)
        for c in out:
            drop_paused(run, step, c, seeds, files)
        return {"measure": name, "values": {key(c): round(v, 6) for c, v in values.items()}, "leader": leader,
                "stopped": out}

    return cut


def save_state(path: Path, state: dict) -> None:
    """``torch.save`` atomically (temp file + rename)."""
    import torch

    _atomic(path, lambda f: torch.save(state, f))


def drop_paused(run: RunDir, step: int, layer, seeds, files: ArmFiles | None = None) -> None:
    files = files or glp_files(run)
    for s in seeds:
        files.paused(step, layer, s).unlink(missing_ok=True)
    folder = files.paused(step, layer, seeds[0]).parent
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def save_array(path: Path, array) -> None:
    """``np.save`` atomically (temp file + rename)."""
    _atomic(path, lambda f: np.save(f, np.asarray(array)))


def _atomic(path: Path, write) -> None:
    """``write(file)`` into a temp file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def store_preds(run: RunDir, step: int, layer, preds: dict, rung: int | None = None,
                files: ArmFiles | None = None) -> None:
    for seed, p in preds.items():
        save_array((files or glp_files(run)).preds(step, layer, seed, rung), p)


def step_assessor(run: RunDir, task, held_labels, seed: int):
    """``assess(step, pool, chosen, ranking)`` for ``greedy_search``: the paired bootstrap of
    ``glp_bench.prune.noise`` over the stored held-out predictions (``None`` when a prediction file is missing, e.g.
    a step logged before predictions were stored)."""
    from .noise import assess, draw_scores, main_metric

    labels = np.asarray(held_labels)
    metric = main_metric(task)

    def run_assess(step: int, pool: dict, chosen: int, ranking: list[int]):
        try:
            preds = {c: np.stack([np.load(run.preds_path(step, c, s)) for s in rec.get("seeds", {})])
                     for c, rec in pool.items()}
        except (OSError, ValueError):
            return None
        if any(p.size == 0 for p in preds.values()):
            return None
        return assess(draw_scores(preds, labels, metric, seed=seed + step), chosen, ranking)

    return run_assess
