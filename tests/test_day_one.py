"""Day one: the bundled CoLA serves without --data-dir, offline, and a run's progress shows in a log."""

from __future__ import annotations

import json
import re

from .conftest import build_tiny_model, run_cli


def test_prune_on_bundled_cola_offline_with_progress_lines_in_a_log(tmp_path):
    model = build_tiny_model("bert", tmp_path / "m", layers=3)
    env = {"GLP_BENCH_DATA": "", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # no folder, no hub
    run = tmp_path / "run"
    proc = run_cli("prune", "--task", "cola", "--model", str(model), "--budget", "smoke", "--device", "cpu",
                   "--run", str(run), env=env, cwd=tmp_path)  # captured output: not a terminal
    assert proc.returncode == 0, proc.stderr
    plan = " ".join(proc.stderr.split())
    assert "data: the bundled copy of CoLA" in plan and "bundled/cola" in plan
    config = json.loads((run / "manifest.json").read_text())["config"]
    assert config["task"] == "cola" and config["data_dir"] is None and "task_def" not in config
    # one plain line per finished unit (3 candidates of the one GLP step to depth 2, 2 finals), none per step
    units = [m for m in (re.match(r"^(.*): (\d+)/(\d+) done, elapsed \S+(, ETA \S+)?$", line)
                         for line in proc.stderr.splitlines()) if m]
    done = [int(m.group(2)) for m in units]
    assert done == list(range(1, len(done) + 1)) and int(units[-1].group(3)) == done[-1] == 3 + 2
    assert all(m.group(4) for m in units)  # every line has an ETA
    assert not any("candidate: drop layer" in line or "final depth" in line for line in proc.stderr.splitlines())
    assert "\x1b[" not in proc.stderr and "━" not in proc.stderr  # no live bars or escape codes in the log
