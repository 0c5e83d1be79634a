"""The rich table of a ``latency/<target>.json`` document (what ``glp-bench latency`` prints at the end)."""

from __future__ import annotations

from rich.table import Table

from .results import sort_records


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.2f}"


def _x(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _num(x: float | None, fmt: str = ".0f") -> str:
    return "-" if x is None else format(x, fmt)


def render_table(doc: dict) -> Table:
    target = doc["target"]
    title = f"latency on {target['name']} ({target.get('device')}, {doc['environment'].get('cpu_model', '')})"
    if target.get("emulated"):
        title += f" - emulation of {target.get('arch')}"
    if not doc.get("complete", True):
        title += f" - INCOMPLETE ({doc.get('rounds_done')} of {doc['settings']['rounds']} rounds)"
    table = Table(title=title, caption=(
        "latency: p50/p90/p99 of all samples; speedups: ratio of balanced medians (mean of per-round medians) vs "
        "the full-depth fp32 ONNX model and PyTorch eager at the same batch/seq/threads; ! = CV above "
        f"{doc['settings']['max_cv']:.0%} (spread too large to trust)"
    ))
    for col, just in (("model", "left"), ("variant", "left"), ("threads", "right"), ("batch", "right"),
                      ("seq", "right"), ("p50 ms", "right"), ("p90 ms", "right"), ("p99 ms", "right"),
                      ("CV", "right"), ("seq/s", "right"), ("tok/s", "right"), ("peak RSS MB", "right"),
                      ("size MB", "right"), ("vs fp32 full", "right"), ("vs torch", "right")):
        table.add_column(col, justify=just)
    for r in sort_records(doc["measurements"]):
        s = r["summary_s"]
        head = (r["model"], r["variant"], str(r["threads"]), str(r["batch"]), str(r["seq"]))
        if s is None:
            table.add_row(*head, f"[red]failed: {r['error'] or 'no samples'}[/]", *[""] * 9)
            continue
        cv = f"{s['cv']:.1%}" + ("[yellow]![/]" if r["unstable"] else "")
        rss = _num(r["peak_rss_mb"])
        if r.get("over_budget"):
            rss = f"[red]{rss}[/]"
        table.add_row(
            *head, _ms(s["p50"]), _ms(s["p90"]), _ms(s["p99"]), cv,
            _num(r["throughput"]["sequences_per_s"], ".1f"), _num(r["throughput"]["tokens_per_s"]),
            rss, _num(r["file_size"] / 1e6 if r.get("file_size") else None, ".1f"),
            _x(r["speedup"]["vs_full_fp32"]), _x(r["speedup"]["vs_torch_eager"]),
        )
    return table
