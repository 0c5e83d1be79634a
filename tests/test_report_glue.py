"""The GLUE-wide table: golden renderings of three checked-in runs (tests/golden/glue/{cola,sst2,stsb}-tiny,
the cola-tiny run with its scores mapped to each task's metric), numbers checked against the manifests,
models kept apart, and the CLI's errors.

Regenerate the golden files after an intended change of the rendering:

    python -m pytest -q tests/test_report_glue.py --regen-golden   (writes the files, and fails: review, re-run)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from glp_bench.report.glue import build_glue, report_text, to_csv, to_markdown
from glp_bench.report.stage import build_report

from .conftest import assert_clean_error, run_cli

GLUE = Path(__file__).parent / "golden" / "glue"
RUNS = ["cola-tiny", "sst2-tiny", "stsb-tiny"]


@pytest.fixture
def glue_cwd(monkeypatch):
    monkeypatch.chdir(GLUE)


def manifest(run) -> dict:
    return json.loads((Path(run) / "manifest.json").read_text())


def test_numbers_come_from_the_manifests_and_latency(glue_cwd):
    (table,) = build_glue(build_report(RUNS))
    assert table.model_id == "tiny-bert" and table.tasks == ["cola", "sst2", "stsb"] and table.target == "cpu"
    assert table.main_keys == {"cola": "matthews_correlation", "sst2": "accuracy", "stsb": "pearson"}
    assert [(r.strategy, r.depth) for r in table.rows] == [("full", 4), ("glp", 3), ("top", 3), ("glp", 2), ("top", 2)]
    for r in table.rows:
        for task, run, key in zip(table.tasks, RUNS, ["matthews_correlation", "accuracy", "pearson"], strict=True):
            m = manifest(run)
            name = "depth-04" if r.strategy == "full" else m["strategies"][r.strategy]["models"][str(r.depth)]
            assert r.points[task] == pytest.approx(m["models"][name]["dev_scores"][key] * 100)
        assert r.average == pytest.approx(sum(r.points.values()) / 3)
    lat = json.loads(Path("cola-tiny/latency/cpu.json").read_text())
    # the speedup of glp's depth 3 on cpu: its fp32 file against the full fp32 one, as latency measured it
    glp3 = next(r for r in table.rows if (r.strategy, r.depth) == ("glp", 3))
    recorded = [m["speedup"]["vs_full_fp32"] for m in lat["measurements"]
                if m["model"] == "depth-03" and m["variant"] == "fp32" and m["batch"] == 1]
    assert recorded and glp3.speedup == pytest.approx(recorded[0])
    assert next(r for r in table.rows if r.strategy == "full").speedup == pytest.approx(1.0)


def test_golden_markdown_and_csv(glue_cwd, assert_golden):
    tables = build_glue(build_report(RUNS))
    assert_golden("glue/glue.md", to_markdown(tables))
    assert_golden("glue/glue.csv", to_csv(tables))


def test_full_report_carries_the_glue_table_after_the_runs(glue_cwd):
    report = build_report(RUNS)
    tables = build_glue(report)
    md = report_text(report, tables, "markdown")
    assert md.index("## Recommendation") < md.index("## GLUE-wide: tiny-bert")
    doc = json.loads(report_text(report, tables, "json"))
    assert len(doc["sections"]) == 3 and doc["glue"][0]["tasks"] == ["cola", "sst2", "stsb"]
    assert doc["glue"][0]["rows"][1] == {"strategy": "glp", "depth": 3, "points": pytest.approx(
        {"cola": 42.51, "sst2": 81.25, "stsb": 62.51}), "average": pytest.approx(62.09), "speedup": pytest.approx(
        tables[0].rows[1].speedup)}
    assert report_text(report, tables, "csv").startswith("run,task,")  # the per-artifact CSV
    assert report_text(report, tables, "csv", glue_only=True).startswith("model_id,strategy,depth,cola,sst2,stsb")
    assert build_glue(build_report(["cola-tiny"])) == []  # one task: no GLUE-wide table


def test_runs_of_different_models_are_kept_apart(tmp_path):
    for run in RUNS:
        shutil.copytree(GLUE / run, tmp_path / run)
    for run in ("cola-tiny", "sst2-tiny"):
        other = tmp_path / f"{run}-roberta"
        shutil.copytree(GLUE / run, other)
        m = manifest(other)
        m["config"]["model"] = "tiny-roberta"
        (other / "manifest.json").write_text(json.dumps(m))
    runs = [str(tmp_path / r) for r in [*RUNS, "cola-tiny-roberta", "sst2-tiny-roberta"]]
    tables = build_glue(build_report(runs), target="cpu")
    assert [(t.model_id, t.tasks) for t in tables] == [("tiny-bert", ["cola", "sst2", "stsb"]),
                                                        ("tiny-roberta", ["cola", "sst2"])]
    no_target = build_glue(build_report(runs), target="cuda")[0]
    assert all(r.speedup is None for r in no_target.rows) and "no latency on cuda" in no_target.notes[0]


def test_cli_glue_table_and_errors(tmp_path):
    runs = [str(GLUE / r) for r in RUNS]
    proc = run_cli("report", *(x for r in runs for x in ("--run", r)), "--glue", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (GLUE / "glue.csv").read_text()
    proc = run_cli("report", *(x for r in runs for x in ("--run", r)))
    assert proc.returncode == 0, proc.stderr
    assert "GLUE-wide: tiny-bert" in proc.stdout and "speedup (cpu, fp32)" in proc.stdout
    assert_clean_error(run_cli("report", "--run", runs[0], "--glue"), "--glue needs runs of at least two tasks")
    shutil.copytree(GLUE / "cola-tiny", tmp_path / "cola-again")
    twice = ("--run", runs[0], "--run", str(tmp_path / "cola-again"), "--run", runs[1])
    proc = run_cli("report", *twice)  # two cola runs (seeds, budgets): a fine report, but no GLUE-wide table
    assert proc.returncode == 0 and "GLUE-wide" not in proc.stdout, proc.stderr
    assert_clean_error(run_cli("report", *twice, "--glue"), "both hold cola with model tiny-bert")
