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
    # the recipe sweep: one plain line per finished point (lr and its held-out score), like the other phases
    sweep = [m for m in (re.match(r"^recipe sweep: lr \S+, held-out matthews_correlation -?[\d.]+: (\d+)/(\d+) "
                                  r"done, elapsed \S+, ETA \S+$", line) for line in proc.stderr.splitlines()) if m]
    assert [int(m.group(1)) for m in sweep] == list(range(1, len(sweep) + 1)) and len(sweep) >= 3
    # one plain line per finished unit (3 candidates of the one GLP step to depth 2, then the finals: the full model,
    # GLP's depth 2 and top's when its layers differ), none per step
    units = [m for m in (re.match(r"^(.*): (\d+)/(\d+) done, elapsed \S+(, ETA \S+)?$", line)
                         for line in proc.stderr.splitlines()) if m and not m.group(1).startswith("recipe sweep")]
    done = [int(m.group(2)) for m in units]
    finals = len(json.loads((run / "manifest.json").read_text())["models"])
    assert finals in (2, 3)
    assert done == list(range(1, len(done) + 1)) and int(units[-1].group(3)) == done[-1] == 3 + finals
    assert all(m.group(4) for m in units)  # every line has an ETA
    assert not any("candidate: drop layer" in line or "final depth" in line for line in proc.stderr.splitlines())
    assert "\x1b[" not in proc.stderr and "━" not in proc.stderr  # no live bars or escape codes in the log
    assert "estimated <1 min;" in plan  # a short run: not "estimated 0 min"
    # the same command on the finished run: nothing left, said so (not a time estimate), nothing re-trained
    again = run_cli("prune", "--task", "cola", "--model", str(model), "--budget", "smoke", "--device", "cpu",
                    "--run", str(run), env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "nothing left to do (every fine-tune is finished)" in " ".join(again.stderr.split())
    assert "estimated" not in again.stderr and "recipe sweep: lr" not in again.stderr
