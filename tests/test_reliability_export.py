"""Issue 17: ``export --revalidate`` checks each file against its recorded sha256 first: a file edited
within the numeric tolerance is reported as failed and never re-blessed (its recorded sha256 is kept)."""

from __future__ import annotations

import json

from .conftest import assert_clean_error, run_cli


def test_revalidate_reports_a_file_edited_within_tolerance_as_failed(tmp_path):
    import onnx

    from glp_bench.core.jsonio import sha256_file
    from glp_bench.export.stage import export_run
    from tests.test_export import make_run

    run_dir = make_run(tmp_path, "bert", {4: []})
    export_run(run_dir, variants="fp32").raise_for_failures()
    path = run_dir / "depth-04/onnx/model.onnx"
    recorded = json.loads((run_dir / "manifest.json").read_text())["models"]["depth-04"]["onnx"]["fp32"]["sha256"]
    m = onnx.load(str(path))
    m.doc_string = "edited"  # computes exactly the same: the 1e-4 check alone would pass it
    onnx.save(m, str(path))
    edited = sha256_file(path)
    assert edited != recorded

    proc = run_cli("export", "--run", str(run_dir), "--variants", "fp32", "--revalidate")
    assert_clean_error(proc, "depth-04")
    rec = json.loads((run_dir / "manifest.json").read_text())["models"]["depth-04"]["onnx"]["fp32"]
    assert rec["status"] == "failed" and rec["changed_since_export"] is True
    assert "edited since it was exported" in rec["error"] and "exceeds" not in rec["error"]
    assert rec["validation"]["passed"]  # numerically fine, still failed
    assert rec["sha256"] == recorded and rec["sha256_on_disk"] == edited  # never re-blessed
    # a second revalidate says the same; a re-export makes it whole again
    export_run(run_dir, variants="fp32", revalidate=True)
    assert json.loads((run_dir / "manifest.json").read_text())["models"]["depth-04"]["onnx"]["fp32"]["status"] == "failed"
    export_run(run_dir, variants="fp32", force=True).raise_for_failures()
    rec = json.loads((run_dir / "manifest.json").read_text())["models"]["depth-04"]["onnx"]["fp32"]
    assert rec["status"] == "ok" and rec["sha256"] == sha256_file(path) and "sha256_on_disk" not in rec
