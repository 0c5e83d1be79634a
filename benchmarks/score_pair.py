#!/usr/bin/env python
"""Make the checked-in model pair of the score suite (``benchmarks/score_suite.py``): ``benchmarks/score_pair/``.

    python benchmarks/score_pair.py          # rewrites benchmarks/score_pair/ (a few seconds, CPU)

A toy task whose answer is known: sentences that contain "good" or "bad" (task ``goodbad``, custom task file
``task.toml`` with ``train.csv`` / ``dev.csv``). A tiny random BERT (2 layers, hidden 32, the folder's own
WordPiece vocabulary) is trained a few hundred steps on train.csv and exported by glp-bench's own export
(``glp_bench.export.stage.export_fp32``) as ``good.onnx``; ``worse.onnx`` is the same model with its classifier
weights zeroed (bias kept, encoder untouched): it answers one class whatever the text, chance on a balanced set. The tokenizer files lie beside both.
The script refuses to write a pair whose answer is not clear (good >= 0.95 dev accuracy, worse <= 0.60).
Everything is seeded; the files are a few hundred KB in all.
"""

from __future__ import annotations

import csv
import random
import shutil
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "score_pair"
WORDS = ("the a this that cat dog bird man woman child book idea car house tree sees likes reads runs eats gives "
         "thinks big small red very not and or but who what to of in on with by for from is was").split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LABELS = ("bad", "good")
TASK_TOML = """\
# the score suite's toy task (benchmarks/score_pair.py): is the word "good" or "bad" in the sentence?
name = "goodbad"
train = "train.csv"
dev = "dev.csv"
text = "text"
label = "label"
labels = ["bad", "good"]
metrics = ["accuracy", "mcc"]
main_metric = "accuracy"
"""


def sentence(rng: random.Random, label: int) -> str:
    words = rng.sample(WORDS, rng.randint(3, 8))
    words.insert(rng.randrange(len(words) + 1), LABELS[label])
    return " ".join(words)


def write_split(path: Path, n: int, rng: random.Random) -> list[tuple[str, int]]:
    rows = [(sentence(rng, i % 2), i % 2) for i in range(n)]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows((t, LABELS[y]) for t, y in rows)
    return rows


def train(model, tok, rows, steps: int = 300, batch: int = 32, seed: int = 0) -> None:
    import torch

    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        chunk = rng.sample(rows, batch)
        enc = tok([t for t, _ in chunk], padding=True, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([y for _, y in chunk])).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def accuracy(model, tok, rows) -> float:
    import torch

    with torch.inference_mode():
        enc = tok([t for t, _ in rows], padding=True, return_tensors="pt")
        pred = model(**enc).logits.argmax(-1).tolist()
    return sum(p == y for p, (_, y) in zip(pred, rows, strict=True)) / len(rows)


def main() -> int:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from glp_bench.export.stage import export_fp32

    torch.manual_seed(0)
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="score-pair-") as tmp:
        tmp = Path(tmp)
        (tmp / "vocab.txt").write_text("\n".join(SPECIALS + WORDS + list(LABELS)) + "\n")
        tok = BertTokenizerFast(vocab_file=str(tmp / "vocab.txt"), do_lower_case=True, model_max_length=64)
        cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64, pad_token_id=0, num_labels=2,
                         id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
        model = BertForSequenceClassification(cfg)
        data = tmp / "data"
        data.mkdir()
        train_rows = write_split(data / "train.csv", 400, rng)
        dev_rows = write_split(data / "dev.csv", 200, rng)
        train(model, tok, train_rows)
        good_acc = accuracy(model, tok, dev_rows)
        for name in ("good", "worse"):
            if name == "worse":
                with torch.no_grad():
                    model.classifier.weight.zero_()  # a broken head that ignores the text: the encoder is untouched
                worse_acc = accuracy(model, tok, dev_rows)
            model.save_pretrained(tmp / name)
            tok.save_pretrained(tmp / name)
            export_fp32(tmp / name, tmp / f"{name}-onnx", opset=18)
        print(f"dev accuracy (PyTorch): good {good_acc:.3f}, worse {worse_acc:.3f}", file=sys.stderr)
        if good_acc < 0.95 or worse_acc > 0.60:
            sys.exit("the pair's answer is not clear enough (good >= 0.95, worse <= 0.60); change the seed or steps")
        stage = tmp / "out"
        stage.mkdir()
        for f in sorted((tmp / "good-onnx").iterdir()):
            if f.is_file() and f.name != "model.onnx":
                shutil.copy2(f, stage / f.name)  # the tokenizer files and config.json (its label names)
        shutil.copy2(tmp / "good-onnx" / "model.onnx", stage / "good.onnx")
        shutil.copy2(tmp / "worse-onnx" / "model.onnx", stage / "worse.onnx")
        for f in ("train.csv", "dev.csv"):
            shutil.copy2(data / f, stage / f)
        (stage / "task.toml").write_text(TASK_TOML)
        if OUT.exists():
            shutil.rmtree(OUT)
        shutil.copytree(stage, OUT)
    total = sum(f.stat().st_size for f in OUT.iterdir())
    print(f"wrote {OUT} ({len(list(OUT.iterdir()))} files, {total / 1024:.0f} KB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
