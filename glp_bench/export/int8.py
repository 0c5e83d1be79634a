"""The int8 step of ``glp-bench export``: pick the candidate (``int8_select``), then keep the score
(``quant_exclude``). Returns the ``build`` record of the int8 variant.

Both choices are made without dev: the candidate by its speed, the fp32 nodes by the score on the 15% of the
train split that GLP's search held out (``glp_bench.data.loaders.search_split``, the run's seed). The record
names that split (``quant_exclusion.decided_on``); dev is scored afterwards, as the result.

The candidate is timed once per run, on the first model that needs an int8 build; the other models of the
run reuse the winner (which candidate is fastest depends on the CPU and the architecture, not on the depth).
The choice is handed to ``on_chosen`` the moment it is made (export records it in the manifest), so an
export killed after it and resumed reuses it instead of timing again and maybe picking another by noise.

The fp32 nodes that keep the score cost speed: where they slow the run's winner by more than the speed gap to
a slower candidate (``slower_but_maybe_faster``), that candidate is built as it is and, if it keeps the score
without them and times faster than the winner with them, ships instead (``try_unexcluded``; recorded in
``selection.switched``). On an AVX2-only CPU the per-channel u8s8 winner needed every node of depth 6 in fp32
(1.6x slower), where u8u8 weights do not saturate.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..bench.results import shape_words
from . import int8_select
from .graph import fused_ops
from .quant_exclude import drop_points, keep_score, met_only_as_fp32, smallest_int8_drop
from .variants import VARIANTS


def build_int8(fp32_path: Path, model_config, preset: str, *, choice: str, max_quant_drop: float, model: str,
               chosen: dict, calib: list | None, decide: Callable[[Path, str], float] | None,
               decided_on: dict | None = None, spec: int8_select.MeasureSpec | None = None,
               on_chosen: Callable[[dict], None] | None = None, timer=None) -> dict:
    """Build ``model.int8.onnx`` beside ``fp32_path``. ``chosen``: the run's shared ``{"winner", "on",
    "why", "preset", "selection"}`` (filled by the first model that measures, then ``on_chosen(chosen)``).
    ``decide(path, variant)``: the main metric through ORT on the split the choice is made on (the 15% of train
    GLP held out; never dev), described by ``decided_on``; None when there is none."""
    dst = fp32_path.parent / VARIANTS["int8"].filename
    # the prepared (pre-processed) sources, shared by the build and the exclusion search
    with tempfile.TemporaryDirectory(dir=fp32_path.parent, prefix=".int8-src-") as src:
        src = Path(src)
        if choice == int8_select.AUTO and chosen.get("winner"):
            record = int8_select.rebuild(chosen["winner"], fp32_path, dst, model_config, preset, chosen["on"],
                                         chosen["why"], workdir=src)
            if chosen.get("on") == model and chosen.get("selection"):  # resumed on the model that measured
                record["selection"] = chosen["selection"]
        else:
            record = int8_select.select(fp32_path, dst, model_config, preset, choice, calib=calib, spec=spec,
                                        timer=timer, workdir=src)
            if choice == int8_select.AUTO:
                chosen.update(winner=record["candidate"], on=model, why=record["selection"]["why"], preset=preset,
                              selection=record["selection"])
                if on_chosen is not None:
                    on_chosen(dict(chosen))
        record["quant_exclusion"] = check_score(record["candidate"], fp32_path, dst, model_config, preset, calib,
                                                max_quant_drop, decide, decided_on, spec, workdir=src, timer=timer)
        if choice == int8_select.AUTO and record["quant_exclusion"].get("excluded"):
            names = slower_but_maybe_faster(chosen.get("selection") or record["selection"], record["candidate"],
                                            record["quant_exclusion"])
            if names:
                switch = try_unexcluded(names, record["quant_exclusion"], fp32_path, dst, model_config, preset,
                                        decide, spec, timer, workdir=src)
                if switch.get("to"):
                    record = {**int8_select.candidate_record(switch["to"], preset), "selection": {
                        **record["selection"], "switched": switch}, "quant_exclusion": switch["check"]}
                else:
                    record["selection"] = {**record["selection"], "switched": switch}
    record["fused_ops"] = fused_ops(dst)
    return record


def slower_but_maybe_faster(selection: dict, winner: str, qe: dict, tie: float = int8_select.TIE) -> list[str]:
    """The candidates that may beat ``winner`` once its fp32 nodes slowed it (pure): those timed in
    ``selection`` whose latency relative to the winner's, widened by ``tie``, is below the exclusion's slowdown
    (``qe``'s after / before latency); fastest first. Empty when the exclusion cost nothing measurable. A
    per-tensor candidate whose per-channel twin (same graph and weight type, finer scales) is the winner or
    tried too is not tried: it cannot be expected to keep a score its twin loses."""
    before, after = (qe.get("before") or {}).get("latency_ms"), (qe.get("after") or {}).get("latency_ms")
    timed = {c["name"]: c["latency_ms"] for c in selection.get("candidates") or []
             if c.get("status") == "ok" and c.get("latency_ms")}
    if not before or not after or winner not in timed:
        return []
    slowdown = after / before
    close = [n for rel, n in sorted((ms / timed[winner], n) for n, ms in timed.items() if n != winner)
             if rel * (1 + tie) < slowdown]
    return [n for n in close if not any(_coarser(n, m) for m in [winner, *close])]


def _coarser(name: str, than: str) -> bool:
    a, b = int8_select.CANDIDATES.get(name), int8_select.CANDIDATES.get(than)
    return bool(a and b and a.graph == b.graph and a.weights == b.weights and b.per_channel and not a.per_channel)


def try_unexcluded(names: list[str], qe: dict, fp32_path: Path, dst: Path, model_config, preset: str,
                   decide: Callable[[Path, str], float], spec, timer, workdir: Path) -> dict:
    """Build each of ``names`` in turn, as it is (no fp32 nodes); the first whose score on the decision split is
    within ``qe``'s budget is timed against ``dst`` (the winner with its exclusions) in one harness run and
    replaces it when faster. Returns ``{"from", "to" (None: kept), "tried": [...], "check"}``."""
    spec = spec or int8_select.MeasureSpec()
    timer = timer or (lambda paths, s: int8_select.harness_latencies(paths, s, getattr(model_config, "vocab_size", None)))
    out = {"from": qe.get("candidate"), "to": None, "tried": [], "check": None}
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".int8-alt-") as tmp:
        for name in names:
            alt = Path(tmp) / f"{name}.onnx"
            int8_select.build(int8_select.CANDIDATES[name], fp32_path, alt, model_config, preset, workdir=workdir)
            score = float(decide(alt, "int8"))
            drop = drop_points(qe["fp32_score"], score)
            tried = {"name": name, "score": score, "drop_points": drop, "within_budget": drop <= qe["budget_points"]}
            out["tried"].append(tried)
            if not tried["within_budget"]:
                continue
            times = timer({"excluded": dst, name: alt}, spec)
            mine, theirs = (times.get(name) or {}).get("latency_ms"), (times.get("excluded") or {}).get("latency_ms")
            tried.update(latency_ms=mine, excluded_latency_ms=theirs)
            if mine and theirs and mine < theirs:
                os.replace(alt, dst)
                out["to"] = name
                out["check"] = {"status": "within budget", "budget_points": qe["budget_points"],
                                "decided_on": qe.get("decided_on"), "fp32_score": qe["fp32_score"], "int8_score": score,
                                "drop_points": drop, "excluded": [], "instead_of": {
                                    k: qe.get(k) for k in ("candidate", "status", "before", "after")} | {
                                    "excluded": len(qe.get("excluded") or [])}}
            break
    return out


def check_score(candidate: str, fp32_path: Path, dst: Path, model_config, preset: str, calib: list | None,
                budget: float, decide: Callable[[Path, str], float] | None, decided_on: dict | None,
                spec=None, workdir: Path | None = None, timer=None) -> dict:
    """Score the int8 file against fp32 on the decision split (``decide``); over budget, run
    ``quant_exclude.keep_score`` on the same split. Dev is not read here: it is scored afterwards, as the result."""
    if decide is None:
        return {"status": "skipped", "reason": "no held-out train examples to decide on", "excluded": []}
    where = dict(decided_on or {})
    fp32_score = float(decide(fp32_path, "fp32"))
    int8_score = float(decide(dst, "int8"))
    drop = drop_points(fp32_score, int8_score)
    base = {"budget_points": budget, "decided_on": where, "fp32_score": fp32_score, "int8_score": int8_score,
            "drop_points": drop, "excluded": []}
    if drop <= budget:
        return {"status": "within budget", **base}
    if not calib:
        return {"status": "over budget", "reason": "no calibration inputs (empty train split)", **base}
    out = keep_score(candidate, fp32_path, dst, model_config, preset, calib, fp32_score, int8_score, budget,
                     lambda p: decide(p, "int8"), spec=spec, timer=timer, workdir=workdir)
    out["decided_on"] = where
    out["status"] = ("over budget after excluding every node" if not out["within_budget"] else
                     "within budget only as fp32 (every node excluded)" if met_only_as_fp32(out) else
                     "within budget after exclusion")
    return out


def int8_notes(models: dict, names) -> list[str]:
    """Report notes on the int8 models ``names`` of a run's manifest ``models``: which candidate was shipped
    and why, and what ``--max-quant-drop`` kept in fp32 (score and latency before and after)."""
    notes = []
    for name in sorted(names, key=lambda n: -(models.get(n, {}).get("depth") or 0)):
        build = (((models.get(name) or {}).get("onnx") or {}).get("int8") or {}).get("build") or {}
        sel = build.get("selection") or {}
        if sel.get("mode") == "measured":
            tried = ", ".join(f"{c['name']} {c['latency_ms']:.3g} ms" if c.get("latency_ms") is not None
                              else f"{c['name']} failed" for c in sel.get("candidates", []))
            spec = sel.get("measured_with") or {}
            timed = (f" (timed at {shape_words(spec)}, like this model's other int8 notes)"
                     if {"batch", "seq", "threads"} <= set(spec) else "")
            notes.append(f"int8 ({name}): {build['candidate']} shipped, {sel['why']}; tried {tried}{timed}")
        elif sel.get("mode") == "forced":
            notes.append(f"int8 ({name}): {build['candidate']} (chosen with --int8-candidate)")
        notes += _switch_notes(name, sel.get("switched"), build.get("quant_exclusion") or {})
        qe = build.get("quant_exclusion") or {}
        if qe.get("excluded") and met_only_as_fp32(qe):
            notes.append(_all_fp32_note(name, qe, (sel.get("switched") or {}).get("tried") or []))
        elif qe.get("excluded"):
            b, a = qe["before"], qe["after"]
            nodes = [e["node"] for e in qe["excluded"]]
            shown = ", ".join(nodes[:4]) + (f" and {len(nodes) - 4} more" if len(nodes) > 4 else "")
            lat = (f"; latency {b['latency_ms']:.3g} -> {a['latency_ms']:.3g} ms"
                   if b.get("latency_ms") and a.get("latency_ms") else "")
            on = _split_words(qe.get("decided_on"))
            notes.append(f"int8 ({name}): {len(nodes)} node(s) kept in fp32 for --max-quant-drop "
                         f"{qe['budget_points']:g} ({shown}): {on} score {b['score']:.4f} -> {a['score']:.4f} "
                         f"(fp32 {qe['fp32_score']:.4f}){lat}"
                         + ("" if qe.get("within_budget") else "; still over budget with every node excluded"))
        elif qe.get("status", "").startswith("over budget"):
            notes.append(f"int8 ({name}): {qe['drop_points']:.2f} points below fp32 on "
                         f"{_split_words(qe.get('decided_on'))}, over the "
                         f"--max-quant-drop budget {qe['budget_points']:g} ({qe.get('reason', qe['status'])})")
    return notes


def _all_fp32_note(name: str, qe: dict, tried: list[dict]) -> str:
    """An int8 file that met ``--max-quant-drop`` only with every node in fp32 is the fp32 graph: say so, and what
    the smallest budget with int8 left would be."""
    a = qe.get("after") or {}
    b = qe.get("before") or {}
    lat = (f" ({b['latency_ms']:.3g} ms before, {a['latency_ms']:.3g} ms after)"
           if b.get("latency_ms") and a.get("latency_ms") else "")
    best = smallest_int8_drop(qe, tried)
    hint = (f"; the smallest drop with int8 nodes was {best:.2f} points: deploy fp32 at this depth, or allow "
            f"--max-quant-drop {math.ceil(best * 100) / 100:g}" if best is not None else "; deploy fp32 at this depth")
    return (f"int8 ({name}): no int8 model within --max-quant-drop {qe['budget_points']:g} on "
            f"{_split_words(qe.get('decided_on'))}: only keeping all {len(qe['excluded'])} quantizable node(s) in "
            f"fp32 kept the score, so this int8 file is the fp32 graph{lat}{hint}")


def _switch_notes(name: str, switch: dict | None, qe: dict) -> list[str]:
    """What the search for a candidate that keeps its score without fp32 nodes found (``try_unexcluded``)."""
    if not switch:
        return []
    tried = "; ".join(f"{t['name']} {t['drop_points']:.2f} points below fp32"
                      + (f", {t['latency_ms']:.3g} vs {t['excluded_latency_ms']:.3g} ms"
                         if t.get("latency_ms") and t.get("excluded_latency_ms") else "") for t in switch["tried"])
    if not switch.get("to"):
        return [f"int8 ({name}): no candidate kept the score without fp32 nodes faster than {switch['from']} with "
                f"them (tried {tried})"]
    was = qe.get("instead_of") or {}
    return [f"int8 ({name}): {switch['to']} shipped instead of {switch['from']}, which needed {was.get('excluded', '?')} "
            f"fp32 node(s) for --max-quant-drop {qe.get('budget_points', 0):g} (tried {tried})"]


def _split_words(decided_on: dict | None) -> str:
    """How a report names the split an int8 choice was made on (records before v0.2 decided on dev)."""
    if not decided_on:
        return "dev"
    return f"held-out train ({decided_on.get('examples', '?')} examples)"
