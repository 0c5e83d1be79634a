"""Issue 17: a resume never mixes base models or data (run identity), one writer per run directory (an
OS lock the second writer is refused by, naming the holder), and what a killed deploy leaves is cleaned."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO, assert_clean_error, build_tiny_model, run_cli, write_cola


def prune_argv(model, data, run_dir, *extra) -> list[str]:
    return ["prune", "--task", "cola", "--model", str(model), "--data-dir", str(data), "--budget", "smoke",
            "--lr", "1e-3", "--run", str(run_dir), "--device", "cpu", "--strategy", "top", *extra]


def start_run(argv: list[str]):
    """What 'glp-bench prune' does before its first fine-tune: prepare (checks, lock, identity) and create
    the manifest; then the lock is released so that other processes may open the run."""
    from glp_bench.cli import build_parser
    from glp_bench.commands import prune as prune_cmd

    plan, opened = prune_cmd.prepare(build_parser().parse_args(argv))
    with opened:
        run = opened.run
        if not run.exists():
            run.create(plan.config(2))
        else:
            run.save()
    return run


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, Path]:
    return build_tiny_model("bert", tmp_path / "m", layers=2), write_cola(tmp_path / "glue" / "CoLA", n_train=16, n_dev=8)


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def test_identity_is_recorded_and_an_unchanged_resume_passes(tiny, tmp_path):
    from glp_bench.core.jsonio import sha256_file

    model, data = tiny
    run = start_run(prune_argv(model, data, tmp_path / "run"))
    ident = manifest(run.path)["identity"]
    assert ident["model"]["source"] == "folder"
    assert ident["model"]["files"]["model.safetensors"]["sha256"] == sha256_file(model / "model.safetensors")
    assert {"config.json", "tokenizer.json", "vocab.txt"} <= set(ident["model"]["files"])
    assert ident["data"]["files"]["train"] == {"name": "train.tsv", "size": (data / "train.tsv").stat().st_size,
                                               "sha256": sha256_file(data / "train.tsv")}
    start_run(prune_argv(model, data, tmp_path / "run"))  # same inputs: resumes
    assert manifest(run.path)["identity"] == ident


@pytest.mark.parametrize("change, fragment", [
    ("weights", "base model file model.safetensors changed"),
    ("config", "base model file config.json changed"),
    ("vocab", "base model file vocab.txt changed"),
    ("train", "data file train.tsv changed"),
    ("dev", "data file dev.tsv changed"),
])
def test_resume_with_changed_model_or_data_is_refused(change, fragment, tiny, tmp_path):
    model, data = tiny
    run_dir = tmp_path / "run"
    start_run(prune_argv(model, data, run_dir))
    before = manifest(run_dir)
    if change == "weights":
        build_tiny_model("bert", model, layers=2, seed=1)  # other weights in the same folder
    elif change == "config":
        cfg = json.loads((model / "config.json").read_text())
        (model / "config.json").write_text(json.dumps({**cfg, "hidden_dropout_prob": 0.3}))
    elif change == "vocab":
        with open(model / "vocab.txt", "a") as f:
            f.write("extra\n")
    else:
        path = data / f"{change}.tsv"
        path.write_text(path.read_text().replace("\t1\t", "\t0\t", 1))
    proc = run_cli(*prune_argv(model, data, run_dir))
    assert_clean_error(proc, fragment)
    assert "--fresh" in proc.stderr
    assert manifest(run_dir) == before  # nothing touched
    # --fresh moves the old run aside and starts from the new inputs
    run = start_run(prune_argv(model, data, run_dir, "--fresh"))
    assert len(list(tmp_path.glob("run.bak-*"))) == 1
    assert manifest(run.path)["identity"] != before["identity"]


def test_run_without_identity_records_one_now(tiny, tmp_path):
    model, data = tiny
    run = start_run(prune_argv(model, data, tmp_path / "run"))
    m = manifest(run.path)
    ident = m.pop("identity")
    (run.path / "manifest.json").write_text(json.dumps(m))  # as written before identities existed
    start_run(prune_argv(model, data, tmp_path / "run"))
    assert manifest(run.path)["identity"] == ident


def test_differences_name_each_change():
    from glp_bench.data.identity import differences

    a = {"model": {"source": "hub", "id": "x/a", "files": {}},
         "data": {"source": "folder", "id": "/d", "files": {"train": {"name": "train.tsv", "size": 1, "sha256": "a"}}}}
    b = {"model": {"source": "hub", "id": "x/b", "files": {}}, "data": {"source": "folder", "id": "/d", "files": {}}}
    assert differences(a, a) == []
    assert differences(a, b) == ["base model was 'x/a', now 'x/b'", "data file train is gone"]


# --- one writer per run directory -----------------------------------------------------------------------
HOLD = "import sys; from glp_bench.core.runlock import acquire; acquire(sys.argv[1], 'glp-bench test-holder'); " \
       "print('held', flush=True); sys.stdin.read()"


def hold(run_dir: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, cwd=REPO)
    assert p.stdout.readline().strip() == "held"
    return p


def test_second_writer_is_refused_naming_the_holder_and_readers_are_not(tiny, tmp_path):
    model, data = tiny
    run_dir = tmp_path / "run"
    start_run(prune_argv(model, data, run_dir))
    holder = hold(run_dir)
    try:
        for argv in (prune_argv(model, data, run_dir), ["export", "--run", str(run_dir)],
                     ["latency", "--run", str(run_dir)]):
            proc = run_cli(*argv)
            assert_clean_error(proc, f"is being written by pid {holder.pid}")
            assert "test-holder" in proc.stderr
        # a reader is never blocked: report fails or succeeds on its own merits, not on the lock
        proc = run_cli("report", "--run", str(run_dir), "--format", "json")
        assert "being written" not in proc.stderr
    finally:
        holder.kill()  # kill -9: the OS drops the lock
        holder.wait()
    from glp_bench.core.runlock import acquire, release

    acquire(run_dir)
    release(run_dir)


def test_two_exports_at_once_one_refused_the_other_finishes(tmp_path):
    from tests.test_export import make_run

    run_dir = make_run(tmp_path, "bert", {4: [], 2: [1, 2]})
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "glp_bench.cli", "export", "--run", str(run_dir),
                              "--variants", "fp32,int8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    from glp_bench.core.runlock import holder

    deadline = time.monotonic() + 120
    while (holder(run_dir) or {}).get("pid") != first.pid:
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    second = run_cli("export", "--run", str(run_dir), "--variants", "fp32")
    still_running = first.poll() is None
    print("first export still running when the second was refused:", still_running)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    if still_running:  # (a first export faster than the second's start-up proves nothing)
        assert_clean_error(second, f"is being written by pid {first.pid}")
    m = manifest(run_dir)
    assert all(m["models"][n]["onnx"][v]["status"] == "ok" for n in ("depth-04", "depth-02") for v in ("fp32", "int8"))


def test_lock_file_sits_beside_the_run_and_fresh_keeps_it(tiny, tmp_path):
    from glp_bench.core.runlock import lock_path

    model, data = tiny
    run_dir = tmp_path / "run"
    start_run(prune_argv(model, data, run_dir))
    assert lock_path(run_dir) == tmp_path / ".run.lock" and lock_path(run_dir).is_file()
    assert not list(run_dir.glob("*.lock"))


# --- deploy: a killed deploy's leftovers ------------------------------------------------------------------
def test_clean_stale_removes_temp_folders_and_restores_a_half_replaced_bundle(tmp_path):
    from glp_bench.deploy.layout import clean_stale

    out = tmp_path / "bundle"
    (tmp_path / ".bundle.tmp-abc").mkdir()
    (tmp_path / ".bundle.tmp-abc" / "model.onnx").write_bytes(b"x")
    (tmp_path / ".bundle.old-123").mkdir()
    (tmp_path / ".bundle.old-123" / "bundle.json").write_text("{}")
    (tmp_path / ".other.tmp-1").mkdir()  # another bundle's: untouched
    clean_stale(out)
    assert (out / "bundle.json").read_text() == "{}"  # killed between the renames: the old bundle is back
    assert not (tmp_path / ".bundle.tmp-abc").exists() and (tmp_path / ".other.tmp-1").is_dir()
    (tmp_path / ".bundle.old-9").mkdir()
    clean_stale(out)
    assert not (tmp_path / ".bundle.old-9").exists() and (out / "bundle.json").is_file()


def test_killed_holder_releases_the_lock(tmp_path):
    from glp_bench.core.runlock import acquire, release

    p = hold(tmp_path / "run")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    path = acquire(tmp_path / "run")  # would raise RunDirError naming the dead holder if the OS kept its lock
    assert json.loads(path.read_text())["pid"] == os.getpid()
    release(tmp_path / "run")


def test_a_writer_cleans_what_a_killed_one_left(tiny, tmp_path):
    model, data = tiny
    run_dir = tmp_path / "run"
    start_run(prune_argv(model, data, run_dir))
    (run_dir / "depth-02" / "onnx" / ".export-abc").mkdir(parents=True)
    (run_dir / "depth-02" / "onnx" / ".export-abc" / "model.onnx").write_bytes(b"half")
    (run_dir / ".manifest.json.x1y2.tmp").write_text("{")
    keep = run_dir / "depth-02" / "onnx" / "model.onnx"
    keep.write_bytes(b"kept")
    start_run(prune_argv(model, data, run_dir))  # the next writer, under the lock
    assert not (run_dir / "depth-02" / "onnx" / ".export-abc").exists()
    assert not (run_dir / ".manifest.json.x1y2.tmp").exists() and keep.read_bytes() == b"kept"
