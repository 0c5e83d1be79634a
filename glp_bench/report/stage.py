"""Score against speed: the rows of a report, the Pareto frontier, and the recommendation.

A report row is one *artifact* of a run measured on one latency target: a pruned model (depth, kept
layers, the strategies that reached it) in one ONNX variant (fp32, fp32-opt, int8, fp16) or the
PyTorch model itself (variant ``torch-eager``). It carries

* scores: the artifact's dev scores (ONNX variants: as scored through ONNX Runtime by ``export``,
  ``models[name]["onnx"][variant]["dev_scores"]``; PyTorch: ``models[name]["dev_scores"]``), the
  PyTorch model's scores, and the *reference*: the full-depth PyTorch model's scores. Score changes
  are in GLUE points (metric x 100) against that reference, on the task's main metric;
* latency (from ``latency/<target>.json``, loaded with ``glp_bench.bench.results.load``): p50/p90 of all
  samples at the smallest measured batch (batch 1 by default), the balanced median (mean of per-round
  medians, what ranks artifacts and what speedups are ratios of), sequences/s at the largest measured
  batch, and the speedup ``vs_full_fp32`` exactly as ``glp-bench latency`` computed it;
* whether it is on the Pareto frontier of (latency, main score) among the deployable artifacts of its
  run and target.

This module is pure logic over the run directory's files (reads only); rendering lives in
``glp_bench.report.render``, the plot in ``glp_bench.report.plot``, the CLI in ``glp_bench.commands.report``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..core.errors import RunDirError
from ..core.records import ModelRecord
from ..core.rundir import RunDir
from ..core.vocab import TORCH_VARIANT, variant_rank

DEFAULT_MAX_DROP = 1.0  # GLUE points of the main metric
_EPS = 1e-9  # float slack when comparing score changes with --max-drop (the bound is inclusive)


@dataclass
class Row:
    """One artifact (model x variant) of one run on one latency target. Times in seconds."""

    run: str  # the run directory
    task: str
    model_id: str  # what was pruned (hub id or folder), from the run's config
    target: str | None  # latency target name; None when the run has no latency results
    name: str  # model name in the manifest: "depth-03", "depth-03-top", ...
    depth: int
    kept_layers: list[int]  # original layer indices
    strategies: list[str]  # strategies that reached this layer set ("glp", "top", ...)
    variant: str  # "fp32", "fp32-opt", "int8", "fp16", or "torch-eager" (the PyTorch model)
    path: str | None  # the artifact, relative to the run directory
    size_bytes: int | None
    main_key: str  # key of the task's main metric in the score dicts
    scores: dict[str, float] | None  # this artifact's dev scores (fractions)
    torch_scores: dict[str, float] | None  # the PyTorch model's dev scores
    reference_scores: dict[str, float] | None  # the full-depth PyTorch model's dev scores
    is_full_depth: bool
    batch: int | None = None  # batch of p50/p90/latency/speedup (the smallest measured, 1 by default)
    seq: int | None = None
    threads: int | None = None
    p50_s: float | None = None
    p90_s: float | None = None
    latency_s: float | None = None  # balanced median: ranks artifacts, speedups are its ratios
    cv: float | None = None
    unstable: bool | None = None
    throughput_batch: int | None = None  # the largest measured batch
    sequences_per_s: float | None = None  # at throughput_batch
    speedup: float | None = None  # vs the full-depth fp32 ONNX model, same batch/seq/threads
    pareto: bool | None = None  # None: not ranked (no latency, or the PyTorch model)
    export_status: str | None = "ok"  # the manifest's status of the ONNX file (None for the PyTorch model)
    notes: list[str] = field(default_factory=list)

    @property
    def deployable(self) -> bool:
        """An ONNX file whose export is ok (the PyTorch model is shown as a reference, never recommended)."""
        return self.variant != TORCH_VARIANT and self.export_status == "ok"

    def score_of(self, key: str | None = None) -> float | None:
        return (self.scores or {}).get(key or self.main_key)

    @property
    def score(self) -> float | None:
        """This artifact's main dev score (fraction)."""
        return self.score_of()

    def delta(self, key: str | None = None) -> float | None:
        """Score change in GLUE points (x100) against the full-depth PyTorch model; None if unknown."""
        key = key or self.main_key
        s, ref = self.score_of(key), (self.reference_scores or {}).get(key)
        return None if s is None or ref is None else (s - ref) * 100.0

    @property
    def label(self) -> str:
        """``depth-03-top/int8 @ cpu``: names the artifact in one line."""
        return f"{self.name}/{self.variant}" + (f" @ {self.target}" if self.target else "")

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d.update(score=self.score, delta_points=self.delta(), deployable=self.deployable)
        return d


# --- Pareto frontier and recommendation (pure) ------------------------------------------------


def pareto_front(points: Sequence[tuple[float | None, float | None]]) -> list[bool]:
    """Which ``(latency, score)`` points are on the Pareto frontier (lower latency and higher score
    are better). A point is on it unless another point is at least as good in both and strictly
    better in one; equal points are all on it. Points with a ``None`` are never on it (and never
    dominate). Returns one bool per point, in order."""
    ok = [lat is not None and s is not None for lat, s in points]
    out = []
    for i, (lat, s) in enumerate(points):
        if not ok[i]:
            out.append(False)
            continue
        dominated = any(
            ok[j] and points[j][0] <= lat and points[j][1] >= s and (points[j][0] < lat or points[j][1] > s)
            for j in range(len(points)) if j != i
        )
        out.append(not dominated)
    return out


def mark_pareto(rows: list[Row]) -> None:
    """Set ``row.pareto`` in place, per (run, target): deployable rows with latency and a main
    score get True/False; the others None."""
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        r.pareto = None
        if r.deployable and r.latency_s is not None and r.score is not None:
            groups.setdefault((r.run, r.target), []).append(r)
    for group in groups.values():
        for r, on in zip(group, pareto_front([(r.latency_s, r.score) for r in group]), strict=True):
            r.pareto = on


def recommend(rows: Iterable[Row], max_drop: float = DEFAULT_MAX_DROP, main_key: str | None = None) -> Row | None:
    """The fastest deployable artifact whose dev score is within ``max_drop`` GLUE points of the full
    model, or None when no row qualifies.

    * ``rows``: as returned by ``collect_rows``; give it the rows of ONE run and ONE target (latencies
      of different targets are not comparable; the CLI recommends per run and target).
    * ``max_drop``: allowed loss in GLUE points (metric x 100) of ``main_key`` against the full-depth
      PyTorch model of the row's run (``Row.delta``); inclusive; scores above the reference qualify.
      Must be >= 0 (ValueError otherwise).
    * ``main_key``: the score to compare (default: each row's ``main_key``, the task's main metric).

    Considered: ONNX rows (not the PyTorch reference) with a measured latency and a known score
    change. Fastest = lowest balanced-median latency (``Row.latency_s``, the quantity speedups are
    ratios of); ties go to the higher score, then the smaller file, then the name.
    """
    if max_drop < 0:
        raise ValueError(f"max_drop must be >= 0 (GLUE points), got {max_drop}")
    ok = []
    for r in rows:
        d = r.delta(main_key)
        if r.deployable and r.latency_s is not None and d is not None and d >= -max_drop - _EPS:
            ok.append(r)
    if not ok:
        return None
    return min(ok, key=lambda r: (r.latency_s, -(r.score_of(main_key) or 0.0), r.size_bytes or 0, r.name, r.variant))


# --- collecting rows from a run directory -----------------------------------------------------


def _pick(values: set, preferred, choose=max, what: str = "", where: str = ""):
    if preferred is not None:
        if preferred not in values:
            raise RunDirError(f"{where} has no latency measured with {what} {preferred}; "
                              f"measured: {', '.join(map(str, sorted(values)))}")
        return preferred
    return choose(values)


def _latency_rows(doc: dict, threads: int | None, seq: int | None, max_length: int | None, where: str):
    """{(model, variant): (small-batch measurement, large-batch measurement)} + (batch, seq, threads, big)."""
    ok = [m for m in doc.get("measurements", []) if m.get("summary_s")]
    if not ok:
        return {}, None
    t = _pick({m["threads"] for m in ok}, threads, max, "--threads", where)
    seqs = {m["seq"] for m in ok if m["threads"] == t}
    s = _pick(seqs, seq, lambda v: max_length if max_length in v else max(v), "--seq", where)
    chosen = [m for m in ok if m["threads"] == t and m["seq"] == s]
    small, big = min(m["batch"] for m in chosen), max(m["batch"] for m in chosen)
    out: dict[tuple[str, str], list] = {}
    for m in chosen:
        slot = out.setdefault((m["model"], m["variant"]), [None, None])
        if m["batch"] == small:
            slot[0] = m
        if m["batch"] == big:
            slot[1] = m
    return out, (small, s, t, big)


def collect_rows(run: str | os.PathLike | RunDir, targets: Sequence[str] | None = None, *,
                 threads: int | None = None, seq: int | None = None) -> list[Row]:
    """Report rows of one run directory: one per (target, model, variant), deepest first.

    * ``run``: a run directory (path, or a loaded ``RunDir``); read only.
    * ``targets``: latency target names (``<run>/latency/<name>.json``); default all present. When the
      run has no latency results at all (and ``targets`` is None), rows carry ``target=None`` and no
      latency: scores only.
    * ``threads`` / ``seq``: which measured configuration fills the latency columns (default: the
      most threads measured; the run's max_length when measured, else the longest sequence). The
      batch is always the smallest measured (1 with the default targets) and throughput is taken at
      the largest measured batch.

    Rows: with latency results, every (model, variant) measured on the target plus every exported
    model missing there (no latency, so it still shows); without, every ONNX variant exported with
    status ok. Models with no ONNX export appear as their PyTorch model (variant ``torch-eager``).
    ``Row.pareto`` is filled (``mark_pareto``).

    Raises ``RunDirError`` (a ``GlpError``: one clear message) for a missing/unreadable/too-new
    manifest or latency file, a run with no fine-tuned model, an unknown target, or a threads/seq
    value that was not measured.
    """
    rd = run if isinstance(run, RunDir) else RunDir(run).load()
    if not rd.data:
        rd.load()
    from ..bench import results
    from ..data.resolve import task_of_run

    finished = rd.finished_models()
    if not finished:
        raise RunDirError(f"{rd.path} has no fine-tuned model yet (empty run); run 'glp-bench prune' "
                          f"(or 'glp-bench prune-and-export') to fill it")
    task_name = rd.cfg.task
    task = task_of_run(rd.config)
    main_key = task.main_dev_key
    full_depth, ref_name = rd.reference()
    reference = (finished.get(ref_name) or {}).get("dev_scores") if ref_name else None
    names = sorted(finished, key=lambda n: (-finished[n]["depth"], rd.strategy_rank(finished[n]), n))

    def base(name: str, variant: str, target: str | None) -> Row:
        rec = finished[name]
        onnx = (rec.get("onnx") or {}).get(variant) or {}
        torch = variant == TORCH_VARIANT
        return Row(
            run=str(rd.path), task=task_name, model_id=str(rd.cfg.model), target=target, name=name,
            depth=rec["depth"], kept_layers=list(rec.get("kept_layers") or []),
            strategies=list(rec.get("strategies") or []), variant=variant,
            path=rec.get("path") if torch else onnx.get("path"),
            size_bytes=None if torch else onnx.get("size"),  # torch: the latency record's weights size
            main_key=main_key, scores=rec.get("dev_scores") if torch else onnx.get("dev_scores"),
            torch_scores=rec.get("dev_scores"), reference_scores=reference, is_full_depth=rec["depth"] == full_depth,
            export_status=None if torch else onnx.get("status"),
        )

    def exported(name: str) -> list[str]:
        return rd.ok_variants(name)

    available = rd.latency_targets()
    if targets is None:
        targets = available
    else:
        missing = [t for t in targets if t not in available]
        if missing:
            raise RunDirError(
                f"{rd.path} has no latency results for target {', '.join(missing)}"
                + (f" (it has: {', '.join(available)})" if available else "")
                + f"; run 'glp-bench latency --run {rd.path} --device {missing[0]}'")

    rows: list[Row] = []
    if not targets:
        for name in names:
            for v in exported(name) or [TORCH_VARIANT]:
                rows.append(base(name, v, None))
        mark_pareto(rows)
        return rows

    for target in targets:
        path = rd.latency_path(target)
        doc = results.load(path)
        doc_task = (doc.get("run") or {}).get("task")
        if doc_task and doc_task != task_name:
            raise RunDirError(f"{path} holds latency of a {doc_task} run but {rd.path} is a {task_name} run; "
                              f"re-run 'glp-bench latency --run {rd.path} --device {target}'")
        table, shape = _latency_rows(doc, threads, seq, rd.cfg.max_length, str(path))
        measured_variants = {v for _, v in table}
        keys: list[tuple[str, str]] = []
        for name in names:  # exported artifacts of the variants this target measures (all of them if none)
            variants = [v for v in exported(name) if not measured_variants or v in measured_variants]
            if (name, TORCH_VARIANT) in table or not variants:
                variants.insert(0, TORCH_VARIANT)
            keys += [(name, v) for v in variants]
        # measured, but the manifest no longer has the export as ok (re-exported since): still shown
        keys += [k for k in table if k not in keys and k[0] in finished]
        keys.sort(key=lambda k: (names.index(k[0]), variant_rank(k[1], torch_first=True)))
        for name, variant in keys:
            row = base(name, variant, target)
            small, big = table.get((name, variant), (None, None))
            if shape is not None:
                row.batch, row.seq, row.threads, row.throughput_batch = shape
            if small is not None:
                s = small["summary_s"]
                row.p50_s, row.p90_s, row.latency_s = s["p50"], s["p90"], s.get("balanced_median", s["p50"])
                row.cv, row.unstable = s.get("cv"), small.get("unstable")
                row.speedup = (small.get("speedup") or {}).get("vs_full_fp32")
                if row.size_bytes is None:
                    row.size_bytes = small.get("file_size")
                if small.get("sha256") and variant != TORCH_VARIANT:
                    now_sha = ((finished[name].get("onnx") or {}).get(variant) or {}).get("sha256")
                    if now_sha and now_sha != small["sha256"]:
                        row.notes.append(f"{row.label}: measured on an earlier export (sha256 differs); "
                                         f"re-run 'glp-bench latency --run {rd.path} --device {target}'")
            elif shape is not None:
                row.notes.append(f"{row.label}: not measured on {target}")
            if variant != TORCH_VARIANT and row.export_status != "ok":
                row.notes.append(f"{row.label}: its export is now {row.export_status or 'missing'} in the manifest; "
                                 f"not ranked (re-run 'glp-bench export --run {rd.path}')")
            if big is not None and big.get("throughput"):
                row.sequences_per_s = big["throughput"]["sequences_per_s"]
            rows.append(row)
    mark_pareto(rows)
    return rows


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
