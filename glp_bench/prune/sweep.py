"""The recipe sweep (``--recipe auto``): the full-depth model fine-tuned at each learning rate of the grid on the
85/15 split of train, from the top, every point recorded as it finishes (resumable); the winner is the run's lr."""

from __future__ import annotations

import time

from ..core.rundir import RunDir
from .plan import PrunePlan
from .work import sweep_first_wave


def lr_key(lr: float) -> str:
    return f"{lr:g}"


def sweep_job(lr: float, warmup: float) -> dict:
    """The score job of one sweep point: the full-depth model at ``lr``."""
    return {"removed": (), "candidate": None, "lr": lr, "warmup": warmup}


def run_sweep(run: RunDir, plan: PrunePlan, scores, on_update, halving=None) -> float:
    """The auto recipe: fine-tune the full-depth model at the sweep's lrs (the search budget, 85% split), score
    on the 15% part (main metric, held-out loss as tie-break); record every point in ``manifest["recipe"]``
    as it finishes (resumable); return the winning lr. The grid is searched from the top: first
    ``sweep_first_wave``, then the next lower lr while the lowest tried wins (a lower lr is tried only when the
    scores still rise towards it; for all-MiniLM-L6-v2 on CoLA 2e-5 never left the majority class).
    ``scores(jobs)`` is an executor's ``scores``.

    With ``halving`` ``(rungs, score_rung, cut)`` (``--search-halving on``) the first wave is one round of
    successive halving (``search.halving_step``, the lrs as its candidates, ``recipe["halving"]`` its log): an lr
    clearly behind the leader at a rung stops there (its point has ``stopped_at``), and the winner is chosen
    among the lrs that trained their whole budget, whose scores are bit for bit the full sweep's. A sweep
    started without it (points but no log) finishes without it."""
    from .search import choose, decided_by, halving_step

    sweep = plan.sweep
    rec = run.log("recipe", {"mode": "auto", **sweep, "points": {}, "chosen": None})
    grid = sorted(sweep["lrs"])
    tried = sweep_first_wave(grid)
    if halving is not None and len(tried) > 1 and ("halving" in rec or not rec["points"]):
        rungs, score_rung, cut = halving

        def with_lr(removed, lrs, start, stop):
            for lr, result in score_rung(removed, lrs, start, stop):
                yield lr, {"lr": lr, **result}

        log = {"candidates": rec["points"], "halving": rec.setdefault("halving", {"rungs": []})}
        halving_step(0, log, [], tried, rungs, with_lr, cut, on_update, key=lr_key)
    while True:
        todo = [lr for lr in tried if lr_key(lr) not in rec["points"]]
        jobs = [(lr, sweep_job(lr, sweep["warmup_ratio"])) for lr in todo]
        for lr, result in scores(jobs):
            result.pop("preds", None)
            rec["points"][lr_key(lr)] = {"lr": lr, **result}
            on_update()
        points = {i: rec["points"][lr_key(lr)] for i, lr in enumerate(tried)
                  if "stopped_at" not in rec["points"][lr_key(lr)]}
        best = choose(points)  # full tie: the highest lr (choose's last rule: the highest key)
        lower = grid.index(tried[0])
        if best != 0 or lower == 0:
            break
        tried = [grid[lower - 1], *tried]
    rec["skipped"] = [lr for lr in grid if lr not in tried]
    how = decided_by(points, best)
    if how == "only candidate" and len(points) < len(tried):
        how = "successive halving"  # the others stopped early
    rec["chosen"] = {"lr": tried[best], "warmup_ratio": sweep["warmup_ratio"], "decided_by": how}
    on_update()
    return rec["chosen"]["lr"]


def sweep_halving(run: RunDir, plan: PrunePlan, executor, task, held_labels):
    """``halving`` for ``run_sweep`` with ``--search-halving on`` (else ``None``): the GLP step's rungs and
    bootstrap cut, the lrs as candidates, their files in ``search/sweep/``, one seed (the sweep's)."""
    from .halving import RUNGS
    from .steps import rung_cutter, rung_scorer, sweep_files

    if plan.search_halving != "on" or not plan.sweep:
        return None
    files, seeds, warmup = sweep_files(run), [plan.seed], plan.sweep["warmup_ratio"]
    return (RUNGS, rung_scorer(run, executor, seeds, RUNGS, files, lambda removed, lr: sweep_job(lr, warmup)),
            rung_cutter(run, task, held_labels, plan.seed, seeds, files, key=lr_key))


def sweep_lines(run: RunDir, plan: PrunePlan, metric: str, console, on_update):
    """``on_update`` for ``run_sweep`` that also prints one plain line per finished sweep point, with elapsed time
    and ETA (the sweep adds no unit to the run's bar, so a log would show nothing for minutes otherwise)."""
    from ..core.progress import fmt_seconds

    t0 = time.monotonic()
    seen = set(run.section("recipe", {}).get("points") or {})
    first, wave = len(seen), len(sweep_first_wave(plan.sweep["lrs"]))

    def update():
        on_update()
        points = run.section("recipe", {}).get("points") or {}
        for key in [k for k in points if k not in seen]:
            seen.add(key)
            done, elapsed = len(points), time.monotonic() - t0
            planned = max(wave, done)
            eta = elapsed / max(done - first, 1) * (planned - done)
            point = points[key]
            what = (f"stopped at {point['stopped_at']} of its budget, clearly behind the leader (successive "
                    f"halving; held-out {metric} there {point['score']:.4f})" if point.get("stopped_at")
                    else f"held-out {metric} {point['score']:.4f}")
            console.print(f"recipe sweep: lr {point['lr']:g}, {what}: {done}/{planned} done, elapsed "
                          f"{fmt_seconds(elapsed)}, ETA {fmt_seconds(eta)}", markup=False, highlight=False)

    return update
