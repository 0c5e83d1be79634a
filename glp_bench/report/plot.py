"""Score against speedup, one panel per (run, target): every artifact of the report as a point
(colour = strategy, marker = variant), the Pareto frontier as a staircase, the full model's score
and the ``--max-drop`` budget as horizontal lines, the recommended artifact ringed. matplotlib, Agg.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..bench.results import shape_words
from ..core.errors import GlpError
from .stage import Report, Row, Section, metric_label, points, score_unit

MARKERS = {"torch-eager": "X", "fp32": "o", "fp32-opt": "s", "int8": "^", "fp16": "D"}
COLOURS = {"full": "black", "glp": "tab:blue", "top": "tab:orange", "bottom": "tab:green", "random": "tab:purple"}
OTHER_COLOURS = ("tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")


def _strategy(r: Row) -> str:
    return "full" if r.is_full_depth else "+".join(r.strategies) or "?"


def _plottable(section: Section) -> list[Row]:
    return [r for r in section.rows if r.speedup is not None and r.score is not None]


def plot_report(report: Report, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write the figure to ``path`` (PNG, or any format matplotlib knows from the suffix).

    Raises GlpError when no section has both speedups and scores (no latency results yet)."""
    sections = [s for s in report.sections if _plottable(s)]
    if not sections:
        runs = ", ".join(dict.fromkeys(s.run for s in report.sections))
        raise GlpError(f"nothing to plot: no speedups measured in {runs}; run "
                       f"'glp-bench latency --run {report.sections[0].run if report.sections else 'DIR'} --device cpu' first")
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    n = len(sections)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(9.5 * cols, 5.6 * rows), squeeze=False)
    for ax, section in zip(axes.flat, sections, strict=False):
        _panel(ax, section, report.max_drop)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return out


def _panel(ax, section: Section, max_drop: float) -> None:
    rows = _plottable(section)
    metric = metric_label(section.main_key)
    strategies = list(dict.fromkeys(_strategy(r) for r in rows))
    extra = iter(OTHER_COLOURS)
    colour = {s: COLOURS.get(s) or next(extra, "tab:gray") for s in strategies}
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((_strategy(r), r.variant), []).append(r)
    for (strategy, variant), rs in sorted(groups.items(), key=lambda kv: (strategies.index(kv[0][0]),
                                                                          list(MARKERS).index(kv[0][1])
                                                                          if kv[0][1] in MARKERS else 99)):
        ax.scatter([r.speedup for r in rs], [r.score * 100 for r in rs], marker=MARKERS.get(variant, "P"),
                   color=colour[strategy], s=55, alpha=0.85, label=f"{strategy} {variant}", zorder=3,
                   edgecolors="white", linewidths=0.6)
    for r in rows:
        ax.annotate(str(r.depth), (r.speedup, r.score * 100), textcoords="offset points", xytext=(5, 4),
                    fontsize=7, color="dimgray")

    front = sorted((r for r in rows if r.pareto), key=lambda r: (r.speedup, -r.score))
    if front:
        xs = [r.speedup for r in front]
        ys = [r.score * 100 for r in front]
        ax.step(xs, ys, where="pre", color="crimson", linewidth=1.3, linestyle="-", alpha=0.7,
                label="Pareto frontier", zorder=2)
    ref = next((r.reference_scores or {}).get(section.main_key) for r in rows)
    if ref is not None:
        ax.axhline(ref * 100, color="gray", linewidth=0.9, linestyle="--", label="full model (PyTorch)")
        ax.axhline(ref * 100 - max_drop, color="gray", linewidth=0.9, linestyle=":",
                   label=f"full model - {points(max_drop)} (--max-drop)")
    ax.axvline(1.0, color="lightgray", linewidth=0.8, zorder=1)
    rec = section.recommendation
    if rec is not None and rec.speedup is not None:
        ax.scatter([rec.speedup], [rec.score * 100], s=260, facecolors="none", edgecolors="crimson",
                   linewidths=1.8, zorder=4, label="recommended")
        ax.annotate(f"{rec.name} {rec.variant}", (rec.speedup, rec.score * 100), textcoords="offset points",
                    xytext=(-8, -16), ha="right", fontsize=8, color="crimson")

    ax.set_xlabel(f"speedup vs full-depth fp32 ONNX (×, higher is faster; {shape_words(section.shape)})")
    ax.set_ylabel(f"dev {metric} ({score_unit(section.task)} = {metric} x 100)")
    emulated = " (emulated on this host)" if section.target_info.get("emulated") else ""
    ax.set_title(f"{section.run_name}: {section.task} on {section.target}{emulated}", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.08, y=0.12)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # never over a point
