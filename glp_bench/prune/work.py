"""How much of a prune run's fine-tuning is done, in units of cost, for the progress ETA; and the two rules
of the plan that decide how much work there is (``sweep_first_wave``, ``depth_scaled_epochs``).

A fine-tune costs about (layers + 1) x examples x epochs (the embeddings and head weigh about one layer; the
same rule as the plan's time estimate). With the ``fast`` budget a final fine-tune costs several candidates
and the full-depth one several finals, so an ETA that counts fine-tunes runs ahead of the clock; this one
counts their cost. Pure: reads the plan and the run's records, nothing else.
"""

from __future__ import annotations


def depth_scaled_epochs(epochs: float, original_depth: int, depth: int) -> float:
    """The full model's compute for a model of ``depth`` of ``original_depth`` layers (rounded to 0.01)."""
    return round(epochs * original_depth / max(depth, 1), 2)


def sweep_first_wave(lrs) -> list[float]:
    """The sweep's first points: every lr but the lowest (``run_sweep`` tries a lower one only while the lowest
    tried wins)."""
    lrs = sorted(lrs)
    return lrs[1:] if len(lrs) > 2 else lrs


def cost(depth: int, examples: float, epochs: float) -> float:
    return (depth + 1) * examples * epochs


def prune_work(plan, n_layers: int, min_depth: int, n_fit: int, n_train: int, recipe: dict | None,
               steps: list[dict], models: dict) -> tuple[float, float]:
    """``(done, total)`` for the sweep, the GLP candidates and the finals of ``plan`` (a ``PrunePlan``) on a
    model of ``n_layers``; ``recipe``, ``steps``, ``models``: the run's records (``manifest["recipe"]``, the glp
    steps, ``manifest["models"]``). Extra candidate seeds from ``--rescore-close`` are not counted."""
    search = min(plan.search.max_samples or n_fit, n_fit) * plan.search.epochs
    final = min(plan.final.max_samples or n_train, n_train)
    done = total = 0.0

    if plan.sweep:  # full-depth fine-tunes at the search budget
        points = len((recipe or {}).get("points") or {})
        planned = points if (recipe or {}).get("chosen") else max(points, len(sweep_first_wave(plan.sweep["lrs"])))
        done += points * cost(n_layers, search, 1)
        total += planned * cost(n_layers, search, 1)

    if "glp" in plan.strategies:  # step from depth k: k candidates of k - 1 layers
        for i, k in enumerate(range(n_layers, min_depth, -1)):
            one = cost(k - 1, search, 1) * plan.search_seeds
            total += k * one
            if i < len(steps):
                done += len(steps[i].get("candidates") or {}) * one

    def final_cost(depth: int) -> float:
        if depth == n_layers:
            epochs = plan.reference_epochs or plan.final.epochs
        elif plan.depth_epochs == "scaled":
            epochs = depth_scaled_epochs(plan.final.epochs, n_layers, depth)
        else:
            epochs = plan.final.epochs
        return cost(depth, final, epochs)

    seeds = plan.final_seeds
    total += final_cost(n_layers) * seeds
    total += sum(final_cost(d) for d in range(min_depth, n_layers)) * len(plan.strategies) * seeds
    for rec in models.values():
        if rec.get("dev_scores") is not None:
            extra = len([s for s in (rec.get("seeds") or {}) if s != str(plan.seed)])
            done += final_cost(int(rec["depth"])) * (1 + min(extra, seeds - 1))
    return done, max(total, done)


def finals_left(layers: list[int], min_depth: int, strategies: list[str], seed: int, final_seeds: int,
                glp_steps: list[dict], models: dict) -> tuple[int, int]:
    """``(distinct final models, final fine-tunes left)`` of a run: every strategy's kept-layer sets, each set once
    (strategies share the sets they both reach), times ``final_seeds``, less those the run's ``models`` records
    finished. A GLP depth whose step is not decided yet counts as a new set (an upper bound)."""
    from .search import baseline_order

    n = len(layers)
    sets, undecided = set(), 0
    for strategy in strategies:
        if strategy == "glp":
            order = [s["chosen"] for s in glp_steps if s.get("chosen") is not None][: n - min_depth]
            undecided = n - min_depth - len(order)
        else:
            order = baseline_order(strategy, n, seed)[: n - min_depth]  # as removal_orders
        sets.update(tuple(i for i in layers if i not in order[:k]) for k in range(len(order) + 1))
    done = {tuple(r.get("kept_layers") or ()): r for r in models.values() if r.get("dev_scores") is not None}
    left = undecided * final_seeds
    for kept in sets:
        rec = done.get(kept)
        if rec is None:
            left += final_seeds
        else:
            extra = len([s for s in (rec.get("seeds") or {}) if s != str(seed)])
            left += max(final_seeds - 1 - extra, 0)
    return len(sets) + undecided, left


def eta_text(seconds: float, started: bool) -> str:
    """The plan line's time estimate: minutes, ``<1 min`` for a short run; ``left`` when resuming."""
    when = "<1 min" if seconds < 60 else f"{seconds / 60:.0f} min"
    return f"estimated {when}" + (" left (resuming)" if started else "")
