"""The int8 variant: build the candidates that matter for the target CPU, time them, keep the fastest.

Candidates (:func:`candidates`; names are what ``--int8-candidate`` accepts):

* ``fused``: ONNX Runtime's transformer fusions (optimum O2), then optimum's dynamic preset for the CPU
  (``QAttention`` for attention), weights per channel: what glp-bench shipped before.
* ``fused-tensor``: the same with weights per tensor.
* ``unfused-s8``: the plain ``model.onnx`` through ``onnxruntime.quantization.quantize_dynamic``, int8
  weights per tensor: the by-hand recipe ORT's docs give.
* ``unfused-s8-channel``: the same with weights per channel.
* ``unfused-u8``: uint8 weights (u8u8); only for the ``avx2`` and ``avx512`` presets.

Dynamic quantization always quantizes activations to uint8 (``DynamicQuantizeLinear``), so what the
instruction set decides is the weights' type: u8s8 (int8 weights) is right with VNNI and on ARM; without
VNNI, x86's ``VPMADDUBSW`` can saturate u8s8 products (ONNX Runtime's quantization docs), so on ``avx2``
and ``avx512`` the u8u8 candidate is built too (the fused one follows the preset: u8u8 on ``avx2``) and
the dev score (``--max-quant-drop``) judges the accuracy of whichever wins.

Selection (:func:`choose`): every candidate that builds is timed with the latency harness's pieces
(:func:`harness_latencies`: the harness's sessions in fresh worker processes, the candidates alternating
inference by inference as in the CI gate, CPU time on one thread) at batch 1, sequence 128, one thread
unless told otherwise; the fastest by balanced median wins, except that among the candidates within
``TIE`` (3%) of it the one with the smallest logit error against fp32 on calibration inputs (train split)
wins. The band widens to a pair's sample spread (the larger coefficient of variation of the two) when their
timing was noisier than that: all-MiniLM-L6-v2's unfused-s8 and unfused-s8-channel were 0.9-3.4% apart in five
runs on one machine, and the 3.4% run had a CV of 9%. A candidate that fails to build or to run is recorded as failed with its reason; the others are kept.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..bench.settings import INT8_CANDIDATES
from ..core.errors import ExportError

TIE = 0.03  # candidates within 3% of the fastest count as equally fast; the more accurate wins
AUTO = "auto"


@dataclass(frozen=True)
class Candidate:
    name: str
    graph: str  # "fused" (O2 fusions first) or "unfused" (model.onnx as exported)
    weights: str  # "s8" or "u8"
    per_channel: bool
    help: str


ALL_CANDIDATES = (
    Candidate("fused", "fused", "preset", True, "O2 fusions + optimum preset (QAttention), weights per channel"),
    Candidate("fused-tensor", "fused", "preset", False, "O2 fusions + optimum preset, weights per tensor"),
    Candidate("unfused-s8", "unfused", "s8", False, "model.onnx + quantize_dynamic, int8 weights per tensor"),
    Candidate("unfused-s8-channel", "unfused", "s8", True, "model.onnx + quantize_dynamic, int8 weights per channel"),
    Candidate("unfused-u8", "unfused", "u8", False, "model.onnx + quantize_dynamic, uint8 weights (u8u8)"),
)
CANDIDATES = {c.name: c for c in ALL_CANDIDATES}
U8_PRESETS = ("avx2", "avx512")  # no VNNI: u8s8 can saturate, so u8u8 is worth a try


def candidates(preset: str) -> list[Candidate]:
    """The candidates worth building for ``preset`` (see the module docstring)."""
    return [c for c in ALL_CANDIDATES if c.weights != "u8" or preset in U8_PRESETS]


def resolve_candidate(name: str | None) -> str:
    if name in (None, "", AUTO):
        return AUTO
    if name not in CANDIDATES:
        raise ExportError(f"unknown int8 candidate {name!r}; choose {AUTO} or one of {', '.join(CANDIDATES)}")
    return name


def weight_type(cand: Candidate, preset: str) -> str:
    """``u8s8`` or ``u8u8``: activations are always uint8 in dynamic quantization."""
    if cand.weights == "preset":
        return "u8u8" if preset == "avx2" else "u8s8"
    return "u8s8" if cand.weights == "s8" else "u8u8"


# --- building ---------------------------------------------------------------------------------------------


def prepare_source(cand: Candidate, fp32_path: Path, workdir: Path, model_config) -> Path:
    """The graph the candidate quantizes, pre-processed as ORT's quantization docs ask (``quant_pre_process``:
    shape inference, which types the fused graph's contrib ops, see ``variants``): the unfused
    ``fp32_path`` with ORT's basic graph optimizations, or its O2-fused copy as it is. Cached in ``workdir``."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .graph import optimize_graph

    typed = workdir / f"{cand.graph}_typed.onnx"
    if typed.is_file():
        return typed
    if cand.graph == "unfused":
        quant_pre_process(str(fp32_path), str(typed), auto_merge=True)
        return typed
    fused = workdir / "fused.onnx"
    optimize_graph(Path(fp32_path), fused, model_config)
    # auto_merge: the export's symbolic dims meet dims computed by Shape/Slice ops
    quant_pre_process(str(fused), str(typed), skip_optimization=True, auto_merge=True)
    fused.unlink()
    return typed


def quantize(cand: Candidate, source: Path, dst: Path, model_config, preset: str, exclude: Sequence[str] = (),
             cache=None) -> None:
    """Quantize ``source`` (from :func:`prepare_source`) into ``dst``, leaving ``exclude`` nodes in fp32.
    ``cache``: a ``quant_cache.WeightCache`` of ``source`` for repeated quantizations (the unfused candidates;
    the same bytes, faster)."""
    dst = Path(dst)
    cached = cache is not None and cand.graph == "unfused"
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".q-") as tmp:
        out = Path(tmp) / "model.onnx"
        if cand.graph == "fused":
            from optimum.onnxruntime import ORTQuantizer

            from .graph import quantization_config

            config = quantization_config(preset, cand.per_channel, nodes_to_exclude=list(exclude))
            ORTQuantizer(source, config=model_config).quantize(config, save_dir=Path(tmp) / "out", file_suffix="")
            out = next((Path(tmp) / "out").glob("*.onnx"))
        else:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # ORT rewrites a Gemm as "<name>_MatMul" + Add before it applies nodes_to_exclude
            names = [*exclude, *(f"{n}_MatMul" for n in exclude)]
            wtype = QuantType.QInt8 if cand.weights == "s8" else QuantType.QUInt8
            if cached:  # drops value_info in memory
                from .quant_cache import quantize_dynamic_cached

                quantize_dynamic_cached(source, out, cache, per_channel=cand.per_channel, weight_type=wtype,
                                        nodes_to_exclude=names)
            else:
                quantize_dynamic(str(source), str(out), per_channel=cand.per_channel, weight_type=wtype,
                                 nodes_to_exclude=names or None)
        if not cached:
            _drop_value_info(out)
        os.replace(out, dst)


def _drop_value_info(path: Path) -> None:
    """Remove the intermediate ``value_info`` that pre-processing's shape inference left in the quantized graph
    (optional in ONNX; ONNX Runtime infers shapes itself). With it, ORT 1.32 ran the unfused int8 MiniLM in 9.6 ms
    instead of 6.8 ms (CPU time, 1 thread, batch 1, seq 128); the fused graph ran the same either way."""
    import onnx

    model = onnx.load(str(path))
    if model.graph.value_info:
        del model.graph.value_info[:]
        onnx.save(model, str(path))


def build(cand: Candidate, fp32_path: Path, dst: Path, model_config, preset: str, exclude: Sequence[str] = (),
          workdir: Path | None = None) -> None:
    """Quantize ``fp32_path`` as ``cand`` into ``dst``; the prepared source is kept in ``workdir`` when given
    (shared by the candidates of one graph kind, and by the fp32-node exclusion after)."""
    keep = contextlib.nullcontext(workdir) if workdir is not None else \
        tempfile.TemporaryDirectory(dir=Path(dst).parent, prefix=".src-")
    with keep as folder:
        quantize(cand, prepare_source(cand, fp32_path, Path(folder), model_config), dst, model_config, preset, exclude)


# --- measuring and choosing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeasureSpec:
    """The short measurement that picks the winner: ``rounds`` worker processes, each timing every candidate
    ``min_runs`` times (and ``min_time`` seconds) in turn."""

    batch: int = 1
    seq: int = 128
    threads: int = 1
    rounds: int = INT8_CANDIDATES.rounds
    min_runs: int = INT8_CANDIDATES.min_runs
    min_time: float = INT8_CANDIDATES.min_time


def harness_latencies(paths: dict[str, Path], spec: MeasureSpec, vocab_size: int | None = None) -> dict[str, dict]:
    """``{name: {"latency_ms", "wall_p50_ms", "clock", "cv"}}`` or ``{name: {"error"}}``.

    The latency harness's pieces, as the CI gate uses them: in each of ``spec.rounds`` fresh worker
    processes (``glp_bench.bench.runner.spawn``, scenario ``candidates`` of ``glp_bench.bench.worker``) every
    candidate gets a session from the harness's own session code (``glp_bench.bench.backend.ort_runner``, the
    settings of ``glp-bench latency``), and the gate's timer (``glp_bench.bench.alternating.time_alternating``)
    runs them one inference each in turn, in a rotated order per round
    (``glp_bench.bench.stats.interleaved_order``). So the candidates are compared a few milliseconds apart, and on
    one CPU thread in CPU time (``glp_bench.bench.alternating.choose_clock``), which other processes on a busy
    machine do not
    inflate. ``latency_ms`` is ``stats.balanced_median`` over the rounds."""
    from ..bench import stats
    from ..bench.alternating import choose_clock
    from ..bench.runner import BenchConfig, spawn

    names = list(paths)
    configs = [BenchConfig(model=str(paths[n]), batch=spec.batch, seq=spec.seq, threads=spec.threads,
                           vocab_size=vocab_size, label=n) for n in names]
    clock = choose_clock("auto", configs[0])
    rounds: dict[str, list[list[float]]] = {n: [] for n in names}
    walls: dict[str, list[float]] = {n: [] for n in names}
    errors: dict[str, str] = {}
    for order in stats.interleaved_order(len(names), spec.rounds):
        live = [i for i in order if names[i] not in errors]
        if not live:
            break
        job = {"scenario": "candidates", "configs": [configs[i].to_dict() for i in live], "warmup": 2,
               "min_runs": spec.min_runs, "min_time": spec.min_time, "max_time": 30.0}
        res = spawn([sys.executable, "-m", "glp_bench.bench.worker"], job, spec.threads, timeout=300)
        if res.get("error"):
            for i in live:
                errors.setdefault(names[i], res["error"])
            continue
        for j, i in enumerate(live):
            if res["failed"][j]:
                errors[names[i]] = res["failed"][j]
            else:
                rounds[names[i]].append(res[clock][j])
                walls[names[i]].extend(res["wall"][j])
    out = {}
    for n in names:
        if n in errors or not rounds[n]:
            out[n] = {"error": errors.get(n, "no samples")}
        else:
            summary = stats.summarize(stats.flatten(rounds[n]))
            out[n] = {"latency_ms": stats.balanced_median(rounds[n]) * 1e3, "clock": clock, "cv": summary["cv"],
                      "wall_p50_ms": stats.percentile(walls[n], 50) * 1e3, "samples": summary["n"]}
    return out


def choose(results: Sequence[dict], tie: float = TIE) -> tuple[str, str]:
    """(winner, why) from ``[{"name", "status", "latency_ms", "logit_error"?}, ...]`` in preference order.

    The fastest ``ok`` candidate wins; among those within ``tie`` of it (or within the larger ``cv`` of the
    pair, when given and larger), the smallest ``logit_error`` (missing counts as unknown: worse than any
    number), then the earlier in the list."""
    ok = [r for r in results if r.get("status") == "ok" and r.get("latency_ms") is not None]
    if not ok:
        raise ExportError("no int8 candidate could be built and timed: "
                          + "; ".join(f"{r['name']}: {r.get('error', 'failed')}" for r in results))
    fastest = min(ok, key=lambda r: r["latency_ms"])

    def band(r) -> float:  # the tie, or the pair's spread when the timing was noisier
        return max([tie] + [float(x["cv"]) for x in (r, fastest) if x.get("cv") is not None])

    close = [r for r in ok if r["latency_ms"] <= fastest["latency_ms"] * (1 + band(r))]

    def err(r):
        e = r.get("logit_error")
        return float("inf") if e is None else e

    winner = min(close, key=lambda r: (err(r), ok.index(r)))
    others = sorted((r for r in ok if r is not winner), key=lambda r: r["latency_ms"])
    if len(close) == 1:
        why = f"fastest ({winner['latency_ms']:.3g} ms"
        why += f"; next {others[0]['name']} {others[0]['latency_ms']:.3g} ms)" if others else ")"
    else:
        speed = ("the fastest" if winner is fastest else
                 f"{winner['latency_ms'] / fastest['latency_ms'] - 1:.1%} slower than {fastest['name']}")
        within = max(band(r) for r in close)
        noise = " (the timing's spread)" if within > tie else ""
        why = (f"{len(close)} candidates within {within:.0%}{noise} of the fastest ({fastest['latency_ms']:.3g} ms); "
               f"this one is {speed} at {winner['latency_ms']:.3g} ms")
        if winner.get("logit_error") is not None:
            why += f", with the smallest logit error vs fp32 ({winner['logit_error']:.3g})"
        else:
            why += ", first in preference order (no logit errors measured)"
    return winner["name"], why


def mean_abs_error(path: Path, batches: Sequence[dict], reference: Sequence[np.ndarray]) -> float:
    """Mean |logit - fp32 logit| of the ONNX file at ``path`` over ``batches``."""
    from .validate import make_session, run_logits

    sess = make_session(path)
    diffs = [np.abs(run_logits(sess, b).astype(np.float64) - ref).ravel() for b, ref in zip(batches, reference, strict=True)]
    return float(np.concatenate(diffs).mean())


def fp32_reference(fp32_path: Path, batches: Sequence[dict]) -> list[np.ndarray]:
    from .validate import make_session, run_logits

    sess = make_session(fp32_path)
    return [run_logits(sess, b).astype(np.float64) for b in batches]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def select(fp32_path: Path, dst: Path, model_config, preset: str, choice: str = AUTO,
           calib: Sequence[dict] | None = None, spec: MeasureSpec | None = None,
           timer: Callable[[dict[str, Path], MeasureSpec], dict[str, dict]] | None = None,
           workdir: Path | None = None) -> dict:
    """Build the int8 file ``dst`` from ``fp32_path``: the forced ``choice``, or with ``auto`` every candidate
    for ``preset``, timed (``timer``, default the latency harness) and chosen by :func:`choose`.
    ``calib``: padded calibration batches (train split) for the logit errors; ``workdir``: where the prepared
    sources are kept (as :func:`build`). Returns the build record."""
    spec = spec or MeasureSpec()
    dst = Path(dst)
    names = [c.name for c in candidates(preset)] if choice == AUTO else [choice]
    vocab = getattr(model_config, "vocab_size", None)
    timer = timer or (lambda paths, s: harness_latencies(paths, s, vocab))
    reference = fp32_reference(fp32_path, calib) if calib else None
    results: list[dict] = []
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".int8-cands-") as tmp:
        built: dict[str, Path] = {}
        if workdir is None:
            workdir = Path(tmp) / "sources"
            workdir.mkdir()
        for name in names:
            cand = CANDIDATES[name]
            r = {"name": name, "graph": cand.graph, "weights": weight_type(cand, preset), "per_channel": cand.per_channel}
            path = Path(tmp) / f"{name}.onnx"
            try:
                build(cand, fp32_path, path, model_config, preset, workdir=workdir)
                r.update(status="ok", size=path.stat().st_size)
                if reference is not None:
                    r["logit_error"] = mean_abs_error(path, calib, reference)
                built[name] = path
            except Exception as e:  # noqa: BLE001 - one candidate failing must not lose the others
                r.update(status="failed", error=_first_line(e))
            results.append(r)
        if choice == AUTO and len(built) > 1:
            timings = timer(built, spec)
            for r in results:
                t = timings.get(r["name"])
                if r["status"] == "ok" and t:
                    if t.get("error"):
                        r.update(status="failed", error=f"timing failed: {t['error']}")
                    else:
                        r.update({k: t[k] for k in ("latency_ms", "clock", "wall_p50_ms", "cv") if k in t})
            winner, why = choose(results)
            mode = "measured"
        else:
            ok = [r for r in results if r["status"] == "ok"]
            if not ok:
                raise ExportError(f"int8 candidate {names[0]} failed to build: {results[0].get('error')}")
            winner, mode = ok[0]["name"], "forced" if choice != AUTO else "only one built"
            why = "chosen with --int8-candidate" if choice != AUTO else "the only candidate that built"
        shutil.move(str(built[winner]), dst)
    return {
        **candidate_record(winner, preset),
        "selection": {"mode": mode, "winner": winner, "why": why, "tie": TIE,
                      "measured_with": asdict(spec) if mode == "measured" else None,
                      "calibration_batches": len(calib) if calib else 0, "candidates": results},
    }


def candidate_record(name: str, preset: str) -> dict:
    """What a build record says of the candidate it shipped."""
    cand = CANDIDATES[name]
    return {"source": "fp32-opt" if cand.graph == "fused" else "fp32", "candidate": name, "preset": preset,
            "per_channel": cand.per_channel, "weights": weight_type(cand, preset)}


def rebuild(winner: str, fp32_path: Path, dst: Path, model_config, preset: str, selected_on: str, why: str,
            workdir: Path | None = None) -> dict:
    """Build the candidate already chosen on another model of the run (the choice depends on the CPU and the
    architecture, not on the depth), without timing it again."""
    build(CANDIDATES[winner], fp32_path, dst, model_config, preset, workdir=workdir)
    return {**candidate_record(winner, preset),
            "selection": {"mode": f"reused from {selected_on}", "winner": winner, "why": why, "candidates": []}}


