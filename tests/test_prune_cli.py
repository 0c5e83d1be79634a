"""End-to-end: the real ``glp-bench prune`` CLI on a tiny random model and tiny CoLA-layout data,
including a kill -9 in the middle of the search and a resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from glp_bench.core.jsonio import umask

from .conftest import assert_clean_error, build_tiny_model, run_cli


@pytest.fixture(scope="module")
def tiny6(tmp_path_factory):
    return build_tiny_model("bert", tmp_path_factory.mktemp("m") / "bert6", layers=6)


def _prune_args(model, data, run_dir, *extra):
    return ["prune", "--task", "cola", "--model", str(model), "--data-dir", str(data), "--budget", "smoke",
            "--lr", "1e-3", "--run", str(run_dir), "--device", "cpu", *extra]


def _manifest(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


def test_smoke_prune_writes_valid_manifest(tiny6, cola_dir, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(*_prune_args(tiny6, cola_dir, run_dir))  # the default strategies: glp,top
    assert proc.returncode == 0, proc.stderr
    m = _manifest(run_dir)
    assert m["format"] == "glp-bench-run" and m["version"] == 7
    assert m["environment"]["packages"]["torch"]
    assert m["config"]["min_depth"] == 3 and m["config"]["strategies"] == ["glp", "top"]
    glp = m["strategies"]["glp"]
    assert len(glp["steps"]) == 3 and [len(s["candidates"]) for s in glp["steps"]] == [6, 5, 4]
    assert glp["order"] == [s["chosen"] for s in glp["steps"]]
    for step in glp["steps"]:  # the chosen layer is the best-scoring one (ties: lowest loss, highest index)
        best = max(step["candidates"].items(), key=lambda kv: (kv[1]["score"], -kv[1]["loss"], int(kv[0])))
        assert int(best[0]) == step["chosen"]
    assert m["strategies"]["top"]["order"] == [5, 4, 3]
    # every depth of every strategy has a fine-tuned model with dev scores; the full model is shared
    for strategy in ("glp", "top"):
        depths = m["strategies"][strategy]["models"]
        assert sorted(map(int, depths)) == [3, 4, 5, 6]
        assert depths["6"] == "depth-06"
        for depth, name in depths.items():
            rec = m["models"][name]
            assert rec["depth"] == int(depth) == len(rec["kept_layers"])
            assert -1.0 <= rec["dev_scores"]["matthews_correlation"] <= 1.0
            cfg = json.loads((run_dir / rec["path"] / "config.json").read_text())
            assert cfg["num_hidden_layers"] == int(depth) and cfg["glp_kept_layers"] == rec["kept_layers"]
            assert (run_dir / rec["path"] / "model.safetensors").stat().st_size == rec["files"]["model.safetensors"]["size"]
            # readable as any saved file (safetensors writes 0600): another user can serve the run's models
            modes = {f.name: f.stat().st_mode & 0o777 for f in (run_dir / rec["path"]).iterdir()}
            assert set(modes.values()) == {0o644 & ~umask()}, modes
    top_kept = m["models"][m["strategies"]["top"]["models"]["4"]]["kept_layers"]
    assert top_kept == [0, 1, 2, 3]
    assert "dev scores per depth" in proc.stdout
    # GLP against top per depth: the stored dev predictions give each final's score back, and a paired bootstrap
    # compares the two models of a depth (one model when both kept the same layers)
    from glp_bench.prune.compare import compare_pair
    from tests.test_compare import mcc

    labels = np.array([int(line.split("\t")[1]) for line in (cola_dir / "dev.tsv").read_text().splitlines()])
    comp = m["comparison"]
    assert comp["metric"] == "matthews_correlation" and comp["split"] == "validation"
    rows = comp["baselines"]["top"]
    assert sorted(map(int, rows)) == [3, 4, 5, 6]
    for depth, row in rows.items():
        a, b = m["strategies"]["glp"]["models"][depth], m["strategies"]["top"]["models"][depth]
        assert (row["glp"], row["top"]) == (a, b)
        pa, pb = (np.load(run_dir / m["models"][n]["dev_preds"]["validation"]) for n in (a, b))
        assert mcc(pa, labels) == pytest.approx(m["models"][a]["dev_scores"]["matthews_correlation"])
        if a == b:
            assert row["verdict"] == "same layers"
        else:
            assert row == {"glp": a, "top": b, **compare_pair(pa, pb, labels, mcc, seed=42 + int(depth))}
    assert "GLP vs top per depth" in proc.stdout
    # one line per GLP step names the removed layer and the rule that chose it
    err = " ".join(proc.stderr.split())
    for i, step in enumerate(glp["steps"], 1):
        assert f"glp step {i}: removed layer {step['chosen']} of {len(step['candidates'])} candidates" in err
    assert f"glp: removal order {glp['order']}" in err and "top: removal order [5, 4, 3]" in err


def test_kill_and_resume_equals_uninterrupted(tiny6, cola_dir, tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "killed"
    ref = run_cli(*_prune_args(tiny6, cola_dir, ref_dir))
    assert ref.returncode == 0, ref.stderr

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "glp_bench.cli", *_prune_args(tiny6, cola_dir, run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill -9 once step 2 has started scoring candidates
        try:
            steps = _manifest(run_dir)["strategies"]["glp"]["steps"]
            if len(steps) >= 2 and steps[1]["candidates"]:
                break
        except (FileNotFoundError, KeyError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _manifest(run_dir)
    done_before = {s: dict(st["candidates"]) for s, st in enumerate(partial["strategies"]["glp"]["steps"])}
    assert done_before and not any(m.get("dev_scores") for m in partial["models"].values())

    resumed = run_cli(*_prune_args(tiny6, cola_dir, run_dir))
    assert resumed.returncode == 0, resumed.stderr
    a, b = _manifest(ref_dir), _manifest(run_dir)
    # finished candidates kept as they were, not redone
    for s, cands in done_before.items():
        for layer, rec in cands.items():
            assert b["strategies"]["glp"]["steps"][s]["candidates"][layer] == rec
    strip = lambda steps: [{**st, "candidates": {k: v["score"] for k, v in st["candidates"].items()}} for st in steps]  # noqa: E731
    assert strip(b["strategies"]["glp"]["steps"]) == strip(a["strategies"]["glp"]["steps"])
    assert b["strategies"]["glp"]["order"] == a["strategies"]["glp"]["order"]
    assert {n: m["dev_scores"] for n, m in b["models"].items()} == {n: m["dev_scores"] for n, m in a["models"].items()}

    # a third run with the same arguments has nothing left to do and changes nothing
    again = run_cli(*_prune_args(tiny6, cola_dir, run_dir))
    assert again.returncode == 0
    assert _manifest(run_dir)["models"] == b["models"]


def test_conflicting_arguments_and_fresh(tiny6, cola_dir, tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(*_prune_args(tiny6, cola_dir, run_dir, "--strategy", "top")).returncode == 0
    before = _manifest(run_dir)
    proc = run_cli(*_prune_args(tiny6, cola_dir, run_dir, "--strategy", "top", "--seed", "7"))
    assert_clean_error(proc, "was started with other arguments")
    assert _manifest(run_dir) == before  # nothing lost
    proc = run_cli(*_prune_args(tiny6, cola_dir, run_dir, "--strategy", "top", "--seed", "7", "--fresh"))
    assert proc.returncode == 0, proc.stderr
    assert _manifest(run_dir)["config"]["seed"] == 7
    backups = list(tmp_path.glob("run.bak-*"))
    assert len(backups) == 1 and json.loads((backups[0] / "manifest.json").read_text()) == before


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--min-depth", "0"], "outside 1..6"),
        (["--min-depth", "7"], "outside 1..6"),
        (["--strategy", "glp,greedy"], "unknown strategy"),
        (["--device", "cuda"], "no cuda gpu"),
    ],
)
def test_bad_prune_arguments(extra, fragment, tiny6, cola_dir, tmp_path):
    import torch

    if extra[0] == "--device" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert_clean_error(run_cli(*_prune_args(tiny6, cola_dir, tmp_path / "r", *extra)), fragment)


def test_incompatible_run_directory_version(tiny6, cola_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps({"format": "glp-bench-run", "version": 99}))
    assert_clean_error(run_cli(*_prune_args(tiny6, cola_dir, run_dir)), "format version 99")


def test_budget_presets_and_overrides():
    from glp_bench.prune.plan import make_plan

    fast = make_plan("cola", "m", None, ["glp"])  # the default budget
    assert (fast.search.epochs, fast.search.max_samples, fast.search.lr) == (3.0, 2000, 5e-5)
    assert (fast.final.epochs, fast.final.max_samples, fast.final.lr) == (3.0, None, 2e-5)  # the paper's
    paper = make_plan("cola", "m", None, ["glp"], "paper")
    assert (paper.search.epochs, paper.search.max_samples, paper.search.lr) == (3.0, None, 2e-5)
    both = make_plan("cola", "m", None, ["glp"], lr=1e-4)
    assert both.search.lr == both.final.lr == 1e-4
    only = make_plan("cola", "m", None, ["glp"], lr=1e-4, search_lr=3e-5, search_epochs=1, search_samples=0)
    assert (only.search.lr, only.final.lr, only.search.epochs, only.search.max_samples) == (3e-5, 1e-4, 1, None)
