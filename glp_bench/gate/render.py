"""Rich tables of the gate's evidence: each side's samples, each pass's decision, the structural rows."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ..bench import stats
from .decide import IMPROVEMENT, NO_CHANGE, NOT_SIGNIFICANT, REGRESSION, UNDECIDED, GatePass, Outcome

STYLE = {REGRESSION: "bold red", UNDECIDED: "yellow", NOT_SIGNIFICANT: "yellow", IMPROVEMENT: "green",
         NO_CHANGE: "green", "changed": "cyan", "same": "dim", "no regression": "bold green"}


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.3f}"


def _p(x: float | None) -> str:
    return "-" if x is None else f"{x:.2g}"


def sides_table(sides: list[tuple[str, str, list[list[float]]]], clock: str = "wall",
                wall: list[list[list[float]]] | None = None, title: str = "measurements") -> Table:
    """One row per side: (side, what it is, all its rounds pooled) on the decision clock; ``wall``: the same
    sides' wall-clock rounds, shown beside CPU time for reference."""
    what = "CPU time" if clock == "cpu" else "wall-clock latency"
    t = Table(title=f"{title} ({what} per inference: the decision clock)",
              caption="balanced median = mean of per-round medians")
    cols = [("side", "left"), ("model", "left"), ("rounds", "right"), ("samples", "right"), ("p50 ms", "right"),
            ("p90 ms", "right"), ("CV", "right"), ("balanced median ms", "right")]
    if wall is not None:
        cols.append(("wall p50 ms", "right"))
    for col, just in cols:
        t.add_column(col, justify=just)
    for k, (side, name, rounds) in enumerate(sides):
        rounds = [r for r in rounds if len(r)]
        extra = []
        if wall is not None:
            w = stats.flatten(wall[k])
            extra = [_ms(stats.percentile(w, 50)) if w else "-"]
        if not rounds:
            t.add_row(side, name, "0", "0", "-", "-", "-", "-", *extra)
            continue
        s = stats.summarize(stats.flatten(rounds))
        cv = f"{s['cv']:.1%}" + ("[yellow]![/]" if stats.is_unstable(s) else "")
        t.add_row(side, name, str(len(rounds)), str(s["n"]), _ms(s["p50"]), _ms(s["p90"]), cv,
                  _ms(stats.balanced_median(rounds)), *extra)
    return t


def timing_table(passes: list[GatePass], title: str = "timing decision") -> Table:
    """One row per pass; each pass decides on everything measured so far (pooled)."""
    first = next((p.verdict for p in passes), None)
    caption = ""
    if first is not None:
        caption = (f"regression = ratio > {first.factor:.2f} AND one-sided p < {first.alpha:g} ({first.test}); "
                   "a suspected regression is re-measured once and decided on both passes pooled")
    t = Table(title=title, caption=caption)
    for col, just in (("pass", "left"), ("units", "right"), ("baseline ms", "right"), ("candidate ms", "right"),
                      ("ratio", "right"), ("p slower", "right"), ("p faster", "right"), ("verdict", "left")):
        t.add_column(col, justify=just)
    for i, p in enumerate(passes):
        v = p.verdict
        name = "measure" if i == 0 else "re-measure (pooled)"
        units = f"{v.n_baseline}/{v.n_candidate}"
        ratio = "-" if v.ratio is None else f"{v.ratio:.3f}"
        t.add_row(name, units, _ms(v.baseline_s), _ms(v.candidate_s), ratio, _p(v.p_slower), _p(v.p_faster),
                  Text(v.status, style=STYLE.get(v.status, "")))
    return t


def structure_table(rows: list[dict], title: str = "structure (noise-free)") -> Table:
    t = Table(title=title, caption="regression: more encoder layers, a fused-operator family that lost members, "
                                   "or nodes / file size grown beyond the tolerance")
    for col, just in (("metric", "left"), ("baseline", "right"), ("candidate", "right"), ("verdict", "left"),
                      ("note", "left")):
        t.add_column(col, justify=just)
    for r in rows:
        t.add_row(r["metric"], str(r["baseline"]), str(r["candidate"]), Text(r["verdict"], style=STYLE.get(r["verdict"], "")),
                  r["note"])
    return t


def outcome_text(outcome: Outcome) -> Text:
    head = {1: "REGRESSION", 2: "UNDECIDED"}.get(outcome.exit_code, "NO REGRESSION")
    text = Text(f"gate: {head} (exit {outcome.exit_code})", style=STYLE.get(outcome.status, ""))
    for r in outcome.reasons:
        text.append(f"\n  {r}", style="")
    return text


def _pts(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2f}"


def score_tables(r) -> list[Table]:
    """The score gate's evidence (``glp_bench.gate.score_stage.ScoreGateResult``): each side's dev scores, and the
    paired decision."""
    from .stage import short_path

    v, task = r.verdict, r.task
    metrics = list(r.scores[0])
    t = Table(title=f"dev scores ({task.name} {r.split}, {v.n_examples} examples, ONNX Runtime)",
              caption=f"main metric: {task.main_metric}")
    for col, just in [("side", "left"), ("model", "left"), ("variant", "left")] + [(m, "right") for m in metrics] + [
            ("scoring s", "right")]:
        t.add_column(col, justify=just)
    for s, scores, sec in zip(r.sides, r.scores, r.seconds_per_side, strict=True):
        t.add_row(s.role, s.model or short_path(s.path), s.variant or "-", *[f"{scores[m]:.4f}" for m in metrics], f"{sec:.1f}")
    d = Table(title="score decision (points = metric x 100; candidate - baseline)",
              caption=f"regression = the one-sided {1 - v.alpha:.0%} upper bound below -{v.max_drop:g}; no regression = "
                      f"the lower bound at or above -{v.max_drop:g}; otherwise undecided ({v.test}, "
                      f"{v.n_resamples} resamples)")
    for col, just in (("delta", "right"), (f"{100 * (1 - 2 * v.alpha):g}% CI", "right"), ("p worse", "right"),
                      ("examples test", "left"), ("p", "right"), ("verdict", "left")):
        d.add_column(col, justify=just)
    counts = ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in v.examples_counts.items())
    name = "Wilcoxon |error|" if "Wilcoxon" in v.examples_test else "McNemar"
    d.add_row(_pts(v.delta), f"[{_pts(v.lo)}, {_pts(v.hi)}]", _p(v.p_worse), f"{name}: {counts}",
              _p(v.examples_p), Text(v.status, style=STYLE.get(v.status, "")))
    return [t, d]
