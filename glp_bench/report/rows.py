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

This module (rows, the frontier, the recommendation) is pure logic over the run directory's files (reads only); rendering lives in
``glp_bench.report.render``, the plot in ``glp_bench.report.plot``, the CLI in ``glp_bench.commands.report``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..core.errors import RunDirError
from ..core.rundir import RunDir
from ..core.vocab import TORCH_VARIANT, variant_rank
from ..export.quant_exclude import is_fp32_graph

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
    fp32_graph: bool = False  # an int8 that met --max-quant-drop only with every node in fp32 (quant_exclude)
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
    change; an int8 that is the fp32 graph (``Row.fp32_graph``) only when its model has no other such row
    (it would win only by timing noise). Fastest = lowest balanced-median latency (``Row.latency_s``, the
    quantity speedups are ratios of); ties go to the higher score, then the smaller file, then the name.
    """
    if max_drop < 0:
        raise ValueError(f"max_drop must be >= 0 (GLUE points), got {max_drop}")
    ok = []
    for r in rows:
        d = r.delta(main_key)
        if r.deployable and r.latency_s is not None and d is not None and d >= -max_drop - _EPS:
            ok.append(r)
    real = {r.name for r in ok if not r.fp32_graph}
    ok = [r for r in ok if not (r.fp32_graph and r.name in real)]
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
            fp32_graph=variant == "int8" and is_fp32_graph(onnx),
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
