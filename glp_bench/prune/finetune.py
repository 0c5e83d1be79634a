"""One fine-tune of one (optionally pruned) model, scored on dev and saved (``glp-bench finetune``'s stage).

The result is written beside ``out`` and moved into place, so a crash leaves the old result or the new one,
never a mix; an old result is moved aside to ``<out>.bak-<time>``, never deleted.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def finetune_model(task, model_id: str, data: dict, layers: list[int], cfg, device: str, out: str | Path,
                   console=None, pooling: str | None = None) -> tuple[dict, dict]:
    """Fine-tune ``model_id`` without ``layers`` on ``data["train"]``, score it on the dev split(s) and save
    model, tokenizer and ``scores.json`` (format ``glp-bench-finetune``) into ``out``; returns (scores, stats).
    ``pooling``: ``cls`` or ``mean`` (default: what the model's config records, else cls)."""
    from ..core.jsonio import atomic_write_json, publish_permissions, stamp
    from ..core.progress import make_progress
    from ..core.rundir import now
    from ..data.tasks import flatten_scores
    from .models import load_classifier, load_tokenizer, save_classifier
    from .surgery import drop_layers, kept_layers
    from .train import evaluate, fine_tune, tokenize

    out = Path(out)
    model = load_classifier(model_id, task, seed=cfg.seed, pooling=pooling)
    tokenizer = load_tokenizer(model_id)
    if layers:
        model = drop_layers(model, layers)
    enc = {name: tokenize(split, tokenizer, task, cfg.max_length) for name, split in data.items()}
    if console is not None:
        console.print(f"fine-tuning {model_id} on {task.name}: {len(enc['train'])} examples, "
                      f"layers {kept_layers(model.config)}, {model.config.glp_pooling} pooling, device {device}, "
                      f"precision {cfg.precision}")
    with make_progress() as progress:
        stats = fine_tune(model, enc["train"], tokenizer, cfg, device, progress, description=f"{task.name}")
    scores = flatten_scores(task, evaluate(model, {s: enc[s] for s in task.dev_splits}, tokenizer, task, device))

    staged = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(staged, ignore_errors=True)
    save_classifier(model, tokenizer, staged / "model")
    publish_permissions(staged / "model")  # safetensors writes its weights 0600
    atomic_write_json(staged / "scores.json", stamp("glp-bench-finetune", 1, {
        "task": task.name, "model": model_id, "kept_layers": kept_layers(model.config), "device": device,
        "pooling": model.config.glp_pooling,
        "train_config": cfg.to_dict(), "train": stats, "dev_scores": scores,
    }))
    if out.exists() and any(out.iterdir()):  # --force: keep the old result beside, never delete it
        backup = Path(f"{out}.bak-{now().replace(':', '').replace('+00:00', '')}")
        out.rename(backup)
        if console is not None:
            console.print(f"moved the old result to {backup}")
    elif out.exists():
        out.rmdir()
    staged.rename(out)
    return scores, stats
