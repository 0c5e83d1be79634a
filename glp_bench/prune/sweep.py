"""The recipe sweep (``--recipe auto``): the full-depth model fine-tuned at each learning rate of the grid on the
85/15 split of train, from the top, every point recorded as it finishes (resumable); the winner is the run's lr."""

from __future__ import annotations

import time

from ..core.rundir import RunDir
from .plan import PrunePlan
from .work import sweep_first_wave


def lr_key(lr: float) -> str:
    return f"{lr:g}"


def run_sweep(run: RunDir, plan: PrunePlan, scores, on_update) -> float:
    """The auto recipe: fine-tune the full-depth model at the sweep's lrs (the search budget, 85% split), score
    on the 15% part (main metric, held-out loss as tie-break); record every point in ``manifest["recipe"]``
    as it finishes (resumable); return the winning lr. The grid is searched from the top: first
    ``sweep_first_wave``, then the next lower lr while the lowest tried wins (a lower lr is tried only when the
    scores still rise towards it; for all-MiniLM-L6-v2 on CoLA 2e-5 never left the majority class).
    ``scores(jobs)`` is an executor's ``scores``."""
    from .search import choose, decided_by

    sweep = plan.sweep
    rec = run.log("recipe", {"mode": "auto", **sweep, "points": {}, "chosen": None})
    grid = sorted(sweep["lrs"])
    tried = sweep_first_wave(grid)
    while True:
        todo = [lr for lr in tried if lr_key(lr) not in rec["points"]]
        jobs = [(lr, {"removed": (), "candidate": None, "lr": lr, "warmup": sweep["warmup_ratio"]}) for lr in todo]
        for lr, result in scores(jobs):
            result.pop("preds", None)
            rec["points"][lr_key(lr)] = {"lr": lr, **result}
            on_update()
        points = {i: rec["points"][lr_key(lr)] for i, lr in enumerate(tried)}
        best = choose(points)  # full tie: the highest lr (choose's last rule: the highest key)
        lower = grid.index(tried[0])
        if best != 0 or lower == 0:
            break
        tried = [grid[lower - 1], *tried]
    rec["skipped"] = [lr for lr in grid if lr not in tried]
    rec["chosen"] = {"lr": tried[best], "warmup_ratio": sweep["warmup_ratio"],
                     "decided_by": decided_by(points, best)}
    on_update()
    return rec["chosen"]["lr"]


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
            console.print(f"recipe sweep: lr {points[key]['lr']:g}, held-out {metric} {points[key]['score']:.4f}: "
                          f"{done}/{planned} done, elapsed {fmt_seconds(elapsed)}, ETA {fmt_seconds(eta)}",
                          markup=False, highlight=False)

    return update
