"""The int8 step of ``glp-bench export``: pick the candidate (``int8_select``), then keep the score
(``quant_exclude``). Returns the ``build`` record of the int8 variant.

The candidate is timed once per run, on the first model that needs an int8 build; the other models of the
run reuse the winner (which candidate is fastest depends on the CPU and the architecture, not on the depth).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import int8_select
from .quant_exclude import drop_points, keep_score
from .variants import VARIANTS, _fused


def build_int8(fp32_path: Path, model_config, preset: str, *, choice: str, max_quant_drop: float, model: str,
               chosen: dict, calib: list | None, fp32_record: dict | None, score: Callable[[Path], float],
               main_key: str, spec: int8_select.MeasureSpec | None = None) -> dict:
    """Build ``model.int8.onnx`` beside ``fp32_path``. ``chosen``: the run's shared ``{"winner", "on",
    "why"}`` (filled by the first model that measures). ``score(path)``: the dev ``main_key`` score through ORT."""
    dst = fp32_path.parent / VARIANTS["int8"].filename
    if choice == int8_select.AUTO and chosen.get("winner"):
        record = int8_select.rebuild(chosen["winner"], fp32_path, dst, model_config, preset, chosen["on"], chosen["why"])
    else:
        record = int8_select.select(fp32_path, dst, model_config, preset, choice, calib=calib, spec=spec)
        if choice == int8_select.AUTO:
            chosen.update(winner=record["candidate"], on=model, why=record["selection"]["why"])
    record["quant_exclusion"] = check_score(record["candidate"], fp32_path, dst, model_config, preset, calib,
                                            fp32_record, max_quant_drop, score, main_key, spec)
    record["fused_ops"] = _fused(dst)
    return record


def check_score(candidate: str, fp32_path: Path, dst: Path, model_config, preset: str, calib: list | None,
                fp32_record: dict | None, budget: float, score: Callable[[Path], float], main_key: str,
                spec=None) -> dict:
    """Score the int8 file against fp32's ORT dev score; over budget, run ``quant_exclude.keep_score``."""
    fp32_scores = (fp32_record or {}).get("dev_scores") or {}
    if (fp32_record or {}).get("status") != "ok" or not fp32_scores:
        return {"status": "skipped", "reason": "no fp32 ONNX dev score to compare with"}
    if main_key not in fp32_scores:
        return {"status": "skipped", "reason": f"the fp32 ONNX record has no {main_key} score"}
    fp32_score = float(fp32_scores[main_key])
    int8_score = float(score(dst))
    drop = drop_points(fp32_score, int8_score)
    if drop <= budget:
        return {"status": "within budget", "budget_points": budget, "fp32_score": fp32_score,
                "int8_score": int8_score, "drop_points": drop, "excluded": []}
    if not calib:
        return {"status": "over budget", "reason": "no calibration inputs (empty train split)", "budget_points": budget,
                "fp32_score": fp32_score, "int8_score": int8_score, "drop_points": drop, "excluded": []}
    out = keep_score(candidate, fp32_path, dst, model_config, preset, calib, fp32_score, int8_score, budget, score,
                     spec=spec)
    out["status"] = "within budget after exclusion" if out["within_budget"] else "over budget after excluding every node"
    return out
