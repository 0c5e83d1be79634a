"""The real CLI: --help, tasks, finetune end to end, and every bad input of the foundation."""

from __future__ import annotations

import json

import pytest

from .conftest import assert_clean_error, run_cli, write_cola


def test_help_lists_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ("tasks", "finetune", "prune"):
        assert cmd in proc.stdout


def test_tasks_table():
    proc = run_cli("tasks")
    assert proc.returncode == 0
    for name in ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "matthews_correlation"):
        assert name in proc.stdout


def test_finetune_end_to_end(tiny_models, tmp_path):
    cola_dir = write_cola(tmp_path / "glue" / "CoLA", n_train=256)
    out = tmp_path / "ft"
    proc = run_cli("finetune", "--task", "cola", "--model", str(tiny_models["bert"]), "--data-dir", str(cola_dir.parent),
                   "--out", str(out), "--epochs", "6", "--lr", "2e-3", "--batch-size", "16", "--drop-layers", "1,2")
    assert proc.returncode == 0, proc.stderr
    scores = json.loads((out / "scores.json").read_text())
    assert scores["format"] == "glp-bench-finetune" and scores["version"] == 1
    assert scores["kept_layers"] == [0, 3]
    assert scores["dev_scores"]["matthews_correlation"] > 0.7
    assert f"{scores['dev_scores']['matthews_correlation']:.4f}" in proc.stdout
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 2 and cfg["glp_kept_layers"] == [0, 3]
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "tokenizer.json").is_file()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--task", "colaa"], "unknown task 'colaa'"),
        (["--data-dir", "{tmp}/missing"], "does not exist"),
        (["--data-dir", "{tmp}"], "no cola data in"),
        (["--model", "{tmp}/no-model"], "does not exist"),
        (["--data-dir", "{file}"], "is a file, not a folder"),
        (["--model", "{file}"], "is a file, not a folder"),
        (["--model", "{tmp}"], "no config.json"),
        (["--model", "{weightless}"], "no weights"),
        (["--model", "{albert}"], "unsupported architecture 'albert'"),
        (["--drop-layers", "1,1"], "duplicates"),
        (["--drop-layers", "0,1,2,3"], "no encoder layer"),
        (["--drop-layers", "9"], "not in the model's layers"),
        (["--drop-layers", "x"], "comma-separated"),
        (["--device", "cuda"], "no cuda gpu"),
    ],
)
def test_bad_inputs_one_clear_line_exit_2(args, fragment, tiny_models, cola_dir, tmp_path):
    import torch
    from transformers import AlbertConfig, AlbertForSequenceClassification

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    (weightless / "config.json").write_text((tiny_models["bert"] / "config.json").read_text())
    albert = tmp_path / "albert"
    AlbertForSequenceClassification(AlbertConfig(vocab_size=80, hidden_size=16, num_hidden_layers=2,
                                                 num_attention_heads=2, intermediate_size=32)).save_pretrained(albert)
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    subst = {"{tmp}": str(tmp_path / "empty"), "{weightless}": str(weightless), "{albert}": str(albert),
             "{file}": str(tmp_path / "a-file")}
    args = [subst.get(a, a).replace("{tmp}", str(tmp_path / "empty")) for a in args]
    base = {"--task": "cola", "--model": str(tiny_models["bert"]), "--data-dir": str(cola_dir)}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    flat = [x for kv in base.items() for x in kv]
    proc = run_cli("finetune", *flat, "--out", str(tmp_path / "out"), "--epochs", "0.1")
    assert_clean_error(proc, fragment)


@pytest.mark.parametrize(
    "command, args",
    [
        ("prune", ["--lr", "-1"]),
        ("prune", ["--search-lr", "0"]),
        ("prune", ["--search-epochs", "0"]),
        ("prune", ["--epochs", "nan"]),
        ("prune", ["--search-samples", "-5"]),
        ("prune", ["--ray-cpus-per-task", "0"]),
        ("finetune", ["--lr", "abc"]),
        ("finetune", ["--batch-size", "0"]),
    ],
)
def test_bad_numbers_are_refused_before_any_work(command, args, cola_dir, tmp_path):
    out = ["--run", str(tmp_path / "run")] if command == "prune" else ["--out", str(tmp_path / "run")]
    proc = run_cli(command, "--task", "cola", "--data-dir", str(cola_dir), *out, *args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"argument {args[0]}:" in errors[0], proc.stderr
    assert not (tmp_path / "run").exists()  # nothing was started


def test_unexpected_exception_is_one_line_exit_3(monkeypatch, capsys):
    from glp_bench import cli
    from glp_bench.commands import tasks

    def broken(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(tasks, "run", broken)
    monkeypatch.delenv("GLP_BENCH_DEBUG", raising=False)
    assert cli.main(["tasks"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("glp-bench: internal error: RuntimeError: boom (")
    monkeypatch.setenv("GLP_BENCH_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["tasks"])


RUN_COMMANDS = ("prune", "prune-and-export", "export", "latency", "report", "deploy")


def test_every_run_directory_command_names_it_run_and_keeps_the_old_spelling():
    from glp_bench.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in RUN_COMMANDS:
        options = sub.choices[name]._option_string_actions
        assert "--run" in options and "--run-dir" in options, name
        assert options["--run"] is options["--run-dir"], f"{name}: --run-dir must be the same option as --run"


@pytest.mark.parametrize("command", ["prune", "prune-and-export"])
def test_prune_out_names_the_run_option(command, cola_dir, tmp_path):
    proc = run_cli(command, "--task", "cola", "--data-dir", str(cola_dir), "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"use --run {tmp_path / 'x'}" in errors[0], proc.stderr
    assert not (tmp_path / "x").exists()
