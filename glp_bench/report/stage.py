"""A whole report: one section per (run, target) with its rows (``glp_bench.report.rows``: artifacts, the
Pareto frontier, the recommendation), the strategies side by side with GLP's verdict against each baseline, the
training and GLP-step tables, notes (missing files, int8 choices) and the recommendation text. Pure logic over
the run directory's files (reads only); rendering lives in ``glp_bench.report.render``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..core.errors import RunDirError
from ..core.records import ModelRecord
from ..core.rundir import RunDir
from .rows import DEFAULT_MAX_DROP, Row, collect_rows, recommend

__all__ = ["DEFAULT_MAX_DROP", "Report", "Row", "Section", "build_report", "collect_rows", "recommend"]


# --- a whole report: sections per (run, target) ----------------------------------------------


@dataclass
class Section:
    """The rows of one run on one target (or without latency), with what the report says about them."""

    run: str
    run_name: str  # the run directory's name
    task: str
    model_id: str
    main_key: str
    target: str | None
    target_info: dict  # device, emulated, arch, cpu_model, onnxruntime, complete, rounds, max_cv
    rows: list[Row]
    strategies: list[str]  # strategies of the run, in the run's order
    by_strategy: list[dict]  # per depth: {"depth", "models": {strategy: {name, kept_layers, score, delta}},
    #                                      "versus": {baseline: glp_bench.prune.compare record}}
    recommendation: Row | None
    notes: list[str]
    training: list[dict] = field(default_factory=list)  # glp_bench.report.quality.training_rows
    steps: list[dict] = field(default_factory=list)  # glp_bench.report.quality.step_rows

    @property
    def shape(self) -> dict:
        """The measured configuration behind the latency columns (None values without latency)."""
        r = next((r for r in self.rows if r.batch is not None), None)
        return {"batch": r and r.batch, "seq": r and r.seq, "threads": r and r.threads,
                "throughput_batch": r and r.throughput_batch}


@dataclass
class Report:
    sections: list[Section]
    max_drop: float


def _by_strategy(rd: RunDir, rows: list[Row]) -> tuple[list[str], list[dict]]:
    recs = {s: rd.strategy(s) for s in rd.strategy_names()}
    strategies = [s for s, r in recs.items() if r.models]
    if len(strategies) < 2:
        return strategies, []
    first = {}
    for r in rows:
        first.setdefault(r.name, r)
    depths = sorted({d for s in strategies for d in recs[s].models}, reverse=True)
    versus = rd.section("comparison", {}).get("baselines") or {}
    table = []
    for depth in depths:
        entry = {"depth": depth, "models": {},
                 "versus": {b: rows[str(depth)] for b, rows in versus.items() if str(depth) in rows}}
        for s in strategies:
            name = recs[s].models.get(depth)
            r = first.get(name)
            if name is None:
                continue
            torch = r and r.torch_scores and r.torch_scores.get(r.main_key)
            ref = r and (r.reference_scores or {}).get(r.main_key)
            entry["models"][s] = {
                "name": name, "kept_layers": r.kept_layers if r else (rd.model(name) or ModelRecord(name)).kept_layers,
                "score": torch, "delta_points": None if torch is None or ref is None else (torch - ref) * 100.0,
            }
        table.append(entry)
    return strategies, table


def _target_info(doc: dict) -> dict:
    t, env, host = doc.get("target") or {}, doc.get("environment") or {}, doc.get("host") or {}
    return {"name": t.get("name"), "device": t.get("device"), "description": t.get("description"),
            "emulated": bool(t.get("emulated")), "arch": t.get("arch"), "cpu_model": env.get("cpu_model"),
            "cuda_device": env.get("cuda_device"), "onnxruntime": host.get("onnxruntime"),
            "complete": doc.get("complete", True), "rounds_done": doc.get("rounds_done"),
            "rounds": (doc.get("settings") or {}).get("rounds"), "max_cv": (doc.get("settings") or {}).get("max_cv"),
            "notes": list(t.get("notes") or [])}


_METRIC_LABELS = {"matthews_correlation": "MCC", "accuracy": "acc", "f1": "F1", "pearson": "Pearson",
                  "spearmanr": "Spearman", "mcc": "MCC", "spearman": "Spearman"}  # GLUE's keys, a custom task's
_SPLIT_LABELS = {"validation_matched": "m", "validation_mismatched": "mm"}


def metric_label(key: str) -> str:
    """Short name of a score key: ``matthews_correlation`` -> ``MCC``, ``validation_matched/accuracy`` -> ``m acc``."""
    split, _, metric = key.rpartition("/")
    label = _METRIC_LABELS.get(metric, metric)
    return f"{_SPLIT_LABELS.get(split, split)} {label}" if split else label


def score_unit(task: str) -> str:
    """What a score x 100 is called: ``GLUE points`` on a GLUE task, ``points`` on a custom one."""
    from ..data.tasks import TASKS

    return "GLUE points" if task in TASKS else "points"


def points(x: float) -> str:
    """``1 point``, ``0.5 points``: a --max-drop for humans."""
    return f"{x:g} point" + ("" if x == 1 else "s")


def recommendation_text(section: Section, max_drop: float) -> str:
    """One line: the recommended artifact of a section, or why there is none."""
    metric = metric_label(section.main_key)
    where = f"{section.run_name}" + (f" on {section.target}" if section.target else "")
    r = section.recommendation
    if r is not None:
        speed = f", {r.speedup:.2f}x faster than full-depth fp32" if r.speedup is not None else ""
        return (f"recommended ({where}, within {points(max_drop)} of the full model's {metric}): {r.name} {r.variant}, "
                f"{r.depth} layers [{','.join(map(str, r.kept_layers))}] ({'+'.join(r.strategies) or '-'}), "
                f"{metric} {r.score * 100:.2f} ({r.delta():+.2f}){speed}, p50 {r.p50_s * 1e3:.2f} ms at batch "
                f"{r.batch}: {r.path}")
    if section.target is None or not any(x.latency_s is not None for x in section.rows):
        return (f"no recommendation for {where}: no latency results; run "
                f"'glp-bench latency --run {section.run} --device {section.target or 'cpu'}'")
    if not any(x.delta() is not None for x in section.rows):
        return f"no recommendation for {where}: the full-depth model has no dev score to compare with"
    return f"no recommendation for {where}: no artifact is within {points(max_drop)} of the full model's {metric}"


def missing_files(rd: RunDir) -> dict[str, list[str]]:
    """{model: what of it is not on disk} for the finished models of a run: ``model`` (its PyTorch folder) and the
    ONNX variants exported ok whose file is gone; models with everything in place are left out."""
    out: dict[str, list[str]] = {}
    for name, rec in rd.finished_models().items():
        gone = [] if rd.model_dir(name).is_dir() else ["model"]
        for variant in rd.ok_variants(name):
            path = ((rec.get("onnx") or {}).get(variant) or {}).get("path")
            if path and not rd.file(path).is_file():
                gone.append(variant)
        if gone:
            out[name] = gone
    return out


def missing_note(rd: RunDir) -> str | None:
    """The report's note on model files that the manifest records but the disk lacks (a deleted depth folder), or
    on a directory that holds the records only (a copy of manifest.json and latency/)."""
    gone = missing_files(rd)
    if not gone:
        return None
    finished = rd.finished_models()
    if set(gone) == set(finished) and all(v == ["model", *rd.ok_variants(n)] for n, v in gone.items()):
        return (f"{rd.path} holds the run's records only (no model or ONNX file): the rows come from manifest.json; "
                "'glp-bench deploy' and 'glp-bench latency' need the run with its files")
    what = "; ".join(f"{n} ({'its folder' if not (rd.path / n).exists() else ', '.join(v)})"
                     for n, v in gone.items())
    return (f"files missing in {rd.path}: {what}; these rows come from manifest.json and cannot be deployed or "
            f"measured: re-run the run's 'glp-bench prune' command (models), then 'glp-bench export --run {rd.path}' "
            "(ONNX files)")


def build_report(runs: Sequence[str | os.PathLike], targets: Sequence[str] | None = None, *,
                 threads: int | None = None, seq: int | None = None,
                 max_drop: float = DEFAULT_MAX_DROP) -> Report:
    """Sections of every (run, target): rows, strategy comparison, notes and recommendation.

    Raises RunDirError for anything ``collect_rows`` refuses, and for ``max_drop < 0``.
    """
    from ..bench import results
    from ..export.int8 import int8_notes
    from . import quality as quality

    if max_drop < 0:
        raise RunDirError(f"--max-drop must be >= 0 (GLUE points of the main metric), got {max_drop:g}")
    sections = []
    for run in runs:
        rd = RunDir(run).load()
        rows = collect_rows(rd, targets, threads=threads, seq=seq)
        strategies, by_strategy = _by_strategy(rd, rows)
        training = quality.training_rows(rd.finished_models(), rows[0].main_key) if rows else []
        steps = quality.step_rows(rd.strategies)
        if not quality.informative(training, steps):
            training, steps = [], []
        groups: dict[str | None, list[Row]] = {}
        for r in rows:
            groups.setdefault(r.target, []).append(r)
        for target, trows in groups.items():
            notes: list[str] = []
            info = {}
            if target is None:
                notes.append(f"no latency results in {rd.path}: scores only; measure with "
                             f"'glp-bench latency --run {rd.path} --device cpu'")
            else:
                info = _target_info(results.load(rd.latency_path(target)))
                if not info["complete"]:
                    notes.append(f"latency on {target} is INCOMPLETE ({info['rounds_done']} of {info['rounds']} "
                                 f"rounds); re-run 'glp-bench latency --run {rd.path} --device {target}'")
                if info["emulated"]:
                    notes.append(f"{target} ({info.get('arch') or 'another arch'}) is emulated on the host that measured it: "
                                 "run the same command on the device for real numbers")
                missing = [r.name + "/" + r.variant for r in trows if r.latency_s is None]
                if missing:
                    notes.append(f"not measured on {target}: {', '.join(missing)}")
                if any(r.unstable for r in trows):
                    notes.append(f"! = spread too large to trust (CV above {info['max_cv']:.0%}); "
                                 "re-measure on an idle machine")
            gone = missing_note(rd)
            if gone:
                notes.append(gone)
            notes.extend(n for r in trows for n in r.notes if "not measured" not in n)
            notes.extend(int8_notes(rd.models, {r.name for r in trows if r.variant == "int8"}))
            if any(r.reference_scores is None for r in trows):
                notes.append("the full-depth model has no dev score: score changes are unknown")
            if rd.cfg.pooling == "mean":
                notes.append("the classifiers read the mean of the tokens (--pooling mean), in PyTorch and in every "
                             "exported graph")
            sections.append(Section(
                run=str(rd.path), run_name=rd.path.name, task=trows[0].task, model_id=trows[0].model_id,
                main_key=trows[0].main_key, target=target, target_info=info, rows=trows, strategies=strategies,
                by_strategy=by_strategy, recommendation=recommend(trows, max_drop), notes=notes,
                training=training, steps=steps,
            ))
    return Report(sections=sections, max_drop=max_drop)
