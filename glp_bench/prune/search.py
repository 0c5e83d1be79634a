"""Which layers to remove, in which order: greedy layer pruning (GLP) and the baselines. Pure logic.

GLP (Peer et al., arXiv 2105.14839): start from the *pre-trained* encoder; at each step every remaining
layer is a candidate; the candidate model (pre-trained weights minus the layers already chosen minus the
candidate) is scored by ``score(removed, candidate)``; the best-scoring removal is kept. The score function
(fine-tune on 85% of train, main metric on the other 15%) lives in ``glp_bench.prune.workload``; here it is any
callable, so the loop is tested with fake scores.

Tie rule (deterministic, documented): the highest score wins; among equal scores, the lowest held-out
loss (``"loss"`` in the score record, when present) wins; if that ties too, the candidate with the *highest
original layer index* is removed (upper layers are the most task-specific and the least transferable, so a
full tie falls back to the top-layer-dropping heuristic). NaN ranks last. The loss matters in practice:
a short fine-tune on CoLA often leaves every candidate at a Matthews correlation of exactly 0.0 (a constant
predictor), and the loss still tells the candidates apart.

Resumable: the search log (a list of step dicts stored in the manifest) is filled in place; finished
candidates are never scored again, and ``on_update`` is called after each one so the caller can persist it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

STRATEGIES = ("glp", "top", "bottom", "alternate", "random")

Score = dict  # {"score": float, ...anything else worth logging (metrics, seconds)}
ScoreMany = Callable[[tuple[int, ...], list[int]], Iterator[tuple[int, Score]]]


def parse_strategies(text: str) -> list[str]:
    from ..core.errors import GlpError
    from ..core.vocab import split_names

    try:
        names = [s.lower() for s in split_names(text)]
    except ValueError as e:
        raise GlpError(f"--strategy {e}: give comma-separated strategies, e.g. glp,top") from None
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown or not names:
        raise GlpError(f"unknown strategy {', '.join(unknown) or repr(text)}; choose from {', '.join(STRATEGIES)} (comma-separated)")
    return list(dict.fromkeys(names))


def default_min_depth(n_layers: int) -> int:
    """Half the original depth, rounded up (the paper prunes 12 -> 6)."""
    return math.ceil(n_layers / 2)


def baseline_order(strategy: str, n_layers: int, seed: int = 0) -> list[int]:
    """Removal order of a baseline, for all ``n_layers - 1`` possible removals (original numbering).

    top: 11, 10, 9, ... (Sajjad et al.); bottom: 0, 1, 2, ...; alternate: every other layer from the top
    (11, 9, 7, ...), then the rest from the top (10, 8, ...); random: a seeded permutation.
    """
    if strategy == "top":
        order = list(range(n_layers - 1, -1, -1))
    elif strategy == "bottom":
        order = list(range(n_layers))
    elif strategy == "alternate":
        order = list(range(n_layers - 1, -1, -2)) + list(range(n_layers - 2, -1, -2))
    elif strategy == "random":
        import numpy as np

        order = [int(i) for i in np.random.default_rng(seed).permutation(n_layers)]
    else:
        raise ValueError(f"not a baseline strategy: {strategy}")
    return order[: n_layers - 1]


def _finite(x: float | None, bad: float) -> float:
    return bad if x is None or math.isnan(x) else x


def _rank(rec: float | dict) -> tuple[float, float]:
    """How good a candidate is, before the layer index: (score, -loss); NaN or missing ranks last."""
    rec = rec if isinstance(rec, dict) else {"score": rec}
    return _finite(rec.get("score"), -math.inf), -_finite(rec.get("loss"), math.inf)


def choose(candidates: dict[int, float | dict]) -> int:
    """The layer to remove: best score, then lowest loss, then highest layer index (module docstring).
    Values are scores or score records ``{"score": s, "loss": l}``."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    return max(candidates.items(), key=lambda item: (*_rank(item[1]), item[0]))[0]


def decided_by(candidates: dict[int, float | dict], chosen: int) -> str:
    """What set ``chosen`` apart from the other candidates under :func:`choose`'s rule: ``"score"``,
    ``"loss"`` (tied on the score), ``"layer index"`` (tied on both) or ``"only candidate"``."""
    if len(candidates) <= 1:
        return "only candidate"
    mine = _rank(candidates[chosen])
    others = [_rank(v) for k, v in candidates.items() if int(k) != chosen]
    if all(o[0] != mine[0] for o in others):
        return "score"
    return "loss" if mine not in others else "layer index"


def ranking(candidates: dict[int, float | dict]) -> list[int]:
    """Candidates best first under :func:`choose`'s rule."""
    return [k for k, _ in sorted(candidates.items(), key=lambda item: (*_rank(item[1]), item[0]), reverse=True)]


def merge_records(first: Score, extra: Score) -> Score:
    """One candidate's record over the seeds of both (a re-score adds seeds): mean score and loss over all."""
    seeds = {**first.get("seeds", {}), **extra.get("seeds", {})}
    if not seeds:
        raise ValueError("merge_records needs per-seed records")
    vals = list(seeds.values())
    return {**first, "score": sum(v["score"] for v in vals) / len(vals),
            "loss": sum(v["loss"] for v in vals) / len(vals), "metrics": None, "seeds": seeds,
            "seconds": round(first.get("seconds", 0) + extra.get("seconds", 0), 2)}


def step_pool(step: dict) -> dict[int, Score]:
    """The candidates a step chose among: the re-scored ones when the step was re-scored, else all but those
    successive halving stopped early (``"stopped_at"``)."""
    pool = (step.get("rescore") or {}).get("candidates") or step["candidates"]
    return {int(k): v for k, v in pool.items() if "stopped_at" not in v}


def sequential(score: Callable[[tuple[int, ...], int], Score]) -> ScoreMany:
    """Score candidates one after the other in this process (the local executor)."""

    def score_many(removed: tuple[int, ...], candidates: list[int]) -> Iterator[tuple[int, Score]]:
        for c in candidates:
            yield c, score(removed, c)

    return score_many


Assess = Callable[[int, dict[int, Score], int, list[int]], dict]
# score_rung(removed, candidates, start, stop): the candidates trained from ``start`` to ``stop`` (shares of the
# budget; the driver keeps the paused states); cut(step_index, rung_index, records) -> {"leader", "stopped":
# {candidate: share}, ...the rung's measure}: who is clearly behind the rung's leader (glp_bench.prune.halving).
ScoreRung = Callable[[tuple[int, ...], list[int], float, float], Iterator[tuple[int, Score]]]
Cut = Callable[[int, int, dict[int, Score]], dict]


def halving_step(step_idx: int, step: dict, removed: list[int], remaining: list[int], rungs: tuple[float, ...],
                 score_rung: ScoreRung, cut: Cut, on_update: Callable[[], None],
                 key: Callable[[int], str] = str) -> None:
    """Fill ``step["candidates"]`` by successive halving (``glp_bench.prune.halving``): every candidate to the
    first rung, those clearly behind the leader stop (recorded with their rung score and ``"stopped_at"``), the
    others go on to the next rung and finally to the whole budget. Logged in ``step["halving"]``
    (``{"rungs": [{"at", "candidates", "leader", "stopped"}]}``) and resumable at every candidate. ``key``: a
    candidate's key in those records (the recipe sweep's are its learning rates)."""
    from .halving import rung_label

    h = step.setdefault("halving", {"rungs": []})
    live, start = list(remaining), 0.0
    for r, at in enumerate(rungs):
        if len(live) < 2 and r == len(h["rungs"]):  # nobody left to compare with: straight to the whole budget
            break
        if r == len(h["rungs"]):
            h["rungs"].append({"at": rung_label(at), "candidates": {}, "leader": None, "stopped": None})
        rung = h["rungs"][r]
        if rung["stopped"] is None:
            todo = [c for c in live if key(c) not in rung["candidates"]]
            for cand, rec in score_rung(tuple(removed), todo, start, at) if todo else ():
                rung["candidates"][key(cand)] = _so_far(rec, h["rungs"][r - 1] if r else None, key(cand))
                on_update()
            decision = cut(step_idx, r, {c: rung["candidates"][key(c)] for c in live})
            rung.update(decision, stopped={key(c): share for c, share in decision["stopped"].items()})
            for k in rung["stopped"]:
                step["candidates"][k] = {**rung["candidates"][k], "stopped_at": rung["at"]}
            on_update()
        live = [c for c in live if key(c) not in rung["stopped"]]
        start = at
    todo = [c for c in live if key(c) not in step["candidates"]]
    for cand, rec in score_rung(tuple(removed), todo, start, 1.0) if todo else ():
        step["candidates"][key(cand)] = _so_far(rec, h["rungs"][-1] if h["rungs"] else None, key(cand))
        on_update()


def _so_far(rec: Score, previous: dict | None, key: str) -> Score:
    """``rec`` with ``seconds`` counting the candidate's earlier rungs too (its whole fine-tune so far)."""
    before = ((previous or {}).get("candidates") or {}).get(key) or {}
    return {**rec, "seconds": round(float(rec.get("seconds") or 0) + float(before.get("seconds") or 0), 2)}


def greedy_search(
    layers: Iterable[int],
    min_depth: int,
    score_many: ScoreMany,
    log: list[dict],
    on_update: Callable[[], None] = lambda: None,
    on_step: Callable[[int, int, int], None] = lambda step, n_steps, n_cand: None,
    assess: Assess | None = None,
    rescore_close: int = 0,
    rescore_many: ScoreMany | None = None,
    halving: tuple[tuple[float, ...], ScoreRung, Cut] | None = None,
) -> list[int]:
    """Greedy removal order down to ``min_depth`` layers. ``log`` is the (possibly partial) search log to
    resume from; it is extended in place: ``{"removed": [...], "candidates": {"<layer>": Score}, "chosen"}``.

    ``assess(step_index, pool, chosen, ranking)`` returns the step's noise record (``glp_bench.prune.noise.assess``:
    ``within_noise``, ``p_best``, intervals), stored as ``step["noise"]``. With ``rescore_close = K > 0``, a
    step decided within noise re-scores its K best candidates with ``rescore_many`` (extra seeds; the records
    are merged, mean over all seeds), logged as ``step["rescore"]``, and chooses among those K. With ``halving``
    ``(rungs, score_rung, cut)`` a step's candidates are scored by :func:`halving_step`; the choice (and the
    noise record, and any re-score) is among the candidates that went the whole budget."""
    remaining = sorted(layers)
    if not 1 <= min_depth <= len(remaining):
        raise ValueError(f"min_depth {min_depth} outside 1..{len(remaining)}")
    removed: list[int] = []
    n_steps = len(remaining) - min_depth
    for step_idx in range(n_steps):
        if step_idx == len(log):
            log.append({"removed": list(removed), "candidates": {}, "chosen": None})
        step = log[step_idx]
        if step["removed"] != removed:
            raise ValueError(f"search log step {step_idx} removed {step['removed']}, expected {removed}")
        todo = [c for c in remaining if str(c) not in step["candidates"]]
        on_step(step_idx, n_steps, len(remaining))
        if step.get("chosen") is None:
            if halving is not None and len(remaining) > 1:
                halving_step(step_idx, step, removed, remaining, *halving, on_update)
            else:
                for cand, result in score_many(tuple(removed), todo):
                    step["candidates"][str(cand)] = result
                    on_update()
            pool = step_pool(step)
            if assess is not None and rescore_close > 0 and rescore_many is not None and len(pool) > 1:
                order = ranking(pool)
                if "rescore" not in step:
                    first = assess(step_idx, pool, order[0], order)
                    step["rescore"] = {"noise_before": first, "layers": order[:rescore_close] if first["within_noise"]
                                       else [], "candidates": {}}
                    on_update()
                rs = step["rescore"]
                todo = [c for c in rs["layers"] if str(c) not in rs["candidates"]]
                for cand, extra in rescore_many(tuple(removed), todo) if todo else ():
                    rs["candidates"][str(cand)] = merge_records(step["candidates"][str(cand)], extra)
                    on_update()
                pool = step_pool(step)
            chosen = choose(pool)
            if assess is not None:
                step["noise"] = assess(step_idx, pool, chosen, ranking(pool))
            step["chosen"] = chosen
            on_update()
        removed.append(step["chosen"])
        remaining.remove(step["chosen"])
    del log[n_steps:]
    return removed
