"""``PrunePlan.from_config``: the plan a run recorded in its manifest is the plan it was made with."""

from __future__ import annotations

import pytest

from glp_bench.core.rundir import RunDir
from glp_bench.prune.plan import PrunePlan, make_plan


def _plans():
    yield make_plan("cola", "m", None, ["glp", "top"], min_depth=3)  # the defaults: fast budget, auto recipe
    custom = make_plan("mytask", "m", "/data/x", ["glp"], "paper", 7, 2, "cuda", search_epochs=1.5, search_samples=0,
                       epochs=2, lr=1e-4, search_lr=3e-5, recipe="auto", warmup=0.2, distill=True, distill_alpha=0.3,
                       distill_temperature=4.0, precision="bf16", search_seeds=3, rescore_close=2, final_seeds=2,
                       depth_epochs="scaled", student_init="pretrained", pooling="cls", reference_epochs=4,
                       max_length=64)
    custom.task_def = {"name": "mytask", "train": "/data/x/train.csv", "dev": "/data/x/dev.csv"}
    yield custom
    yield make_plan("cola", "m", None, ["top"], "smoke", search_lr=1e-3, recipe="paper", warmup=0.1)


@pytest.mark.parametrize("plan", list(_plans()), ids=["fast", "custom", "smoke"])
def test_a_plan_written_as_config_and_read_back_is_the_same_plan(plan, tmp_path):
    RunDir(tmp_path / "run").create(plan.config(6))  # through the manifest's JSON, as a run records it
    run = RunDir(tmp_path / "run").load()
    assert PrunePlan.from_config(run.config) == plan
    assert PrunePlan.from_config(run.cfg) == plan  # the typed record reads the same section
    assert PrunePlan.from_config(run.config).config(6) == plan.config(6)
    assert PrunePlan.from_config({**run.config, "final_seeds": 9}) != plan  # every knob counts


def test_an_older_manifest_reads_with_its_migrated_defaults(tmp_path):
    """A version-1 run (before recipes, seeds, pooling, ...): its plan has the defaults the migration gives."""
    import json

    plan = make_plan("cola", "m", None, ["glp"], "paper", lr=2e-5, recipe="paper", pooling="cls", student_init="pretrained",
                     depth_epochs="same")
    cfg = plan.config(6)
    for key in ("recipe", "sweep", "precision", "search_seeds", "rescore_close", "final_seeds", "depth_epochs",
                "student_init", "pooling", "reference_epochs"):
        cfg.pop(key)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(
        {"format": "glp-bench-run", "version": 1, "config": cfg, "strategies": {}, "models": {}}))
    assert PrunePlan.from_config(RunDir(tmp_path / "run").load().config) == plan
