"""Fine-tuning and evaluation on CPU or GPU, with the paper's defaults.

Defaults follow Peer et al. (who used Hugging Face's ``run_glue.py``): AdamW, lr 2e-5, batch 32,
3 epochs, max length 128, linear decay without warm-up. Unlike the paper's protocol (every sentence
padded to 128 tokens), batches are padded dynamically to their longest member and grouped by length
(``LengthGroupedSampler``), which is what makes CPU fine-tuning practical: CoLA sentences average ~11
tokens. ``pad_to_max=True`` reproduces the paper's padding (used by the speed benchmark).

Deterministic on CPU for a given seed: the head init, data order and dropout all draw from ``seed``.
``precision`` (bf16/fp16 autocast, ``glp_bench.prune.precision``) and distillation from a teacher's logits
(``glp_bench.prune.distill``) are options of the same loop.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..core.errors import DeviceError


@dataclass
class TrainConfig:
    epochs: float = 3.0
    lr: float = 2e-5
    batch_size: int = 32
    max_length: int = 128
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    seed: int = 42
    max_samples: int | None = None  # cap on training examples (search budgets)
    pad_to_max: bool = False  # the paper's protocol: pad everything to max_length
    group_by_length: bool = True
    precision: str = "fp32"  # resolved: fp32, bf16 or fp16 (glp_bench.prune.precision)
    distill_alpha: float = 0.0  # weight of the teacher's soft targets (0: no distillation; glp_bench.prune.distill)
    distill_temperature: float = 2.0

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda but no CUDA GPU is visible to torch; use --device cpu or auto")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise DeviceError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


def tokenize(dataset, tokenizer, task, max_length: int = 128):
    """Tokenized copy of a split (no padding: batches are padded by the collator)."""

    def enc(batch):
        texts = [batch[k] for k in task.text_keys]
        return tokenizer(*texts, truncation=True, max_length=max_length)

    keep = ["label"]
    out = dataset.map(enc, batched=True, remove_columns=[c for c in dataset.column_names if c not in keep])
    return out.rename_column("label", "labels")


def model_input_names(model) -> set[str]:
    """Inputs ``model.forward`` accepts (DistilBERT and MPNet take no ``token_type_ids``)."""
    import inspect

    return set(inspect.signature(model.forward).parameters)


def _collator(tokenizer, cfg: TrainConfig):
    from transformers import DataCollatorWithPadding

    if cfg.pad_to_max:
        return DataCollatorWithPadding(tokenizer, padding="max_length", max_length=cfg.max_length)
    return DataCollatorWithPadding(tokenizer)


def _loader(encoded, tokenizer, cfg: TrainConfig, shuffle: bool, seed: int):
    import torch
    from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
    from transformers.trainer_pt_utils import LengthGroupedSampler

    encoded = encoded.with_format(None)
    generator = torch.Generator().manual_seed(seed)
    if shuffle and cfg.group_by_length and not cfg.pad_to_max:
        lengths = [len(x) for x in encoded["input_ids"]]
        sampler = LengthGroupedSampler(cfg.batch_size, lengths=lengths, generator=generator)
    elif shuffle:
        sampler = RandomSampler(encoded, generator=generator)
    else:
        sampler = SequentialSampler(encoded)
    return DataLoader(encoded, batch_size=cfg.batch_size, sampler=sampler, collate_fn=_collator(tokenizer, cfg))


def adamw(params, lr: float, device: str):
    """torch's fused AdamW (one kernel over all parameters) where the device has it: the same update as the
    per-parameter loop, 5x faster (all-MiniLM-L6-v2 on the 2-core AVX2 CPU: 89.5 -> 18.0 ms of a ~390 ms step,
    ``benchmarks/bench_optimizer.py``); the plain AdamW elsewhere."""
    import torch

    params = list(params)  # a generator would be used up by a failed fused attempt
    if device == "cpu" or device.startswith("cuda"):
        try:
            return torch.optim.AdamW(params, lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError):  # an older torch, or a parameter dtype fused does not take
            pass
    return torch.optim.AdamW(params, lr=lr)


def clip_gradients(params: list, max_norm: float, device: str) -> None:
    """``torch.nn.utils.clip_grad_norm_``, without the multiplication of every gradient by 1.0 when their norm is
    within ``max_norm`` on the CPU (most steps; torch does it anyway only to save a GPU sync). The gradients are
    the same bit for bit."""
    import torch

    total = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None], 2.0)
    if device != "cpu" or not bool(max_norm / (total + 1e-6) >= 1.0):  # NaN norms still multiply
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)


def pause_step(total: int, fraction: float) -> int:
    """The optimizer step at which a fine-tune of ``total`` steps pauses at ``fraction`` of its budget."""
    return min(max(1, round(total * fraction)), total)


def _rows_to_train(model, encoded, tokenizer, cfg: TrainConfig, device: str, resume: dict | None):
    """The input-embedding rows a fine-tune trains (``glp_bench.prune.used_rows``; ``None``: all). A resumed one
    trains the rows its checkpoint did (its optimizer state has their shape)."""
    from .used_rows import applies, used_rows

    if resume is not None:
        return resume.get("embedding_rows")
    if not applies(model, cfg.weight_decay, device):
        return None
    return used_rows(encoded.with_format(None)["input_ids"], tokenizer.pad_token_id)


def _set_rng(checkpoint: dict) -> None:
    import torch

    torch.set_rng_state(checkpoint["rng"])
    if checkpoint.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(checkpoint["cuda_rng"])


def fine_tune(model, encoded_train, tokenizer, cfg: TrainConfig, device: str = "cpu", progress=None,
              description: str = "fine-tune", teacher_logits: np.ndarray | None = None,
              pause_at: float | None = None, resume: dict | None = None):
    """Fine-tune ``model`` in place on a tokenized split; returns ``{"steps", "seconds", "examples_per_s"}``.
    With ``cfg.distill_alpha > 0``, ``teacher_logits`` (one row per example of ``encoded_train``) are the soft
    targets.

    ``pause_at`` (a fraction of the budget) stops after that share of the steps, the schedule still the full
    budget's, and adds ``"checkpoint"`` to the result: the weights, optimizer, scheduler and random states
    (``resume`` takes it back). Paused and resumed, a fine-tune ends bit for bit where an uninterrupted one
    does: the data order is redrawn from the epoch's saved generator state and the batches before the pause
    skipped (successive halving, ``glp_bench.prune.halving``)."""
    import torch
    from transformers import get_linear_schedule_with_warmup, set_seed

    from .distill import distill_loss
    from .memory import keep_freed_memory
    from .precision import autocast
    from .used_rows import only_rows

    keep_freed_memory()  # no page faults step after step (glp_bench.prune.memory)
    set_seed(cfg.seed)
    distill = cfg.distill_alpha > 0
    if distill:
        if teacher_logits is None or len(teacher_logits) != len(encoded_train):
            raise ValueError("distillation needs one row of teacher logits per training example")
        teacher = torch.as_tensor(np.asarray(teacher_logits, dtype=np.float32))
        encoded_train = encoded_train.add_column("glp_row", list(range(len(encoded_train))))
    if cfg.max_samples is not None and len(encoded_train) > cfg.max_samples:
        encoded_train = encoded_train.shuffle(seed=cfg.seed).select(range(cfg.max_samples))
    loader = _loader(encoded_train, tokenizer, cfg, shuffle=True, seed=cfg.seed)
    steps_per_epoch = len(loader)
    total = max(1, math.ceil(steps_per_epoch * cfg.epochs))
    model.to(device).train()
    if resume is not None:
        model.load_state_dict(resume["model"])  # before the embedding's row subset: a full-size state
    emb_rows = _rows_to_train(model, encoded_train, tokenizer, cfg, device, resume)
    with only_rows(model, emb_rows):  # the same weights as training every row, faster (glp_bench.prune.used_rows)
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
        params = [
            {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": cfg.weight_decay},
            {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
        ]
        opt = adamw(params, cfg.lr, device)
        sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
        scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        regression = getattr(model.config, "problem_type", None) == "regression" or model.config.num_labels == 1
        accepted = model_input_names(model)
        stop = total if pause_at is None else pause_step(total, pause_at)
        step, examples, epoch, skip = 0, 0, 0, 0
        generator = loader.sampler.generator if hasattr(loader.sampler, "generator") else None
        if resume is not None:
            opt.load_state_dict(resume["optimizer"])
            sched.load_state_dict(resume["scheduler"])
            if scaler is not None and resume.get("scaler"):
                scaler.load_state_dict(resume["scaler"])
            step, examples, epoch = resume["step"], resume["examples"], resume["epoch"]
            skip = step - epoch * steps_per_epoch
            if generator is not None:
                generator.set_state(resume["epoch_generator"])
        task_id = progress.add_task(description, total=total, steps=True) if progress is not None else None  # steps: no log line each
        if task_id is not None and step:
            progress.update(task_id, completed=step)
        start, examples0 = time.perf_counter(), examples
        first_step = None  # seconds of the first step (warm-up), excluded from the steady throughput
        epoch_generator = None
        while step < stop:
            epoch_generator = generator.get_state() if generator is not None else None
            if resume is not None and not skip:  # resuming on an epoch boundary: before the epoch's draw
                _set_rng(resume)
            batches = iter(loader)  # draws the epoch's order (and a number from torch's global generator)
            for _ in range(skip):  # resuming mid-epoch: the batches already trained on
                next(batches)
            if resume is not None and skip:  # dropout continues where the paused fine-tune stopped
                _set_rng(resume)
            resume, skip = None, 0
            for batch in batches:
                rows = batch.pop("glp_row", None)
                batch = {k: v.to(device) for k, v in batch.items() if k in accepted}
                with autocast(cfg.precision, device):
                    if distill:
                        labels = batch.pop("labels")
                        out = model(**batch)
                        loss = distill_loss(out.logits, labels, teacher[rows], cfg.distill_alpha,
                                            cfg.distill_temperature, regression)
                    else:
                        loss = model(**batch).loss
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(opt)
                else:
                    loss.backward()
                clip_gradients(list(model.parameters()), 1.0, device)
                if scaler is not None:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                examples += batch["input_ids"].shape[0]
                if first_step is None:
                    first_step = (time.perf_counter() - start, examples - examples0)
                if task_id is not None:
                    progress.update(task_id, advance=1, description=f"{description} [epoch {epoch + 1}/{math.ceil(cfg.epochs)}]")
                if step >= stop:
                    break
            else:
                epoch += 1
                continue
            if step % steps_per_epoch == 0:  # stopped on an epoch's last batch
                epoch += 1
                epoch_generator = generator.get_state() if generator is not None else None
            break
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if task_id is not None:
        progress.remove_task(task_id)
    model.eval()
    paused = None
    if step < total:
        paused = {"step": step, "examples": examples, "epoch": epoch, "epoch_generator": epoch_generator,
                  "rng": torch.get_rng_state(),
                  "cuda_rng": torch.cuda.get_rng_state() if device.startswith("cuda") else None, "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                  "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                  "scaler": scaler.state_dict() if scaler is not None else None, "embedding_rows": emb_rows}
    done = examples - examples0  # this call's share (a resumed fine-tune's earlier part ran elsewhere)
    steady = (done - first_step[1]) / max(seconds - first_step[0], 1e-9) if first_step and done > first_step[1] \
        else done / max(seconds, 1e-9)
    return {"steps": step, "examples": examples, "seconds": seconds, "examples_per_s": done / max(seconds, 1e-9),
            "steady_examples_per_s": steady, "precision": cfg.precision, **({"checkpoint": paused} if paused else {})}


def reseed_head(model, seed: int):
    """Re-initialise everything outside the pre-trained encoder (the task head) from ``seed``: what a fresh
    ``from_pretrained`` after ``set_seed(seed)`` would give, without reloading. Used for extra seeds."""
    import torch

    prefix = model.base_model_prefix
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, module in model.named_modules():
            if name and not name.startswith(prefix) and not list(module.children()):
                model._init_weights(module)
    return model


def predict(model, encoded, tokenizer, device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """Logits for a tokenized split, in the split's order (batches sorted by length for speed)."""
    import torch

    encoded = encoded.with_format(None)
    lengths = np.array([len(x) for x in encoded["input_ids"]])
    order = np.argsort(lengths, kind="stable")
    cfg = TrainConfig(batch_size=batch_size)
    collate = _collator(tokenizer, cfg)
    accepted = model_input_names(model)
    feats = [c for c in encoded.column_names if c != "labels" and c in accepted]
    rows = encoded.select_columns(feats)
    out: list[np.ndarray] = []
    model.to(device).eval()
    with torch.inference_mode():
        for i in range(0, len(order), batch_size):
            batch = collate([rows[int(j)] for j in order[i : i + batch_size]])
            batch = {k: v.to(device) for k, v in batch.items()}
            out.append(model(**batch).logits.float().cpu().numpy())
    logits = np.concatenate(out) if out else np.zeros((0, model.config.num_labels), dtype=np.float32)
    result = np.empty_like(logits)
    result[order] = logits
    return result


def evaluate(model, encoded_splits: dict, tokenizer, task, device: str = "cpu") -> dict[str, dict[str, float]]:
    """All the task's metrics on each given split: ``{split: {metric: value}}``."""
    return {
        name: task.compute(predict(model, enc, tokenizer, device), enc["labels"])
        for name, enc in encoded_splits.items()
    }
