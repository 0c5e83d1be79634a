"""int8 that keeps its score: leave the most sensitive nodes in fp32 until the score is within budget.

When the int8 model's score through ONNX Runtime on the decision split (the 15% of *train* GLP held out;
never dev, which is only scored afterwards) is more than ``--max-quant-drop`` points (score x 100) below its
fp32 model's, :func:`keep_score`:

1. ranks the quantizable nodes (``MatMul``, ``Gemm``, ``Attention``, ``Gather``, ``EmbedLayerNormalization`` of the
   graph the int8 candidate quantizes) by *sensitivity*, measured on calibration inputs from the **train**
   split, never dev: for each node, how much the mean |logit error| vs fp32 shrinks when everything but
   that node is quantized (nodes the quantizer leaves in fp32 anyway score 0 without a trial; the unfused
   candidates re-quantize through ``quant_cache``, which keeps every weight's quantization between trials);
2. keeps the top 1, 2, 4, 8, ... of them in fp32 (ORT's ``nodes_to_exclude``), re-quantizing and
   re-scoring on the decision split after each step, until the drop is within budget or every node is excluded;
3. returns what it did: the excluded nodes, every step's score, and score and latency (the latency
   harness, same short measurement as the candidate selection) before and after, and how many nodes are still
   int8 (``int8_nodes_left``, also per step; 0: only the fp32 graph met the budget, and the report says so with
   :func:`smallest_int8_drop`).

The search itself (:func:`rank_by_sensitivity`, :func:`exclude_until_within`) is pure over callables.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

DEFAULT_MAX_QUANT_DROP = 1.0  # GLUE points
QUANTIZABLE = ("MatMul", "Gemm", "Attention", "Gather", "EmbedLayerNormalization")


def check_max_quant_drop(value: float) -> float:
    """The ``--max-quant-drop`` budget in GLUE points: a finite number >= 0."""
    from ..core.errors import ExportError

    if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise ExportError(f"--max-quant-drop must be a number of GLUE points >= 0 (default "
                          f"{DEFAULT_MAX_QUANT_DROP:g}), got {value!r}")
    return float(value)


def drop_points(fp32_score: float, int8_score: float) -> float:
    """How many GLUE points (scores x 100) int8 is below fp32 (negative: above)."""
    return (fp32_score - int8_score) * 100.0


def quantizable_nodes(source: Path) -> list[str]:
    """Names of the nodes dynamic quantization may turn into int8 ops (Gather only over a float table)."""
    import onnx

    model = onnx.load(str(source), load_external_data=False)
    floats = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    out = []
    for n in model.graph.node:
        if n.op_type not in QUANTIZABLE or not n.name:
            continue
        if n.op_type == "Gather" and (not n.input or n.input[0] not in floats):
            continue
        out.append(n.name)
    return out


def rank_by_sensitivity(nodes: Sequence[str], error_with: Callable[[list[str]], float],
                        as_is: Sequence[str] = ()) -> list[tuple[str, float]]:
    """``[(node, sensitivity), ...]``, most sensitive first; sensitivity = error with every node quantized
    minus error with that node left in fp32 (``error_with(excluded)``). Ties keep graph order. Nodes in ``as_is``
    (the quantizer left them in fp32 anyway: excluding them changes nothing) get 0.0 without a trial."""
    base = error_with([])
    skip = set(as_is)
    scored = [(n, 0.0 if n in skip else base - error_with([n])) for n in nodes]
    return sorted(scored, key=lambda t: -t[1])


def steps(n: int) -> list[int]:
    """How many of the ranked nodes to exclude at each step: 1, 2, 4, ... and finally all ``n``."""
    out, k = [], 1
    while k < n:
        out.append(k)
        k *= 2
    return out + [n] if n else []


def exclude_until_within(ranked: Sequence[str], score_with: Callable[[list[str]], float], fp32_score: float,
                         budget: float, start_score: float) -> dict:
    """Exclude the first 1, 2, 4, ... of ``ranked`` (``score_with(excluded)`` -> score on the decision split) until
    ``drop_points(fp32_score, score) <= budget`` or nothing is left. Returns
    ``{"excluded", "score", "within_budget", "steps": [{"excluded": k, "score", "drop_points"}]}``."""
    score, excluded, history = start_score, [], []
    within = drop_points(fp32_score, score) <= budget
    for k in ([] if within else steps(len(ranked))):
        excluded = list(ranked[:k])
        score = score_with(excluded)
        history.append({"excluded": k, "score": score, "drop_points": drop_points(fp32_score, score)})
        if drop_points(fp32_score, score) <= budget:
            within = True
            break
    return {"excluded": excluded, "score": score, "within_budget": within, "steps": history}


def keep_score(candidate: str, fp32_path: Path, dst: Path, model_config, preset: str, calib: Sequence[dict],
               fp32_score: float, int8_score: float, budget: float, score_fn: Callable[[Path], float],
               spec=None, timer=None, workdir: Path | None = None) -> dict:
    """Run the search for the int8 file ``dst`` (built as ``candidate`` from ``fp32_path``); replaces
    ``dst`` with the final model and returns the record for the manifest (``quant_exclusion``). ``workdir``: where
    ``dst``'s prepared source already is (``int8_select.build``), else it is prepared again. The unfused
    candidates re-quantize through ``quant_cache`` (the same files, without re-quantizing unchanged weights)."""
    from . import int8_select as sel
    from .quant_cache import WeightCache, unquantized_nodes

    cand = sel.CANDIDATES[candidate]
    spec = spec or sel.MeasureSpec()
    vocab = getattr(model_config, "vocab_size", None)
    timer = timer or (lambda paths, s: sel.harness_latencies(paths, s, vocab))
    dst = Path(dst)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".exclude-") as tmp:
        tmp = Path(tmp)
        source = sel.prepare_source(cand, fp32_path, Path(workdir) if workdir else tmp, model_config)
        reference = sel.fp32_reference(fp32_path, calib)
        trial = tmp / "trial.onnx"
        cache = WeightCache() if cand.graph == "unfused" else None

        def error_with(excluded: list[str]) -> float:
            sel.quantize(cand, source, trial, model_config, preset, excluded, cache=cache)
            return sel.mean_abs_error(trial, calib, reference)

        def score_with(excluded: list[str]) -> float:
            sel.quantize(cand, source, trial, model_config, preset, excluded, cache=cache)
            return float(score_fn(trial))

        nodes = quantizable_nodes(source)
        as_is = sorted(unquantized_nodes(source, dst) & set(nodes))
        ranked = rank_by_sensitivity(nodes, error_with, as_is)
        before = tmp / "before.onnx"
        shutil.copy2(dst, before)
        order = [n for n, _ in ranked]
        result = exclude_until_within(order, score_with, fp32_score, budget, int8_score)
        int8_nodes = set(nodes) - set(as_is)
        for step in result["steps"]:
            step["int8_nodes_left"] = len(int8_nodes - set(order[:step["excluded"]]))
        if result["excluded"]:
            sel.quantize(cand, source, trial, model_config, preset, result["excluded"], cache=cache)
            after = tmp / "after.onnx"
            os.replace(trial, after)
            times = timer({"before": before, "after": after}, spec)
            shutil.copy2(after, dst)
        else:
            times = {}
    sens = {n: s for n, s in ranked}
    return {
        "budget_points": budget, "fp32_score": fp32_score, "candidate": candidate,
        "calibration": {"split": "train", "batches": len(calib), "examples": int(sum(len(b["input_ids"]) for b in calib))},
        "excluded": [{"node": n, "sensitivity": sens[n]} for n in result["excluded"]],
        "within_budget": result["within_budget"], "steps": result["steps"], "nodes_considered": len(nodes),
        "nodes_left_fp32_by_the_quantizer": as_is,
        "int8_nodes_left": len(int8_nodes - set(result["excluded"])),
        "quantizations": {"weights_reused": cache.hits, "weights_quantized": cache.misses} if cache else None,
        "before": {"score": int8_score, "drop_points": drop_points(fp32_score, int8_score),
                   "latency_ms": (times.get("before") or {}).get("latency_ms")},
        "after": {"score": result["score"], "drop_points": drop_points(fp32_score, result["score"]),
                  "latency_ms": (times.get("after") or {}).get("latency_ms")},
        "sensitivity_top": [{"node": n, "sensitivity": s} for n, s in ranked[:10]],
    }


def smallest_int8_drop(qe: dict, tried: Sequence[dict] = ()) -> float | None:
    """The smallest drop (points) of a model that still had int8 nodes (pure): the model before the search, the
    search's steps that left some (``int8_nodes_left``) and the candidates ``tried`` as built
    (``int8.try_unexcluded``). None when there is none."""
    drops = [(qe.get("before") or {}).get("drop_points", qe.get("drop_points"))]
    drops += [s["drop_points"] for s in qe.get("steps") or [] if s.get("int8_nodes_left", 1) > 0]
    drops += [t["drop_points"] for t in tried]
    drops = [d for d in drops if d is not None]
    return min(drops) if drops else None


def met_only_as_fp32(qe: dict) -> bool:
    """Whether a ``quant_exclusion`` record met ``--max-quant-drop`` only with every node in fp32 (pure)."""
    return bool(qe.get("within_budget")) and qe.get("int8_nodes_left") == 0


def is_fp32_graph(onnx_rec: dict) -> bool:
    """Whether an int8 variant's record (``models[name]["onnx"]["int8"]``) is the fp32 graph: no int8 speed or
    size (:func:`met_only_as_fp32`; pure)."""
    return met_only_as_fp32(((onnx_rec or {}).get("build") or {}).get("quant_exclusion") or {})


def calibration_batches(train, tokenizer, task, max_length: int, n: int = 64, batch_size: int = 16,
                        seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``n`` seeded examples of the *train* split, tokenized and padded in length-sorted batches."""
    from ..prune.train import tokenize
    from .validate import pad

    if len(train) == 0:
        return []
    rows = train.shuffle(seed=seed).select(range(min(n, len(train))))
    enc = tokenize(rows, tokenizer, task, max_length).with_format(None)
    feats = enc.select_columns([c for c in enc.column_names if c != "labels"])
    order = np.argsort([len(x) for x in enc["input_ids"]], kind="stable")
    return [pad(tokenizer, [feats[int(j)] for j in order[i:i + batch_size]]) for i in range(0, len(order), batch_size)]
