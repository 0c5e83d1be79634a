"""The Ray executor on a real local Ray instance (2 CPUs, shared by the module) against the local executor:
same layers chosen, same scores, same model files; a killed worker is retried; a task that keeps dying stops
the run with one clear error, keeps the finished candidates, and the run resumes with the local executor.
Bad input (Ray missing, unreachable cluster, no matching resources) is one error line, exit 2."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import assert_clean_error, build_tiny_model, cuda_available, run_cli, write_cola

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # a Ray task with --ray-cpus-per-task 1 runs torch on 1 thread


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray instance for the module (2 CPUs, no dashboard); CLI runs join it with --ray-address."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-inputs")
    return build_tiny_model("bert", root / "bert6", layers=6), write_cola(root / "CoLA")


def _args(inputs, run_dir, *extra, device="cpu"):
    model, data = inputs
    # 2 GLP steps (6 + 5 candidates) and the top baseline; 4 epochs keep each task running long enough
    # (~0.5 s) for a test to see and kill its worker
    return ["prune", "--task", "cola", "--model", str(model), "--data-dir", str(data), "--budget", "smoke",
            "--lr", "1e-3", "--search-epochs", "4", "--epochs", "4", "--strategy", "glp,top", "--min-depth", "4",
            "--run", str(run_dir), "--device", device, *extra]


def _manifest(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    """The local executor's run, torch on one thread."""
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    proc = run_cli(*_args(inputs, run_dir), env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    return _manifest(run_dir)


def _results(m):
    """Everything a run computes (not timings): per-step candidate scores, choices, orders, models' scores
    and file hashes."""
    steps = [{"removed": s["removed"], "chosen": s["chosen"],
              "candidates": {k: {f: v[f] for f in ("score", "loss", "metrics")} for k, v in s["candidates"].items()}}
             for s in m["strategies"]["glp"]["steps"]]
    models = {n: {k: r[k] for k in ("depth", "kept_layers", "strategies", "dev_scores", "path", "files")}
              for n, r in m["models"].items()}
    return steps, {s: (r["order"], r["models"]) for s, r in m["strategies"].items()}, models


class Killer(threading.Thread):
    """SIGKILLs, up to ``times`` times, a Ray worker of this test process while it runs a task whose name
    starts with ``prefix`` (Ray titles a busy worker process ``ray::<task name>``)."""

    def __init__(self, prefix: str, times: int):
        super().__init__(daemon=True)
        self.prefix, self.times, self.killed, self.stop = f"ray::{prefix}", times, [], threading.Event()

    def _ours(self, pid: int) -> bool:  # a descendant of this process (our Ray instance's raylet)
        while pid > 1:
            try:
                pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                return False
            if pid == os.getpid():
                return True
        return False

    def run(self):
        while not self.stop.is_set() and len(self.killed) < self.times:
            # os.listdir, not Path.glob: glob stats each entry, and a process that exits in between raised
            # ProcessLookupError out of the loop (the thread died, the test saw no kill)
            for pid in (int(n) for n in os.listdir("/proc") if n.isdigit()):
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                title = cmd.split(b"\0")[0].decode(errors="replace").split(" ")[0]
                if title.startswith(self.prefix) and pid not in self.killed and self._ours(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        continue
                    self.killed.append(pid)
                    break
            time.sleep(0.01)


def test_ray_run_with_a_killed_worker_equals_local_run(ray_address, inputs, reference, tmp_path):
    run_dir = tmp_path / "ray"
    killers = [Killer("glp-candidate-s2-", 1), Killer("glp-final-depth-05", 1)]  # one candidate, one final
    for k in killers:
        k.start()
    proc = run_cli(*_args(inputs, run_dir, "--executor", "ray", "--ray-address", ray_address))
    for k in killers:
        k.stop.set()
        k.join()
    assert proc.returncode == 0, proc.stderr
    assert [len(k.killed) for k in killers] == [1, 1], "the workers to kill were never seen running"
    said = " ".join(proc.stderr.split())  # the plan line, unwrapped
    assert f"executor ray ({ray_address}: 2 tasks of 1 CPU at once, cpu)" in said
    m = _manifest(run_dir)
    assert _results(m) == _results(reference)  # same layers, same scores, byte-identical model files
    assert m.keys() == reference.keys() and m["config"] == reference["config"]  # the same manifest contract
    for rec in m["models"].values():  # the driver wrote every model folder
        assert (run_dir / rec["path"] / "model.safetensors").stat().st_size == rec["files"]["model.safetensors"]["size"]
    assert not list(run_dir.glob("*/.model.tmp-*"))


def test_task_that_keeps_dying_fails_the_run_then_resumes_locally(ray_address, inputs, reference, tmp_path):
    run_dir = tmp_path / "ray"
    killer = Killer("glp-candidate-s1-l2", 2)  # the first try and its one retry
    killer.start()
    proc = run_cli(*_args(inputs, run_dir, "--executor", "ray", "--ray-address", ray_address, "--ray-max-retries", "1"))
    killer.stop.set()
    killer.join()
    assert len(killer.killed) == 2
    assert_clean_error(proc, "candidate 'drop layer 2' of GLP step 1 failed 2 time(s)")
    assert "re-run the same command to resume" in proc.stderr
    partial = _manifest(run_dir)
    step1 = partial["strategies"]["glp"]["steps"][0]
    assert sorted(step1["candidates"]) == ["0", "1", "3", "4", "5"] and step1["chosen"] is None  # the others kept
    ref1 = reference["strategies"]["glp"]["steps"][0]["candidates"]
    assert all(step1["candidates"][k]["score"] == ref1[k]["score"] for k in step1["candidates"])

    resumed = run_cli(*_args(inputs, run_dir), env=ONE_THREAD)  # another executor resumes the run
    assert resumed.returncode == 0, resumed.stderr
    m = _manifest(run_dir)
    assert "(5 done)" in " ".join(resumed.stderr.split())
    for k, rec in step1["candidates"].items():  # finished candidates were not redone
        assert m["strategies"]["glp"]["steps"][0]["candidates"][k] == rec
    assert _results(m) == _results(reference)


def test_ray_executor_in_process_matches_local_and_unwraps_errors(ray_address, inputs, tmp_path):
    """The executor interface directly: score_many yields every candidate once with the local executor's
    numbers; an error raised inside a task comes back as the same GlpError, not a Ray traceback."""
    import torch

    from glp_bench.core.errors import SurgeryError
    from glp_bench.core.rundir import RunDir
    from glp_bench.prune.executors import ExecutorSpec, LocalExecutor
    from glp_bench.prune.plan import make_plan
    from glp_bench.prune.ray_executor import RayExecutor
    from glp_bench.prune.stage import Pruner

    model, data = inputs
    plan = make_plan("cola", str(model), str(data), ["glp"], "smoke", lr=1e-3, device="cpu")
    pruner = Pruner(plan, RunDir(tmp_path / "run"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = LocalExecutor("cpu")
        local.load(pruner)
        expected = dict(local.score_many((4,), [0, 1, 2, 3, 5]))
    finally:
        torch.set_num_threads(threads)
    with RayExecutor(ExecutorSpec("ray"), "cpu") as ex:
        assert not ex.owned and ex.device == "cpu" and ex.slots == 2  # joined this process's instance
        ex.load(pruner)
        got = list(ex.score_many((4,), [0, 1, 2, 3, 5]))
        assert sorted(c for c, _ in got) == [0, 1, 2, 3, 5]
        for c, rec in got:
            assert (rec["score"], rec["loss"], rec["metrics"]) == (expected[c]["score"], expected[c]["loss"],
                                                                    expected[c]["metrics"])
        with pytest.raises(SurgeryError, match="not in the model's layers"):
            list(ex.score_many((4,), [9]))  # no layer 9: the worker's own error


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_cluster_and_bad_options(inputs, tmp_path):
    pytest.importorskip("ray")
    run_dir = tmp_path / "r"
    proc = run_cli(*_args(inputs, run_dir, "--executor", "ray", "--ray-address", f"127.0.0.1:{_free_port()}"))
    assert_clean_error(proc, "cannot reach a Ray cluster at 127.0.0.1:")
    assert_clean_error(run_cli(*_args(inputs, run_dir, "--executor", "ray", "--ray-address", "nonsense")),
                       "is not auto or HOST:PORT")
    assert_clean_error(run_cli(*_args(inputs, run_dir, "--ray-address", "auto")), "applies to --executor ray only")
    assert not run_dir.exists()


def test_no_matching_resources_on_a_fresh_local_instance(inputs, tmp_path):
    """The default address starts a local Ray instance (and stops it); no node has 64 CPUs."""
    pytest.importorskip("ray")
    proc = run_cli(*_args(inputs, tmp_path / "r", "--executor", "ray", "--ray-cpus-per-task", "64"))
    assert_clean_error(proc, "no node of a local Ray instance has the 64 CPU(s) one task asks for")
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(cuda_available(), reason="a GPU is present")
def test_cuda_on_a_cluster_without_gpus(ray_address, inputs, tmp_path):
    proc = run_cli(*_args(inputs, tmp_path / "r", "--executor", "ray", "--ray-address", ray_address, device="cuda"))
    assert_clean_error(proc, f"--device cuda but {ray_address} has no GPU")


def test_without_ray_installed(inputs, tmp_path):
    """With ``ray`` unimportable: --executor ray is one clear error; the local executor never imports it."""
    fake = tmp_path / "no-ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'ray' (hidden by the test)\")\n")
    env = {"PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])}
    assert_clean_error(run_cli(*_args(inputs, tmp_path / "r", "--executor", "ray"), env=env),
                       "needs ray, which is not installed: pip install 'glp-bench[ray]'")
    model, data = inputs
    proc = run_cli("prune", "--task", "cola", "--model", str(model), "--data-dir", str(data), "--budget", "smoke",
                   "--strategy", "top", "--min-depth", "5", "--run", str(tmp_path / "local"), "--device", "cpu",
                   env=env)
    assert proc.returncode == 0, proc.stderr
    assert _manifest(tmp_path / "local")["strategies"]["top"]["models"] == {"6": "depth-06", "5": "depth-05"}


def test_unreachable_ray_address_from_the_environment(inputs, tmp_path):
    """RAY_ADDRESS is the default of --ray-address (for --executor ray only); the error names where it came from."""
    pytest.importorskip("ray")
    env = {"RAY_ADDRESS": f"127.0.0.1:{_free_port()}"}
    proc = run_cli(*_args(inputs, tmp_path / "r", "--executor", "ray"), env=env)
    assert_clean_error(proc, f"cannot reach a Ray cluster at {env['RAY_ADDRESS']} (RAY_ADDRESS:")
    assert "unset RAY_ADDRESS" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_cluster_whose_workers_lack_glp_bench(inputs, tmp_path):
    """A Ray instance whose workers import a glp_bench that fails (PYTHONPATH of the workers): the node check
    stops the run before any work, with the fix; a resumed run keeps what it had."""
    pytest.importorskip("ray")
    shadow = tmp_path / "shadow" / "glp_bench"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'glp_bench' (hidden)\")\n")
    script = ("import logging, sys\nimport ray\n"
              "ray.init(address='local', num_cpus=1, include_dashboard=False, log_to_driver=False, "
              f"logging_level=logging.ERROR, runtime_env={{'env_vars': {{'PYTHONPATH': {str(shadow.parent)!r}}}}})\n"
              "from glp_bench.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    run_dir = tmp_path / "r"
    proc = subprocess.run([sys.executable, "-c", script, *_args(inputs, run_dir, "--executor", "ray")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**os.environ, "COLUMNS": "200"})
    assert_clean_error(proc, "glp_bench cannot be imported on Ray node ")
    from glp_bench import __version__

    assert "of a local Ray instance" in proc.stderr and f"install glp-bench {__version__}" in proc.stderr
    assert "on every node of the cluster" in proc.stderr
    assert not (run_dir / "manifest.json").exists()  # nothing was started


def test_lost_worker_is_retried_with_a_log_line_and_the_same_score(ray_address, inputs, tmp_path):
    """A candidate whose worker is killed is resubmitted by glp-bench (not silently by Ray): the log names it and
    its attempt, and the score equals an undisturbed one."""
    from glp_bench.core.rundir import RunDir
    from glp_bench.prune.executors import ExecutorSpec
    from glp_bench.prune.plan import make_plan
    from glp_bench.prune.ray_executor import RayExecutor
    from glp_bench.prune.stage import Pruner

    model, data = inputs
    plan = make_plan("cola", str(model), str(data), ["glp"], "smoke", lr=1e-3, device="cpu", search_epochs=4)
    pruner = Pruner(plan, RunDir(tmp_path / "run"))
    lines = []
    with RayExecutor(ExecutorSpec("ray", max_retries=2), "cpu") as ex:
        ex.load(pruner)
        ex._say = lines.append
        clean = dict(ex.score_many((), [1]))
        killer = Killer("glp-candidate-s1-l1", 1)
        killer.start()
        got = dict(ex.score_many((), [1]))
        killer.stop.set()
        killer.join()
    assert len(killer.killed) == 1, "the worker to kill was never seen running"
    assert lines == ["ray: candidate 'drop layer 1' of GLP step 1: worker lost (WorkerCrashedError), retried "
                     "(attempt 2 of 3)"]
    assert (got[1]["score"], got[1]["loss"]) == (clean[1]["score"], clean[1]["loss"])


def test_successive_halving_on_ray_equals_halving_locally(ray_address, inputs, tmp_path):
    """Paused states travel to the workers by value and back: the same rungs, stops and survivors' scores."""
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    a = run_cli(*_args(inputs, local, "--search-halving", "on"), env=ONE_THREAD)
    assert a.returncode == 0, a.stderr
    b = run_cli(*_args(inputs, on_ray, "--search-halving", "on", "--executor", "ray", "--ray-address", ray_address))
    assert b.returncode == 0, b.stderr
    ma, mb = _manifest(local), _manifest(on_ray)
    assert _results(mb) == _results(ma)
    rungs = [[{**r, "candidates": {k: (v["score"], v["loss"]) for k, v in r["candidates"].items()}}
              for r in s["halving"]["rungs"]] for s in (ma, mb) for s in [s["strategies"]["glp"]["steps"][0]]]
    assert rungs[0] == rungs[1] and rungs[0][0]["at"] == "1/3"
    assert not list(on_ray.glob("search/*/paused/*"))
