"""A ``glp_bench.report.stage.Report`` as rich tables, Markdown, CSV and JSON, and the run's ``report.md``.

The table and the Markdown show the same cells (``section_cells``): scores in points (metric
x 100), times in milliseconds, sizes in MB. CSV and JSON keep raw values (fractions, seconds, bytes).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ..bench.results import shape_words
from ..core.rundir import RunDir
from .quality import step_cells, training_cells
from .stage import (
    DEFAULT_MAX_DROP,
    Report,
    Row,
    Section,
    build_report,
    metric_label,
    points,
    recommendation_text,
    score_unit,
)

JSON_FORMAT = "glp-bench-report"
JSON_VERSION = 1


# --- cells shared by the rich table and the Markdown ------------------------------------------


def _pts(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.2f}"


def layer_ranges(kept: list[int] | None) -> str:
    """Original layer indices, runs of three or more as ranges: ``[0, 1, 2, 3, 5, 7, 8]`` -> ``0-3,5,7,8``."""
    if kept is None:
        return "-"
    parts: list[str] = []
    run: list[int] = []
    for i in [*sorted(kept), None]:
        if run and (i is None or i != run[-1] + 1):
            parts += [f"{run[0]}-{run[-1]}"] if len(run) >= 3 else [str(x) for x in run]
            run = []
        if i is not None:
            run.append(i)
    return ",".join(parts)


def _strategy(r: Row) -> str:
    return "full" if r.is_full_depth else "+".join(r.strategies) or "-"


def _pareto(r: Row, rec: Row | None) -> str:
    if r.pareto is None:
        return "-"
    return ("yes *" if r is rec else "yes") if r.pareto else "no"


def score_keys(section: Section) -> list[str]:
    """Main key first, then any other metric the rows were scored on (MRPC's accuracy beside F1)."""
    keys = [section.main_key]
    for r in section.rows:
        keys += [k for k in (r.scores or {}) if k not in keys]
    return keys


def section_cells(section: Section) -> tuple[list[str], list[str], list[list[str]]]:
    """(headers, justifications, rows of cell text) of a section's main table."""
    m = metric_label(section.main_key)
    keys = score_keys(section)
    big = section.shape["throughput_batch"]
    cols = [("depth", "right"), ("layers", "left"), ("strategy", "left"), ("variant", "left"),
            (f"{m} torch", "right"), *((metric_label(k), "right") for k in keys), (f"Δ {m}", "right"),
            ("p50 ms", "right"), ("p90 ms", "right"), (f"seq/s b{big}" if big else "seq/s", "right"),
            ("speedup", "right"), ("MB", "right"), ("Pareto", "left")]
    cells = []
    for r in section.rows:
        d = r.delta()
        cells.append([
            str(r.depth), layer_ranges(r.kept_layers), _strategy(r), r.variant,
            _pts((r.torch_scores or {}).get(section.main_key)), *(_pts(r.score_of(k)) for k in keys),
            "-" if d is None else f"{d:+.2f}", _ms(r.p50_s) + ("!" if r.unstable else ""), _ms(r.p90_s),
            "-" if r.sequences_per_s is None else f"{r.sequences_per_s:.1f}",
            "-" if r.speedup is None else f"{r.speedup:.2f}x",
            "-" if r.size_bytes is None else f"{r.size_bytes / 1e6:.1f}", _pareto(r, section.recommendation),
        ])
    return [c for c, _ in cols], [j for _, j in cols], cells


def strategy_cells(section: Section) -> tuple[list[str], list[str], list[list[str]]] | None:
    """Strategies side by side per depth (PyTorch dev scores), or None with a single strategy."""
    if not section.by_strategy:
        return None
    m = metric_label(section.main_key)
    headers, just = ["depth"], ["right"]
    for s in section.strategies:
        headers += [f"{s} layers", f"{s} {m}", f"{s} Δ"]
        just += ["left", "right", "right"]
    headers.append("better")
    just.append("left")
    baselines = [s for s in section.strategies if s != "glp" and "glp" in section.strategies
                 and any(s in (e.get("versus") or {}) for e in section.by_strategy)]
    for b in baselines:
        headers.append(f"glp vs {b} (dev, paired bootstrap)")
        just.append("left")
    cells = []
    for entry in section.by_strategy:
        row = [str(entry["depth"])]
        for s in section.strategies:
            e = entry["models"].get(s)
            if e is None:
                row += ["-", "-", "-"]
            else:
                d = e["delta_points"]
                row += [layer_ranges(e["kept_layers"]), _pts(e["score"]), "-" if d is None else f"{d:+.2f}"]
        row.append(_better(entry["models"]))
        row += [versus_text((entry.get("versus") or {}).get(b)) for b in baselines]
        cells.append(row)
    return headers, just, cells


def versus_text(rec: dict | None) -> str:
    """One cell of GLP against a baseline (``glp_bench.prune.compare``): difference in points, its 95% interval,
    the share of bootstrap draws GLP wins, and the verdict."""
    if not rec:
        return "-"
    if "diff_points" not in rec:
        return rec.get("verdict", "-")
    lo, hi = rec["ci95"]
    return (f"{rec['diff_points']:+.2f} [{lo:+.2f}, {hi:+.2f}], P(glp better) {rec['p_better']:.2f}: "
            f"{rec['verdict']}")


def _better(models: dict) -> str:
    if len({e["name"] for e in models.values()}) == 1:
        return "same layers"
    scored = {s: e["score"] for s, e in models.items() if e["score"] is not None}
    if len(scored) < 2:
        return "-"
    best = max(scored.values())
    winners = [s for s, v in scored.items() if v == best]
    return "tie" if len(winners) > 1 else winners[0]


def section_title(section: Section) -> str:
    if section.target is None:
        return f"{section.run_name}: {section.task}, no latency results (scores only)"
    info = section.target_info
    host = info.get("cuda_device") if info.get("device") == "cuda" else info.get("cpu_model")
    device = info.get("device") if info.get("device") != section.target else None
    ort = info.get("onnxruntime") and f"onnxruntime {info['onnxruntime']}"
    where = ", ".join(x for x in (device, host, ort) if x)
    return (f"{section.run_name}: {section.task} on {section.target}" + (f" ({where})" if where else "")
            + f", {shape_words(section.shape)}")


def caption(section: Section, max_drop: float) -> str:
    m = metric_label(section.main_key)
    return (f"layers: kept, original indices; {m}: dev score in {score_unit(section.task)} (x 100) of the artifact "
            f"(ONNX variants through ONNX Runtime), {m} torch: of the PyTorch model; Δ: vs the full-depth PyTorch model; "
            "p50/p90 of all samples; MB: file size; speedup = ratio of balanced medians vs the "
            "full-depth fp32 ONNX model (glp-bench latency); Pareto = no other artifact is both faster and better; "
            f"* = recommended (max drop {points(max_drop)})")


# --- rich -------------------------------------------------------------------------------------


def render_rich(report: Report, console) -> None:
    """Print every section's tables and notes, then the recommendation lines, on ``console``."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    def table(title, headers, just, cells, cap=None):
        t = Table(title=title, caption=cap, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for k, (h, j) in enumerate(zip(headers, just, strict=True)):  # cells stay whole, headers wrap
            t.add_column(h, justify=j, min_width=max((len(c[k]) for c in cells), default=1))
        for c in cells:
            t.add_row(*(escape(x) for x in c))
        return t

    for section in report.sections:
        headers, just, cells = section_cells(section)
        cap = caption(section, report.max_drop)
        whole = table(section_title(section), headers, just, cells, cap)
        if console.measure(whole, options=console.options.update_width(10_000)).maximum <= console.width:
            console.print(whole)
        else:  # a narrow console: scores, then speed, each row named by depth, strategy and variant
            cut = next(i for i, h in enumerate(headers) if h.startswith("Δ")) + 1
            keep = [0, 2, 3] + list(range(cut, len(headers)))
            console.print(table(section_title(section), headers[:cut], just[:cut], [c[:cut] for c in cells]))
            console.print(table(None, [headers[i] for i in keep], [just[i] for i in keep],
                                [[c[i] for i in keep] for c in cells], cap))
        strat = strategy_cells(section)
        if strat:
            console.print(table(f"{section.run_name}: strategies side by side (PyTorch dev scores)", *strat))
        if section.training:
            console.print(table(f"{section.run_name}: training (dev {metric_label(section.main_key)}, points, over "
                                "final seeds)", *training_cells(section.training)))
        if section.steps:
            console.print(table(f"{section.run_name}: GLP steps (held-out 15% of train, paired bootstrap)",
                                *step_cells(section.steps)))
        for note in section.notes:
            console.print(f"note: {escape(note)}", soft_wrap=True)
    for section in report.sections:
        console.print(escape(recommendation_text(section, report.max_drop)), soft_wrap=True)


# --- Markdown ---------------------------------------------------------------------------------


def _md_table(headers: list[str], just: list[str], cells: list[list[str]]) -> str:
    def line(xs):
        return "| " + " | ".join(x.replace("|", "\\|") for x in xs) + " |"

    sep = ["---:" if j == "right" else "---" for j in just]
    return "\n".join([line(headers), line(sep), *(line(c) for c in cells)])


def to_markdown(report: Report) -> str:
    out = ["# glp-bench report", ""]
    for section in report.sections:
        out += [f"## {section_title(section)}", "", _md_table(*section_cells(section)), "",
                f"_{caption(section, report.max_drop)}_", ""]
        strat = strategy_cells(section)
        if strat:
            out += ["### Strategies side by side (PyTorch dev scores)", "", _md_table(*strat), ""]
        if section.training:
            out += ["### Training: start, distillation and seeds (PyTorch dev scores, points)", "",
                    _md_table(*training_cells(section.training)), ""]
        if section.steps:
            out += ["### GLP steps (held-out 15% of train, paired bootstrap)", "", _md_table(*step_cells(section.steps)), ""]
        out += [f"- note: {n}" for n in section.notes]
        if section.notes:
            out.append("")
    out += ["## Recommendation", ""]
    out += [f"- {recommendation_text(s, report.max_drop)}" for s in report.sections]
    return "\n".join(out) + "\n"


# --- JSON and CSV -----------------------------------------------------------------------------


def to_json(report: Report) -> dict:
    """The report as a plain dict (format ``glp-bench-report`` v1). A rendering, not a measurement: it
    carries no environment of its own; each section's ``target_info`` says where latency was measured."""
    sections = []
    for s in report.sections:
        rec = s.recommendation
        sections.append({
            "run": s.run, "task": s.task, "model": s.model_id, "main_key": s.main_key, "target": s.target,
            "target_info": s.target_info, **s.shape, "rows": [r.to_dict() for r in s.rows],
            "strategies": s.strategies, "by_strategy": s.by_strategy, "notes": s.notes,
            "training": s.training, "glp_steps": s.steps,
            "recommendation": rec.to_dict() if rec else None,
            "recommendation_text": recommendation_text(s, report.max_drop),
        })
    return {"format": JSON_FORMAT, "version": JSON_VERSION, "max_drop_points": report.max_drop,
            "sections": sections,
            "recommendations": [{"run": x["run"], "target": x["target"], "artifact": x["recommendation"],
                                 "text": x["recommendation_text"]} for x in sections]}


CSV_COLUMNS = ("run", "task", "model_id", "target", "name", "depth", "kept_layers", "strategies", "variant",
               "main_key", "score", "torch_score", "reference_score", "delta_points", "batch", "seq", "threads",
               "p50_s", "p90_s", "latency_s", "cv", "unstable", "throughput_batch", "sequences_per_s", "speedup",
               "size_bytes", "path", "pareto", "recommended")


def to_csv(report: Report) -> str:
    """One line per row of every section; raw units (fractions, seconds, bytes); lists joined with spaces."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for s in report.sections:
        for r in s.rows:
            d = {**r.to_dict(), "torch_score": (r.torch_scores or {}).get(r.main_key),
                 "reference_score": (r.reference_scores or {}).get(r.main_key),
                 "kept_layers": " ".join(map(str, r.kept_layers)), "strategies": " ".join(r.strategies),
                 "recommended": r is s.recommendation}
            w.writerow(["" if d[c] is None else d[c] for c in CSV_COLUMNS])
    return buf.getvalue()


# --- the run's report.md -----------------------------------------------------------------------


def write_run_report(run_dir: str | os.PathLike, max_drop: float = DEFAULT_MAX_DROP) -> Path:
    """Render ``<run>/report.md`` (every target with latency results) and return its path. Raises
    GlpError subclasses only for problems with the run's files (callers treat them as a warning)."""
    from ..core.jsonio import atomic_write_text

    report = build_report([run_dir], max_drop=max_drop)
    out = RunDir(run_dir).report_path
    atomic_write_text(out, to_markdown(report))
    return out


def write_run_report_or_warn(run_dir: str | os.PathLike, console) -> Path | None:
    """``write_run_report`` for the end of ``prune-and-export`` and ``latency``: prints where the report
    went, or one warning line; never raises (the report is a by-product of those commands)."""
    from ..core.errors import GlpError

    try:
        out = write_run_report(run_dir)
    except GlpError as e:
        console.print(f"warning: report.md not written: {e}", markup=False, highlight=False)
        return None
    except Exception as e:  # noqa: BLE001 - a report bug must not fail a finished prune/export/latency
        console.print(f"warning: report.md not written ({type(e).__name__}: {e}); try 'glp-bench report --run {run_dir}'",
                      markup=False, highlight=False)
        return None
    console.print(f"report: {out}", markup=False, highlight=False)
    return out
