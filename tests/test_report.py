"""glp-bench report: Pareto frontier and recommendation on hand-made points, golden renderings of a
checked-in run (tests/golden/cola-tiny: manifest + latency/cpu.json trimmed from a real tiny run, dev
scores set by hand), the plot, the CLI and its bad-input messages.

Regenerate the expected files after an intended change of the output::

    python -m pytest -q tests/test_report.py -k golden --regen-golden   (writes the files, and fails: review, re-run)

and read the diff before committing it.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from glp_bench.core.errors import RunDirError
from glp_bench.core.vocab import TORCH_VARIANT
from glp_bench.report.render import (
    layer_ranges,
    render_rich,
    to_csv,
    to_json,
    to_markdown,
    write_run_report,
    write_run_report_or_warn,
)
from glp_bench.report.rows import Row, collect_rows, pareto_front, recommend
from glp_bench.report.stage import build_report

from .conftest import assert_clean_error, assert_schema, run_cli

GOLDEN = Path(__file__).parent / "golden"
RUN = "cola-tiny"  # tests/golden/cola-tiny, rendered with GOLDEN as the working directory
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- Pareto frontier ----------------------------------------------------------------------------


def test_pareto_dominated_points_are_off_the_front():
    pts = [(1.0, 0.50), (2.0, 0.60), (3.0, 0.55), (0.5, 0.40), (2.5, 0.60)]
    # (3.0, .55) is beaten by (2.0, .60); (2.5, .60) has the same score as (2.0, .60) but is slower
    assert pareto_front(pts) == [True, True, False, True, False]


def test_pareto_ties_all_stay_on_the_front():
    pts = [(1.0, 0.5), (1.0, 0.5), (2.0, 0.7), (2.0, 0.7)]
    assert pareto_front(pts) == [True, True, True, True]
    # same latency: only the better score; same score: only the faster one
    assert pareto_front([(1.0, 0.5), (1.0, 0.6)]) == [False, True]
    assert pareto_front([(1.0, 0.5), (0.9, 0.5)]) == [False, True]


def test_pareto_missing_values_never_on_the_front_and_never_dominate():
    pts = [(None, 0.9), (1.0, None), (2.0, 0.5), (None, None)]
    assert pareto_front(pts) == [False, False, True, False]
    assert pareto_front([]) == []
    assert pareto_front([(3.0, 0.1)]) == [True]


# --- recommendation -------------------------------------------------------------------------------


def row(name: str, variant: str = "fp32", latency: float | None = 1.0, score: float | None = 0.5,
        ref: float | None = 0.5, depth: int = 3, size: int = 100, **scores) -> Row:
    return Row(run="r", task="cola", model_id="m", target="cpu", name=name, depth=depth, kept_layers=list(range(depth)),
               strategies=["glp"], variant=variant, path=f"{name}/onnx/model.onnx", size_bytes=size,
               main_key="matthews_correlation",
               scores=None if score is None else {"matthews_correlation": score, **scores},
               torch_scores={"matthews_correlation": score}, reference_scores=None if ref is None else
               {"matthews_correlation": ref, **{k: ref for k in scores}}, is_full_depth=depth == 6,
               latency_s=latency, p50_s=latency, batch=1)


def test_recommend_fastest_within_the_drop():
    rows = [row("full", latency=10.0, score=0.50, depth=6), row("d5", latency=8.0, score=0.497),
            row("d4", latency=6.0, score=0.489), row("d3", latency=4.0, score=0.45)]
    assert recommend(rows, 1.0).name == "d5"  # d4 lost 1.1 points
    assert recommend(rows, 0.5).name == "d5"
    assert recommend(rows, 2.0).name == "d4"
    assert recommend(rows, 5.0).name == "d3"  # lost exactly 5 points
    assert recommend(rows, 0.0).name == "full"


def test_an_int8_that_is_the_fp32_graph_is_not_recommended_over_its_fp32():
    full, fake = row("full", latency=10.0, depth=6), row("full", variant="int8", latency=9.9, depth=6)
    fake.fp32_graph = True  # every node kept in fp32: the same model, faster by timing noise
    assert (recommend([full, fake], 0.0).name, recommend([full, fake], 0.0).variant) == ("full", "fp32")
    real = row("full", variant="int8", latency=9.9, depth=6)
    assert recommend([full, real], 0.0).variant == "int8"
    assert recommend([fake], 0.0).variant == "int8"  # the only file of its model is still a candidate


def test_recommend_boundary_is_inclusive_despite_float_error():
    # 0.43 - 0.42 is 0.010000000000000009 in floating point: still exactly one point
    rows = [row("full", latency=10.0, score=0.43, ref=0.43, depth=6), row("d3", latency=5.0, score=0.42, ref=0.43)]
    assert rows[1].delta() < -1.0
    assert recommend(rows, 1.0).name == "d3"


def test_recommend_scores_above_the_reference_qualify():
    rows = [row("full", latency=10.0, score=0.50, depth=6), row("d2", latency=3.0, score=0.53)]
    best = recommend(rows, 0.0)
    assert best.name == "d2" and best.delta() == pytest.approx(3.0)


def test_recommend_skips_missing_latency_torch_and_unknown_scores():
    rows = [row("full", latency=10.0, depth=6), row("nolat", latency=None), row("torch", variant=TORCH_VARIANT, latency=0.1),
            row("noscore", latency=0.2, score=None), row("noref", latency=0.3, ref=None), row("ok", latency=5.0)]
    assert recommend(rows, 1.0).name == "ok"
    assert recommend([row("a", latency=None), row("b", latency=None)], 1.0) is None
    assert recommend([], 1.0) is None


def test_recommend_ties_go_to_the_higher_score_then_the_smaller_file():
    rows = [row("full", latency=10.0, depth=6), row("a", latency=2.0, score=0.495), row("b", latency=2.0, score=0.499),
            row("c", latency=2.0, score=0.499, size=50)]
    assert recommend(rows, 1.0).name == "c"


def test_recommend_none_when_nothing_is_close_enough_and_rejects_negative_drop():
    rows = [row("d3", latency=1.0, score=0.40)]
    assert recommend(rows, 1.0) is None
    with pytest.raises(ValueError, match="max_drop"):
        recommend(rows, -0.5)


def test_recommend_on_another_metric():
    rows = [row("full", latency=10.0, depth=6, accuracy=0.80), row("d3", latency=2.0, score=0.50, accuracy=0.70)]
    for r in rows:
        r.reference_scores = {"matthews_correlation": 0.5, "accuracy": 0.80}
    assert recommend(rows, 1.0).name == "d3"  # main metric unchanged
    assert recommend(rows, 1.0, main_key="accuracy").name == "full"  # accuracy lost 10 points


def test_layer_ranges():
    assert layer_ranges([0, 1, 2, 3, 5, 7, 8]) == "0-3,5,7,8"
    assert layer_ranges([1, 2]) == "1,2"
    assert layer_ranges([]) == ""
    assert layer_ranges(list(range(12))) == "0-11"


# --- rows of the checked-in run -------------------------------------------------------------------


@pytest.fixture
def golden_cwd(monkeypatch):
    monkeypatch.chdir(GOLDEN)


def test_collect_rows_of_the_golden_run(golden_cwd):
    rows = collect_rows(RUN)
    lat = json.loads((GOLDEN / RUN / "latency" / "cpu.json").read_text())
    by_key = {(m["model"], m["variant"], m["batch"]): m for m in lat["measurements"]}
    assert {r.target for r in rows} == {"cpu"}
    for r in rows:
        m = by_key.get((r.name, r.variant, 1))
        if m is None:  # removed by hand from the checked-in file: shown without latency
            assert (r.name, r.variant) == ("depth-03-top", "fp32-opt") and r.latency_s is None and r.pareto is None
            continue
        assert r.p50_s == m["summary_s"]["p50"] and r.latency_s == m["summary_s"]["balanced_median"]
        assert r.speedup == m["speedup"]["vs_full_fp32"]  # reused, not recomputed
        assert r.sequences_per_s == by_key[(r.name, r.variant, 8)]["throughput"]["sequences_per_s"]
        assert r.score == m["dev_scores"]["matthews_correlation"]
    full = [r for r in rows if r.is_full_depth and r.variant == "fp32"][0]
    assert full.speedup == 1.0 and full.delta() == 0.0
    torch = [r for r in rows if r.variant == TORCH_VARIANT]
    assert len(torch) == 1 and torch[0].pareto is None and torch[0].size_bytes  # weights size from latency
    best = recommend(rows, 1.0)
    assert (best.name, best.variant) == ("depth-03", "fp32-opt")
    assert best.pareto  # the fastest artifact within the drop cannot be dominated


def test_collect_rows_picks_threads_and_seq(golden_cwd):
    with pytest.raises(RunDirError, match="--threads 4"):
        collect_rows(RUN, threads=4)
    with pytest.raises(RunDirError, match="measured: 32"):
        collect_rows(RUN, seq=128)
    assert {r.seq for r in collect_rows(RUN, seq=32)} == {32}


# --- golden renderings ----------------------------------------------------------------------------


def rich_text(report, width: int) -> str:
    from rich.console import Console

    console = Console(width=width, no_color=True, record=True, force_terminal=False, file=io.StringIO())
    render_rich(report, console)
    return console.export_text()


def test_golden_table_and_markdown(golden_cwd, assert_golden):
    report = build_report([RUN])
    assert_golden("cola-tiny.txt", rich_text(report, 130))
    assert_golden("cola-tiny.narrow.txt", rich_text(report, 80))  # too narrow: scores, then speed
    assert_golden("cola-tiny.md", to_markdown(report))


def test_golden_markdown_without_latency(tmp_path, monkeypatch, assert_golden):
    (tmp_path / RUN).mkdir()
    shutil.copy(GOLDEN / RUN / "manifest.json", tmp_path / RUN / "manifest.json")
    monkeypatch.chdir(tmp_path)
    report = build_report([RUN])
    text = to_markdown(report)
    assert_golden("cola-tiny.no-latency.md", text)
    assert f"glp-bench latency --run {RUN} --device cpu" in text


def test_json_and_csv_carry_the_same_rows_and_recommendation(golden_cwd):
    report = build_report([RUN], max_drop=2.0)
    doc = assert_schema(json.loads(json.dumps(to_json(report))), "report")
    assert doc["format"] == "glp-bench-report" and doc["max_drop_points"] == 2.0
    (section,) = doc["sections"]
    rec = doc["recommendations"][0]["artifact"]
    # within 2 points: depth-03 int8 (-1.60) is not faster than depth-03 fp32-opt; the answer stays
    assert (rec["name"], rec["variant"], rec["target"]) == ("depth-03", "fp32-opt", "cpu")
    assert "depth-03 fp32-opt" in doc["recommendations"][0]["text"]
    assert len(section["rows"]) == 16 and section["batch"] == 1 and section["throughput_batch"] == 8
    assert [e["depth"] for e in section["by_strategy"]] == [4, 3, 2]
    lines = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert len(lines) == 16
    assert [(x["name"], x["variant"]) for x in lines if x["recommended"] == "True"] == [("depth-03", "fp32-opt")]
    assert {x["pareto"] for x in lines} == {"True", "False", ""}


def test_combined_runs_get_one_section_and_recommendation_each(tmp_path, monkeypatch):
    shutil.copytree(GOLDEN / RUN, tmp_path / "a")
    (tmp_path / "b").mkdir()
    m = json.loads((GOLDEN / RUN / "manifest.json").read_text())
    for rec in m["models"].values():  # another task's run, scores only
        rec["dev_scores"] = {"accuracy": 0.9 - 0.01 * (4 - rec["depth"])}
        for o in rec["onnx"].values():
            o["dev_scores"] = dict(rec["dev_scores"])
    m["config"]["task"] = "sst2"
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(m))
    monkeypatch.chdir(tmp_path)
    report = build_report(["a", "b"])
    assert [(s.run_name, s.task, s.target) for s in report.sections] == [("a", "cola", "cpu"), ("b", "sst2", None)]
    md = to_markdown(report)
    assert "recommended (a on cpu" in md and "no recommendation for b: no latency results" in md
    assert "| acc torch |" in md  # sst2's main metric


# --- plot -----------------------------------------------------------------------------------------


def test_plot_writes_a_png(golden_cwd, tmp_path):
    import matplotlib.image

    from glp_bench.report.plot import plot_report

    out = plot_report(build_report([RUN]), tmp_path / "sub" / "plot.png")
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC
    img = matplotlib.image.imread(out)
    assert img.shape[0] > 300 and img.shape[1] > 500
    assert img[..., :3].std() > 0.05  # not a blank canvas


# --- report.md written by prune-and-export / latency -------------------------------------------------


def test_write_run_report_and_its_warning(tmp_path, monkeypatch):
    shutil.copytree(GOLDEN / RUN, tmp_path / RUN)
    monkeypatch.chdir(tmp_path)
    out = write_run_report(RUN)
    assert out == Path(RUN) / "report.md"
    assert out.read_text() == to_markdown(build_report([RUN]))

    from rich.console import Console

    console = Console(record=True, width=200, file=io.StringIO())
    (tmp_path / RUN / "latency" / "cpu.json").write_text("{not json")
    assert write_run_report_or_warn(RUN, console) is None
    text = console.export_text()
    assert text.startswith("warning: report.md not written:") and "not valid JSON" in text


# --- CLI --------------------------------------------------------------------------------------------


def test_cli_report_formats_and_plot(tmp_path):
    proc = run_cli("report", "--run", RUN, cwd=GOLDEN)
    assert proc.returncode == 0, proc.stderr
    assert "strategies side by side" in proc.stdout
    last = proc.stdout.rstrip().splitlines()[-1]
    assert last.startswith("recommended (cola-tiny on cpu") and last.endswith("depth-03/onnx/model.opt.onnx")
    proc = run_cli("report", "--run", RUN, "--format", "json", "--max-drop", "0", cwd=GOLDEN)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)["recommendations"][0]["artifact"]
    assert (rec["name"], rec["variant"]) == ("depth-04", "fp32-opt")  # the fastest with no loss at all
    png = tmp_path / "p.png"
    md = tmp_path / "r.md"
    proc = run_cli("report", "--run", RUN, "--format", "markdown", "--output", str(md), "--plot", str(png), cwd=GOLDEN)
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert md.read_text() == (GOLDEN / "cola-tiny.md").read_text()
    proc = run_cli("report", "--run", RUN, "--format", "csv", cwd=GOLDEN)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 17


def test_cli_default_run_and_several_runs(tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(GOLDEN / RUN, runs / "one")
    proc = run_cli("report", "--format", "markdown", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "## one: cola on cpu" in proc.stdout
    shutil.copytree(GOLDEN / RUN, runs / "two")
    assert_clean_error(run_cli("report", cwd=tmp_path), "several run directories under runs/ (one, two)")
    proc = run_cli("report", "--run", "runs/one", "--run", "runs/two", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["recommendations"]) == 2


def test_cli_without_latency_shows_scores_and_how_to_measure(tmp_path):
    (tmp_path / RUN).mkdir()
    shutil.copy(GOLDEN / RUN / "manifest.json", tmp_path / RUN)
    proc = run_cli("report", "--run", RUN, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "42.51" in proc.stdout  # scores are there
    assert f"glp-bench latency --run {RUN} --device cpu" in proc.stdout.replace("\n", " ")
    assert_clean_error(run_cli("report", "--run", RUN, "--plot", "x.png", cwd=tmp_path), "nothing to plot")
    assert_clean_error(run_cli("report", "--run", RUN, "--target", "cuda", cwd=tmp_path),
                       "no latency results for target cuda")


def test_cli_bad_input(tmp_path):
    assert_clean_error(run_cli("report", cwd=tmp_path), "no run directory found")
    assert_clean_error(run_cli("report", "--run", "nowhere", cwd=tmp_path), "not a glp-bench run directory")
    proc = run_cli("report", "--run", RUN, "--max-drop", "-1", cwd=GOLDEN)  # argparse: before reading anything
    assert proc.returncode == 2 and "argument --max-drop: expected a finite number >= 0" in proc.stderr, proc.stderr
    assert_clean_error(run_cli("report", "--run", RUN, "--threads", "3", cwd=GOLDEN), "--threads 3")

    newer = tmp_path / "newer"
    shutil.copytree(GOLDEN / RUN, newer)
    lat = json.loads((newer / "latency" / "cpu.json").read_text())
    lat["version"] = 99
    (newer / "latency" / "cpu.json").write_text(json.dumps(lat))
    assert_clean_error(run_cli("report", "--run", str(newer), cwd=tmp_path), "format version 99")
    m = json.loads((newer / "manifest.json").read_text())
    from glp_bench.core.rundir import VERSION

    m["version"] = VERSION + 1  # newer than this glp-bench reads
    (newer / "manifest.json").write_text(json.dumps(m))
    assert_clean_error(run_cli("report", "--run", str(newer), cwd=tmp_path), f"format version {VERSION + 1}")

    empty = tmp_path / "empty"
    empty.mkdir()
    m["version"], m["models"], m["strategies"] = 1, {}, {}
    (empty / "manifest.json").write_text(json.dumps(m))
    assert_clean_error(run_cli("report", "--run", str(empty), cwd=tmp_path), "empty run")

    other = tmp_path / "other"
    shutil.copytree(GOLDEN / RUN, other)
    lat = json.loads((other / "latency" / "cpu.json").read_text())
    lat["run"]["task"] = "sst2"
    (other / "latency" / "cpu.json").write_text(json.dumps(lat))
    assert_clean_error(run_cli("report", "--run", str(other), cwd=tmp_path), "latency of a sst2 run")


def test_prune_and_export_then_latency_write_report_md(cola_dir, tmp_path):
    """End to end on a tiny model: both commands leave an up-to-date <run>/report.md."""
    from .conftest import build_tiny_model

    model = build_tiny_model("bert", tmp_path / "m", layers=3)
    run = tmp_path / "run"
    proc = run_cli("prune-and-export", "--task", "cola", "--model", str(model), "--data-dir", str(cola_dir),
                   "--budget", "smoke", "--strategy", "glp", "--run", str(run), "--device", "cpu",
                   "--variants", "fp32")
    assert proc.returncode == 0, proc.stderr
    assert f"report: {run / 'report.md'}" in proc.stderr
    md = (run / "report.md").read_text()
    assert "no latency results" in md and f"glp-bench latency --run {run} --device cpu" in md
    proc = run_cli("latency", "--run", str(run), "--variants", "fp32", "--threads", "1", "--batch-sizes", "1,2",
                   "--seq-lengths", "16", "--rounds", "1", "--min-runs", "3", "--min-time", "0", "--warmup", "1",
                   "--no-torch")
    assert proc.returncode == 0, proc.stderr
    md = (run / "report.md").read_text()
    assert "no latency results" not in md and "| 1.00x |" in md and "seq/s b2" in md
    proc = run_cli("report", "--run", str(run), "--format", "json")
    rec = json.loads(proc.stdout)["recommendations"][0]["artifact"]
    assert rec is not None and rec["latency_s"] > 0 and rec["variant"] == "fp32"


def test_changed_exports_and_failed_exports_are_flagged(tmp_path, monkeypatch):
    shutil.copytree(GOLDEN / RUN, tmp_path / RUN)
    path = tmp_path / RUN / "manifest.json"
    m = json.loads(path.read_text())
    m["models"]["depth-02"]["onnx"]["int8"]["sha256"] = "0" * 64  # re-exported after the latency run
    m["models"]["depth-03"]["onnx"]["int8"]["status"] = "failed"  # re-export failed since
    path.write_text(json.dumps(m))
    monkeypatch.chdir(tmp_path)
    report = build_report([RUN])
    notes = report.sections[0].notes
    assert any(n.startswith("depth-02/int8 @ cpu: measured on an earlier export") for n in notes), notes
    row = next(r for r in report.sections[0].rows if (r.name, r.variant) == ("depth-03", "int8"))
    assert row.latency_s is not None and not row.deployable and row.pareto is None  # shown, never ranked
    assert any("depth-03/int8 @ cpu: its export is now failed" in n for n in notes), notes
