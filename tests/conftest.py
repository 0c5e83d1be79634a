"""Shared fixtures: tiny random models of several architectures (built from configs, never
downloaded) with a real WordPiece tokenizer, and tiny GLUE-layout data written by the tests."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_COLA = REPO / "glp_bench" / "data" / "bundled" / "cola"  # the official CoLA, shipped as package data

WORDS = (
    "the a an this that cat dog bird man woman child book idea car house tree "
    "sees saw likes liked reads read runs ran eats ate gives gave thinks thought "
    "good bad big small red happy sad quickly slowly very not and or but who what "
    "to of in on with by for from is was were be been has have had will would "
    "john mary bill sue kim they we he she it him her them"
).split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

ARCHS = ["bert", "roberta", "distilbert", "electra", "mpnet"]


def make_tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(SPECIALS + WORDS + ["."]) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True, model_max_length=128)
    return tok


def tiny_config(arch: str, layers: int = 4, num_labels: int = 2, init_range: float = 0.1):
    """A tiny random config of ``arch`` whose vocabulary matches ``make_tokenizer`` ([PAD] = 0)."""
    import transformers as tf

    vocab = len(SPECIALS) + len(WORDS) + 1
    # init range 0.1 (BERT uses 0.02): every layer visibly changes the outputs, and it still trains well
    common = dict(vocab_size=vocab, num_labels=num_labels, pad_token_id=0, initializer_range=init_range)
    if arch == "distilbert":
        return tf.DistilBertConfig(dim=32, hidden_dim=64, n_layers=layers, n_heads=2, max_position_embeddings=160, **common)
    cls = {"bert": tf.BertConfig, "roberta": tf.RobertaConfig, "electra": tf.ElectraConfig, "mpnet": tf.MPNetConfig}[arch]
    kw = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=2,
              max_position_embeddings=160, **common)
    if arch == "electra":
        kw["embedding_size"] = 32
    if arch == "roberta":
        kw.update(bos_token_id=2, eos_token_id=3)
    return cls(**kw)


def build_tiny_model(arch: str, folder: Path, layers: int = 4, num_labels: int = 2, seed: int = 0) -> Path:
    """Save a tiny random ``AutoModelForSequenceClassification`` + tokenizer to ``folder``."""
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(tiny_config(arch, layers, num_labels))
    model.save_pretrained(folder)
    make_tokenizer(folder).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """{arch: folder} of tiny 4-layer models, built once per test session."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: build_tiny_model(arch, root / arch) for arch in ARCHS}


def sentence(rng: random.Random, good: bool) -> str:
    words = rng.sample(WORDS[:40], rng.randint(3, 9))
    words.insert(rng.randrange(len(words) + 1), "good" if good else "bad")
    return " ".join(words) + " ."


def write_cola(folder: Path, n_train: int = 96, n_dev: int = 48, seed: int = 0) -> Path:
    """A CoLA-layout folder (headerless 4-column TSV) whose label is learnable: 'good' vs 'bad'."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        rows = []
        for i in range(n):
            label = i % 2
            rows.append(f"src{i % 3}\t{label}\t{'' if label else '*'}\t{sentence(rng, bool(label))}")
        (folder / name).write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture
def cola_dir(tmp_path) -> Path:
    return write_cola(tmp_path / "glue" / "CoLA")


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 900):
    """Run the real ``glp-bench`` CLI in a subprocess; returns CompletedProcess (text)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "glp_bench.cli", *args], capture_output=True, text=True,
        env=full_env, cwd=cwd, timeout=timeout,
    )


def assert_clean_error(proc, fragment: str, code: int = 2) -> None:
    """One clear error line, the expected exit status, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("glp-bench: error:")]
    assert len(errors) == 1, proc.stderr
    assert fragment.lower() in errors[0].lower(), errors[0]


GOLDEN = Path(__file__).resolve().parent / "golden"


def pytest_addoption(parser):
    parser.addoption("--regen-golden", action="store_true",
                     help="rewrite the golden files under tests/golden from the current output; the golden tests then "
                     "fail (a run with it never passes): review the diff, then run again without it")


def check_golden_text(name: str, text: str, regen: bool = False) -> None:
    """``text`` must equal ``tests/golden/<name>``; with ``regen`` the file is rewritten and the test fails."""
    import difflib

    path = GOLDEN / name
    if regen:
        path.write_text(text, encoding="utf-8")
        pytest.fail(f"{name} regenerated; review 'git diff {path}' and run again without --regen-golden")
    assert path.is_file(), f"{path} is missing; create it with 'pytest --regen-golden'"
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), f"expected {name}", "got"))
        pytest.fail(f"{name} differs from the golden file ('pytest --regen-golden' to accept):\n{diff}")


@pytest.fixture
def assert_golden(request):
    """``assert_golden(name, text)``: compare with the golden file (``--regen-golden`` rewrites it, and fails)."""
    regen = bool(request.config.getoption("--regen-golden"))
    return lambda name, text: check_golden_text(name, text, regen)


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


gpu = pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")


SCHEMAS = Path(__file__).resolve().parent / "schemas"


def assert_schema(doc_or_path, name: str) -> dict:
    """Validate a versioned JSON document (a dict or a file) against ``tests/schemas/<name>.schema.json``."""
    import jsonschema

    doc = json.loads(Path(doc_or_path).read_text()) if isinstance(doc_or_path, str | Path) else doc_or_path
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    return doc
