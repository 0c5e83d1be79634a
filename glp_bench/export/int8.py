"""The int8 step of ``glp-bench export``: pick the candidate (``int8_select``), then keep the score
(``quant_exclude``). Returns the ``build`` record of the int8 variant.

Both choices are made without dev: the candidate by its speed, the fp32 nodes by the score on the 15% of the
train split that GLP's search held out (``glp_bench.data.loaders.search_split``, the run's seed). The record
names that split (``quant_exclusion.decided_on``); dev is scored afterwards, as the result.

The candidate is timed once per run, on the first model that needs an int8 build; the other models of the
run reuse the winner (which candidate is fastest depends on the CPU and the architecture, not on the depth).
The choice is handed to ``on_chosen`` the moment it is made (export records it in the manifest), so an
export killed after it and resumed reuses it instead of timing again and maybe picking another by noise.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from . import int8_select
from .graph import fused_ops
from .quant_exclude import drop_points, keep_score
from .variants import VARIANTS


def build_int8(fp32_path: Path, model_config, preset: str, *, choice: str, max_quant_drop: float, model: str,
               chosen: dict, calib: list | None, decide: Callable[[Path, str], float] | None,
               decided_on: dict | None = None, spec: int8_select.MeasureSpec | None = None,
               on_chosen: Callable[[dict], None] | None = None) -> dict:
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
                                        workdir=src)
            if choice == int8_select.AUTO:
                chosen.update(winner=record["candidate"], on=model, why=record["selection"]["why"], preset=preset,
                              selection=record["selection"])
                if on_chosen is not None:
                    on_chosen(dict(chosen))
        record["quant_exclusion"] = check_score(record["candidate"], fp32_path, dst, model_config, preset, calib,
                                                max_quant_drop, decide, decided_on, spec, workdir=src)
    record["fused_ops"] = fused_ops(dst)
    return record


def check_score(candidate: str, fp32_path: Path, dst: Path, model_config, preset: str, calib: list | None,
                budget: float, decide: Callable[[Path, str], float] | None, decided_on: dict | None,
                spec=None, workdir: Path | None = None) -> dict:
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
                     lambda p: decide(p, "int8"), spec=spec, workdir=workdir)
    out["decided_on"] = where
    out["status"] = "within budget after exclusion" if out["within_budget"] else "over budget after excluding every node"
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
            notes.append(f"int8 ({name}): {build['candidate']} shipped, {sel['why']}; tried {tried}")
        elif sel.get("mode") == "forced":
            notes.append(f"int8 ({name}): {build['candidate']} (chosen with --int8-candidate)")
        qe = build.get("quant_exclusion") or {}
        if qe.get("excluded"):
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


def _split_words(decided_on: dict | None) -> str:
    """How a report names the split an int8 choice was made on (records before v0.2 decided on dev)."""
    if not decided_on:
        return "dev"
    return f"held-out train ({decided_on.get('examples', '?')} examples)"
