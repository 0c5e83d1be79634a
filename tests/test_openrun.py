"""``glp_bench.core.openrun.open_run``: what prune, export and latency do before writing into a run."""

from __future__ import annotations

import pytest

from glp_bench.core.errors import RunDirError
from glp_bench.core.openrun import open_run
from glp_bench.core.rundir import RunDir
from glp_bench.core.runlock import held, lock_path


def test_an_opened_run_is_locked_cleaned_loaded_and_released(tmp_path):
    run_dir = tmp_path / "r"
    RunDir(run_dir).create({"task": "cola", "seed": 1})
    (run_dir / ".manifest.json.abc.tmp").write_text("left by a killed writer")
    with open_run(run_dir, config={"task": "cola", "seed": 1}, resume_keys=("task", "seed")) as opened:
        assert held(run_dir) and opened.lock == lock_path(run_dir)
        assert opened.run.cfg.task == "cola" and opened.moved is None
        assert not (run_dir / ".manifest.json.abc.tmp").exists()
    assert not held(run_dir)


def test_a_missing_or_incompatible_run_is_refused_and_nothing_stays_locked(tmp_path):
    with pytest.raises(RunDirError, match="not a glp-bench run directory"):
        open_run(tmp_path / "missing")
    assert not lock_path(tmp_path / "missing").exists()  # refused before the lock
    RunDir(tmp_path / "r").create({"seed": 1})
    with pytest.raises(RunDirError, match="started with other arguments"):
        open_run(tmp_path / "r", create=True, config={"seed": 2}, resume_keys=("seed",))
    assert not held(tmp_path / "r")


def test_identity_is_checked_and_fresh_moves_the_old_run_aside(tmp_path):
    run_dir = tmp_path / "r"
    RunDir(run_dir).create({"seed": 1})
    with open_run(run_dir, create=True, identity=lambda: {"model": {"source": "hub", "id": "a"}}) as opened:
        opened.run.save()  # a run without an identity records the current one
    with pytest.raises(RunDirError, match="base model was 'a', now 'b'"):
        open_run(run_dir, create=True, identity=lambda: {"model": {"source": "hub", "id": "b"}})
    with open_run(run_dir, create=True, fresh=True, identity=lambda: {"model": {"source": "hub", "id": "b"}}) as opened:
        assert opened.moved.name.startswith("r.bak-") and RunDir.is_run(opened.moved)
        assert not opened.run.exists() and opened.run.identity["model"]["id"] == "b"
