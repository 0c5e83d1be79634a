"""End-to-end: ``glp-bench prune-and-export`` on a tiny random model: prune, export, validate, int8."""

from __future__ import annotations

import json

from .conftest import assert_clean_error, build_tiny_model, run_cli


def test_prune_and_export_tiny(cola_dir, tmp_path):
    model = build_tiny_model("bert", tmp_path / "m", layers=4)
    run_dir = tmp_path / "run"
    proc = run_cli("prune-and-export", "--task", "cola", "--model", str(model), "--data-dir", str(cola_dir),
                   "--budget", "smoke", "--strategy", "glp,top", "--run", str(run_dir), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((run_dir / "manifest.json").read_text())
    names = {n for s in m["strategies"].values() for n in s["models"].values()}
    assert len(names) >= 3  # depths 4, 3, 2 (glp and top may share a layer set)
    for name in names:
        rec = m["models"][name]
        for variant in ("fp32", "int8"):
            onnx = rec["onnx"][variant]
            assert onnx["status"] == "ok", onnx
            assert (run_dir / onnx["path"]).stat().st_size == onnx["size"]
            assert "matthews_correlation" in onnx["dev_scores"]
        assert rec["onnx"]["fp32"]["validation"]["max_abs_diff"] <= 1e-4
        assert rec["onnx"]["fp32"]["validation"]["passed"]
    assert "total" in proc.stderr


def test_prune_and_export_bad_variant_fails_before_pruning(cola_dir, tmp_path):
    model = build_tiny_model("bert", tmp_path / "m", layers=2)
    proc = run_cli("prune-and-export", "--task", "cola", "--model", str(model), "--data-dir", str(cola_dir),
                   "--budget", "smoke", "--run", str(tmp_path / "run"), "--variants", "fp32,int4")
    assert_clean_error(proc, "int4")
    assert not (tmp_path / "run").exists()
