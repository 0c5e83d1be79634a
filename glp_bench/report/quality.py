"""What stands behind the scores of a run: start, distillation and seeds per final model, noise per GLP step.

Pure functions of a run's manifest (``glp_bench.core.rundir.RunDir``); rendered by ``glp_bench.report.render``
as two tables ("training" and "GLP steps") when they say something a plain run would not (a distilled
model, several seeds, or a step with a bootstrap record). Scores in points (x100).
"""

from __future__ import annotations

import statistics


def seed_scores(rec: dict, key: str) -> list[float]:
    """The main dev score of every final seed of a model record (the first seed alone for older runs)."""
    seeds = rec.get("seeds") or {}
    vals = [s["dev_scores"][key] for s in seeds.values() if (s.get("dev_scores") or {}).get(key) is not None]
    if not vals and (rec.get("dev_scores") or {}).get(key) is not None:
        vals = [rec["dev_scores"][key]]
    return vals


def training_rows(models: dict, key: str) -> list[dict]:
    """One row per finished model, deepest first: where its fine-tune started (``init``: the run's fine-tuned
    full model or the pre-trained one; older runs: pre-trained), distillation, seeds, mean and std over seeds (points),
    and the seed whose files are exported (the first, a fixed rule that does not look at dev)."""
    rows = []
    for name, rec in sorted(models.items(), key=lambda kv: (-kv[1]["depth"], kv[0])):
        vals = seed_scores(rec, key)
        if not vals:
            continue
        d = rec.get("distill")
        rows.append({
            "name": name, "depth": rec["depth"], "strategies": list(rec.get("strategies") or []),
            "kept_layers": rec.get("kept_layers"), "init": rec.get("init") or "pretrained", "distill": d,
            "seeds": len(vals),
            "mean": statistics.fmean(vals) * 100, "std": statistics.stdev(vals) * 100 if len(vals) > 1 else None,
            "exported_seed": rec.get("seed"), "lr": (rec.get("recipe") or {}).get("lr"),
            "epochs": (rec.get("recipe") or {}).get("epochs"),
        })
    return rows


def step_rows(strategies: dict) -> list[dict]:
    """One row per finished GLP step: removed layer, its held-out score (points), the rule that decided,
    and the bootstrap's verdict (``within_noise``, ``p_best``; None for steps logged without it)."""
    from ..prune.search import decided_by, step_pool

    rows = []
    for i, step in enumerate((strategies.get("glp") or {}).get("steps") or [], 1):
        if step.get("chosen") is None:
            continue
        pool = step_pool(step)
        chosen = step["chosen"]
        noise = step.get("noise") or {}
        rows.append({
            "step": i, "removed": chosen, "candidates": len(step["candidates"]),
            "score": pool[chosen]["score"] * 100, "decided_by": decided_by(pool, chosen),
            "within_noise": noise.get("within_noise"), "p_best": noise.get("p_best"),
            "runner_up": noise.get("runner_up"),
            "interval": [x * 100 for x in noise["intervals"][str(chosen)]] if noise.get("intervals") else None,
            "rescored": len((step.get("rescore") or {}).get("candidates") or {}),
        })
    return rows


def informative(training: list[dict], steps: list[dict]) -> bool:
    return any(r["distill"] or r["seeds"] > 1 or r["init"] != "pretrained" for r in training) or any(s["within_noise"] is not None for s in steps)


def training_cells(training: list[dict]) -> tuple[list[str], list[str], list[list[str]]]:
    headers = ["depth", "model", "strategies", "starts from", "distilled", "lr", "epochs", "seeds", "dev mean",
               "± std", "exported seed"]
    just = ["right", "left", "left", "left", "left", "right", "right", "right", "right", "right", "right"]
    cells = [[str(r["depth"]), r["name"], "+".join(r["strategies"]) or "-",
              "full model" if r["init"] == "teacher" else "pre-trained",
              f"alpha {r['distill']['alpha']:g}, T {r['distill']['temperature']:g}" if r["distill"] else "no",
              f"{r['lr']:g}" if r["lr"] else "-", f"{r['epochs']:g}" if r.get("epochs") else "-", str(r["seeds"]),
              f"{r['mean']:.2f}",
              f"{r['std']:.2f}" if r["std"] is not None else "-", str(r["exported_seed"] or "-")] for r in training]
    return headers, just, cells


def step_cells(steps: list[dict]) -> tuple[list[str], list[str], list[list[str]]]:
    headers = ["step", "removed layer", "held-out score", "95% interval", "decided by", "P(best)", "verdict"]
    just = ["right", "right", "right", "right", "left", "right", "left"]

    def verdict(s):
        if s["within_noise"] is None:
            return "-"
        text = f"within noise (runner-up {s['runner_up']})" if s["within_noise"] else "clear"
        return text + (f"; {s['rescored']} re-scored" if s["rescored"] else "")

    cells = [[str(s["step"]), str(s["removed"]), f"{s['score']:.2f}",
              f"{s['interval'][0]:.1f}..{s['interval'][1]:.1f}" if s["interval"] else "-", s["decided_by"],
              f"{s['p_best']:.2f}" if s["p_best"] is not None else "-", verdict(s)] for s in steps]
    return headers, just, cells
