"""The GLUE-wide table of ``glp-bench report --run A --run B ...`` over runs of different tasks.

One table per pre-trained model (runs of different models are kept apart): one row per strategy and
depth (the full model once), one column per task holding its main metric in GLUE points (metric x 100,
the PyTorch model's dev score), the average over the table's tasks (only when every task has a score),
and the speedup of that row's model on a chosen latency target: the ``variant`` ONNX file (fp32 by
default) against the full-depth fp32 file, as ``glp-bench latency`` measured it, averaged over the tasks
measured there. Pure logic over a built ``Report``; renderings for the terminal, Markdown, JSON and CSV.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field

from ..core.errors import RunDirError
from .stage import Report, metric_label

FULL = "full"  # the strategy label of the full-depth row


@dataclass
class GlueRow:
    strategy: str
    depth: int
    points: dict[str, float | None]  # task -> main metric x 100
    average: float | None
    speedup: float | None


@dataclass
class GlueTable:
    model_id: str
    tasks: list[str]
    main_keys: dict[str, str]  # task -> main metric key
    runs: dict[str, str]  # task -> run directory
    target: str | None
    variant: str
    rows: list[GlueRow]
    notes: list[str] = field(default_factory=list)


def _task_order(tasks: list[str]) -> list[str]:
    from ..data.tasks import TASKS

    glue = [t for t in TASKS if t in tasks]
    return glue + [t for t in tasks if t not in glue]


def default_target(report: Report) -> str | None:
    return next((s.target for s in report.sections if s.target is not None), None)


def build_glue(report: Report, target: str | None = None, variant: str = "fp32",
               strict: bool = False) -> list[GlueTable]:
    """The GLUE-wide tables of ``report`` (empty unless some model has runs of two or more tasks).
    ``target``: where speedups come from (default: the first target measured). A model with two runs of
    one task (seeds, budgets: one cell twice) gets no table; ``strict`` raises RunDirError instead."""
    target = target or default_target(report)
    by_model: dict[str, dict[str, list]] = {}
    twice: dict[str, str] = {}
    for s in report.sections:
        per_task = by_model.setdefault(s.model_id, {})
        runs = per_task.setdefault(s.task, [])
        if runs and runs[0].run != s.run:
            twice[s.model_id] = (f"runs {runs[0].run} and {s.run} both hold {s.task} with model {s.model_id}: the "
                                 "GLUE-wide table has one column per task; pass one --run per task and model")
        runs.append(s)
    if strict and twice:
        raise RunDirError(next(iter(twice.values())))
    tables = []
    for model_id, per_task in by_model.items():
        if len(per_task) < 2 or model_id in twice:
            continue
        tasks = _task_order(list(per_task))
        cells: dict[tuple[str, int], dict] = {}
        speed: dict[tuple[str, int], list[float]] = {}
        notes = []
        for task in tasks:
            sections = per_task[task]
            seen = set()
            for r in sections[0].rows:
                if r.name in seen:
                    continue
                seen.add(r.name)
                score = (r.torch_scores or {}).get(r.main_key)
                for label in [FULL] if r.is_full_depth else r.strategies:
                    cells.setdefault((label, r.depth), {})[task] = None if score is None else score * 100.0
            timed = next((s for s in sections if s.target == target), None)
            if target is not None and timed is None:
                notes.append(f"{task}: no latency on {target} in {sections[0].run}; measure it with "
                             f"'glp-bench latency --run {sections[0].run} --device {target}'")
            for r in timed.rows if timed else []:
                if r.variant == variant and r.speedup is not None:
                    for label in [FULL] if r.is_full_depth else r.strategies:
                        speed.setdefault((label, r.depth), []).append(r.speedup)
        order = sorted(cells, key=lambda k: (k[0] != FULL, -k[1]))
        rows = []
        for key in order:
            pts = {t: cells[key].get(t) for t in tasks}
            known = [v for v in pts.values() if v is not None]
            sp = speed.get(key)
            rows.append(GlueRow(key[0], key[1], pts, sum(known) / len(known) if len(known) == len(tasks) else None,
                                sum(sp) / len(sp) if sp else None))
        tables.append(GlueTable(model_id, tasks, {t: per_task[t][0].main_key for t in tasks},
                                {t: per_task[t][0].run for t in tasks}, target, variant, rows, notes))
    return tables


# --- renderings ---------------------------------------------------------------------------------


def _p(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _x(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def cells(t: GlueTable) -> tuple[list[str], list[str], list[list[str]]]:
    speed = f"speedup ({t.target}, {t.variant})" if t.target else "speedup"
    headers = ["strategy", "depth", *(f"{task} {metric_label(t.main_keys[task])}" for task in t.tasks), "average", speed]
    just = ["left"] + ["right"] * (len(headers) - 1)
    body = [[r.strategy, str(r.depth), *(_p(r.points[task]) for task in t.tasks), _p(r.average), _x(r.speedup)]
            for r in t.rows]
    return headers, just, body


def title(t: GlueTable) -> str:
    return f"GLUE-wide: {t.model_id} (main metric per task, GLUE points)"


def caption(t: GlueTable) -> str:
    speed = (f"speedup: the {t.variant} ONNX model against the full-depth fp32 one on {t.target}, mean over "
             "tasks" if t.target else "no latency target: no speedups")
    return f"PyTorch dev scores x 100; average over {len(t.tasks)} tasks (only where all have a score); {speed}"


def to_markdown(tables: list[GlueTable]) -> str:
    from .render import _md_table

    out = []
    for t in tables:
        out += [f"## {title(t)}", "", _md_table(*cells(t)), "", f"_{caption(t)}_", ""]
        out += [f"- note: {n}" for n in t.notes] + ([""] if t.notes else [])
    return "\n".join(out)


def render_rich(tables: list[GlueTable], console) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    for t in tables:
        headers, just, body = cells(t)
        table = Table(title=title(t), caption=caption(t), box=box.SIMPLE_HEAD, pad_edge=False)
        for h, j in zip(headers, just, strict=True):
            table.add_column(h, justify=j)
        for row in body:
            table.add_row(*(escape(c) for c in row))
        console.print(table)
        for n in t.notes:
            console.print(f"note: {escape(n)}", soft_wrap=True)


def to_json(tables: list[GlueTable]) -> list[dict]:
    return [asdict(t) for t in tables]


def to_csv(tables: list[GlueTable]) -> str:
    """One line per model, strategy and depth; one column per task (GLUE points), the union of all tables'."""
    tasks = _task_order(list(dict.fromkeys(task for t in tables for task in t.tasks)))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model_id", "strategy", "depth", *tasks, "average", "speedup", "target", "variant"])
    for t in tables:
        for r in t.rows:
            w.writerow([t.model_id, r.strategy, r.depth, *("" if r.points.get(k) is None else round(r.points[k], 4)
                                                          for k in tasks),
                        "" if r.average is None else round(r.average, 4),
                        "" if r.speedup is None else round(r.speedup, 4), t.target or "", t.variant])
    return buf.getvalue()


# --- the report command's output: the per-run report, then the GLUE-wide tables ---------------------


def render_report_rich(report: Report, tables: list[GlueTable], console, glue_only: bool = False) -> None:
    from .render import render_rich as render_runs

    if not glue_only:
        render_runs(report, console)
    render_rich(tables, console)


def report_text(report: Report, tables: list[GlueTable], fmt: str, glue_only: bool = False) -> str:
    """``fmt`` (markdown, json, csv) of the report with its GLUE-wide tables (``glue_only``: those alone).
    JSON carries them under ``glue``; CSV, one table per file, is the GLUE table only with ``glue_only``."""
    import json

    from . import render


    if fmt == "markdown":
        runs = "" if glue_only else render.to_markdown(report)
        glue = to_markdown(tables)
        return (runs + ("\n" if runs and glue else "") + glue) or "# glp-bench report\n"
    if fmt == "json":
        doc = {"glue": to_json(tables)} if glue_only else {**render.to_json(report), "glue": to_json(tables)}
        return json.dumps(doc, indent=2) + "\n"
    return to_csv(tables) if glue_only else render.to_csv(report)


def check_glue_only(tables: list[GlueTable], runs) -> None:
    if not tables:
        raise RunDirError(f"--glue needs runs of at least two tasks with the same model; got {', '.join(map(str, runs))}"
                          " (repeat --run, one per task)")
