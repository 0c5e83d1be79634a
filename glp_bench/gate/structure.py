"""Noise-free structural facts of an ONNX model, and their comparison (the gate's deterministic half).

A lost fusion, an extra encoder layer or a quantization that silently did not happen changes the graph
itself, so it is caught exactly, whatever the timing noise. :func:`facts` reads (``onnx``, weights not
needed)::

    {"path", "sha256", "file_size" (bytes, external data files included), "nodes", "initializers",
     "parameters" (elements of all initializers), "opset", "ops": {op_type: count} (most common first),
     "fused": {op_type: count} of ONNX Runtime's fused/contrib operators, "families": {family: count},
     "layers": encoder layers}

``layers`` counts attention blocks: fused attention operators (Attention, QAttention, MultiHeadAttention,
...) plus plain Softmax nodes, one per encoder layer in the BERT family's graphs, fused or not.

:func:`compare` (pure) turns two such dicts into rows ``{"metric", "baseline", "candidate", "verdict",
"note"}`` with verdict regression | improvement | changed | same:

* layers: more -> regression, fewer -> improvement;
* fused-operator families (attention, layer norm, GELU, quantized matmul): a family whose count drops is a
  lost fusion -> regression (Attention -> QAttention on quantization stays in its family: no loss);
* nodes and file size: growth beyond the tolerance (default 5%) -> regression, smaller growth -> changed,
  shrinking -> improvement (a leaner graph, a smaller file);
* every other op type and the parameter count: changed, for the record (never a verdict on their own).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from ..core.vocab import FUSED_OP_FAMILIES as FAMILIES
from ..core.vocab import FUSED_OPS

ATTENTION_OPS = frozenset(FAMILIES["attention"])
DEFAULT_TOLERANCE = 0.05

REGRESSION, IMPROVEMENT, CHANGED, SAME = "regression", "improvement", "changed", "same"


def _external_files(model, folder: Path) -> set[Path]:
    files = set()
    for t in model.graph.initializer:
        if t.data_location == 1:  # TensorProto.EXTERNAL
            for entry in t.external_data:
                if entry.key == "location":
                    files.add(folder / entry.value)
    return files


def facts(path: str | os.PathLike) -> dict:
    """Structural facts of the ONNX file at ``path`` (see the module docstring)."""
    import onnx

    from ..core.jsonio import sha256_file

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    ops = Counter(n.op_type for n in model.graph.node)
    size = path.stat().st_size + sum(f.stat().st_size for f in _external_files(model, path.parent) if f.is_file())
    params = 0
    for t in model.graph.initializer:
        n = 1
        for dim in t.dims:
            n *= int(dim)
        params += n
    fused = {op: n for op, n in ops.most_common() if op in FUSED_OPS}
    families = {fam: sum(ops.get(op, 0) for op in members) for fam, members in FAMILIES.items()}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return {
        "path": str(path), "sha256": sha256_file(path), "file_size": size,
        "nodes": len(model.graph.node), "initializers": len(model.graph.initializer), "parameters": params,
        "opset": opset, "ops": dict(ops.most_common()), "fused": fused,
        "families": {k: v for k, v in families.items() if v},
        "layers": sum(ops.get(op, 0) for op in ATTENTION_OPS) + ops.get("Softmax", 0),
    }


def _row(metric: str, base, cand, verdict: str, note: str = "") -> dict:
    return {"metric": metric, "baseline": base, "candidate": cand, "verdict": verdict, "note": note}


def _growth(metric: str, base: int, cand: int, tolerance: float, unit: str = "") -> dict:
    if cand == base:
        return _row(metric, base, cand, SAME)
    rel = cand / base - 1 if base else float("inf")
    note = f"{rel:+.1%}"
    if cand < base:
        return _row(metric, base, cand, IMPROVEMENT, note)
    if rel > tolerance:
        return _row(metric, base, cand, REGRESSION, f"{note} > {tolerance:.0%} tolerance{unit}")
    return _row(metric, base, cand, CHANGED, f"{note}, within the {tolerance:.0%} tolerance")


def compare(base: dict, cand: dict, node_tolerance: float = DEFAULT_TOLERANCE,
            size_tolerance: float = DEFAULT_TOLERANCE, max_op_rows: int = 8) -> list[dict]:
    """Rows comparing two :func:`facts` dicts (either may lack keys: a stored baseline may know only its
    file size); metrics missing on either side are skipped."""
    rows = []
    if "layers" in base and "layers" in cand:
        b, c = base["layers"], cand["layers"]
        verdict = SAME if b == c else (REGRESSION if c > b else IMPROVEMENT)
        rows.append(_row("encoder layers", b, c, verdict, "" if b == c else f"{c - b:+d} layer(s)"))
    if "families" in base and "families" in cand:
        for fam in FAMILIES:
            b, c = base["families"].get(fam, 0), cand["families"].get(fam, 0)
            if b == c == 0:
                continue
            members = sorted(set(base.get("fused", {})) | set(cand.get("fused", {})))
            detail = ", ".join(f"{op} {base.get('fused', {}).get(op, 0)}->{cand.get('fused', {}).get(op, 0)}"
                               for op in members if op in FAMILIES[fam])
            if c < b:
                rows.append(_row(f"fused {fam} ops", b, c, REGRESSION, f"lost fusion: {detail}"))
            elif c > b:
                rows.append(_row(f"fused {fam} ops", b, c, IMPROVEMENT, detail))
            else:
                changed = any(base.get("fused", {}).get(op, 0) != cand.get("fused", {}).get(op, 0)
                              for op in FAMILIES[fam])
                rows.append(_row(f"fused {fam} ops", b, c, CHANGED if changed else SAME, detail if changed else ""))
    if "nodes" in base and "nodes" in cand:
        rows.append(_growth("graph nodes", base["nodes"], cand["nodes"], node_tolerance))
    if "file_size" in base and "file_size" in cand:
        row = _growth("file size (bytes)", base["file_size"], cand["file_size"], size_tolerance)
        rows.append(row)
    if "parameters" in base and "parameters" in cand and base["parameters"] != cand["parameters"]:
        b, c = base["parameters"], cand["parameters"]
        rows.append(_row("parameters", b, c, CHANGED, f"{c / b - 1:+.1%}" if b else ""))
    if "ops" in base and "ops" in cand:
        diffs = sorted(((op, base["ops"].get(op, 0), cand["ops"].get(op, 0))
                        for op in set(base["ops"]) | set(cand["ops"]) if op not in FUSED_OPS),
                       key=lambda t: (-abs(t[2] - t[1]), t[0]))
        diffs = [d for d in diffs if d[1] != d[2]]
        for op, b, c in diffs[:max_op_rows]:
            rows.append(_row(f"op {op}", b, c, CHANGED, f"{c - b:+d}"))
        if len(diffs) > max_op_rows:
            rest = diffs[max_op_rows:]
            rows.append(_row(f"{len(rest)} more op types", "", "", CHANGED,
                             ", ".join(f"{op} {c - b:+d}" for op, b, c in rest)))
    return rows


def regressions(rows: list[dict]) -> list[str]:
    """One line per regression row, for the gate's verdict."""
    return [f"{r['metric']} {r['baseline']} -> {r['candidate']}" + (f" ({r['note']})" if r["note"] else "")
            for r in rows if r["verdict"] == REGRESSION]
