"""The prune run's work in units of cost (the progress ETA): hand-computed totals for the fast budget."""

from __future__ import annotations

from types import SimpleNamespace

from glp_bench.prune.train import TrainConfig
from glp_bench.prune.work import cost, prune_work


def plan(**kw):
    base = dict(search=TrainConfig(epochs=3, max_samples=2000), final=TrainConfig(epochs=3), strategies=["glp"],
                sweep={"lrs": [2e-5, 5e-5, 1e-4, 2e-4]}, search_seeds=1, final_seeds=1, reference_epochs=5.0,
                depth_epochs="same", seed=42)
    base.update(kw)
    return SimpleNamespace(**base)


def test_fast_budget_total_and_done_by_hand():
    p = plan()
    done, total = prune_work(p, 6, 3, n_fit=7268, n_train=8551, recipe=None, steps=[], models={})
    sweep = 3 * 7 * 6000  # first wave: 5e-5, 1e-4, 2e-4 at full depth
    candidates = 6 * 6 * 6000 + 5 * 5 * 6000 + 4 * 4 * 6000
    finals = 7 * 8551 * 5 + (6 + 5 + 4) * 8551 * 3
    assert (done, total) == (0, sweep + candidates + finals)
    recipe = {"points": {"5e-05": {}, "0.0001": {}, "0.0002": {}}, "chosen": {"lr": 1e-4}}
    steps = [{"candidates": {str(i): {} for i in range(6)}}, {"candidates": {"0": {}, "1": {}}}]
    models = {"depth-06": {"depth": 6, "dev_scores": {"mcc": 0.3}, "seeds": {"42": {}}},
              "depth-05": {"depth": 5, "dev_scores": None}}
    done, total2 = prune_work(p, 6, 3, 7268, 8551, recipe, steps, models)
    assert total2 == total and done == sweep + 6 * 6 * 6000 + 2 * 5 * 6000 + 7 * 8551 * 5


def test_scaled_epochs_extra_seeds_strategies_and_sweep_growth():
    p = plan(depth_epochs="scaled", reference_epochs=None, final_seeds=2, strategies=["glp", "top"])
    done, total = prune_work(p, 6, 3, 7268, 8551, {"points": {"a": {}, "b": {}, "c": {}, "d": {}}}, [], {})
    assert done == 4 * cost(6, 6000, 1)  # a fourth sweep point (the lowest lr) raises the total with it
    finals = (cost(6, 8551, 3) + 2 * (cost(5, 8551, 3.6) + cost(4, 8551, 4.5) + cost(3, 8551, 6))) * 2
    assert total == done + (6 * 6 + 5 * 5 + 4 * 4) * 6000 + finals
