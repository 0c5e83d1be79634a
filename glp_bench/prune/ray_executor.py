"""The Ray executor: candidates of a step and the final fine-tunes as Ray tasks on a local instance or a cluster
(``glp_bench.prune.executors`` describes the executor interface, the spec and the checks made before work)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from ..core.errors import ExecutorError, GlpError
from .executors import INSTALL_HINT, ExecutorSpec, _label, import_ray

# --- Ray tasks (module-level functions: workers import them by name; their arguments are small, the
# Workload arrives as an object-store reference that Ray resolves) -----------------------------------------

def _prepare_worker(threads: int) -> None:
    import os

    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(threads)
    try:
        import datasets
        import transformers

        transformers.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover
        pass


def _score_task(work, kw: dict, threads: int) -> dict:
    _prepare_worker(threads)
    return work.score(**kw)


def _final_task(work, kw: dict, threads: int) -> tuple[dict, dict[str, bytes] | None]:
    import tempfile

    _prepare_worker(threads)
    if not kw.get("save", True):
        return work.final(kw["removed"], None, seed=kw.get("seed")), None
    with tempfile.TemporaryDirectory(prefix="glp-bench-final-") as tmp:
        out = Path(tmp) / "model"
        record = work.final(kw["removed"], out, seed=kw.get("seed"))
        files = {f.name: f.read_bytes() for f in sorted(out.iterdir()) if f.is_file()}
    return record, files


def _calibrate_task(work, threads: int) -> float:
    _prepare_worker(threads)
    return work.calibrate()


def _in_memory(dataset):
    """A dataset whose rows travel with it (a memory-mapped cache file exists on this node only)."""
    return dataset.flatten_indices(keep_in_memory=True) if dataset.cache_files else dataset


PROBE_MODULES = ("glp_bench", "glp_bench.prune.workload", "torch", "transformers", "datasets")
PROBE_TIMEOUT_S = 180


def _make_probe():
    """The node check's task, defined in a function so that Ray pickles it by value (a module-level function
    would need glp-bench on the worker just to be loaded)."""

    def probe(modules):
        import importlib
        import sys

        for name in modules:
            try:
                importlib.import_module(name)
            except Exception as e:  # noqa: BLE001 (anything that stops the import)
                return {"python": sys.executable, "missing": name, "error": f"{type(e).__name__}: {e}"}
        return {"python": sys.executable, "version": getattr(sys.modules["glp_bench"], "__version__", None)}

    return probe


def _auth_failed(e: BaseException) -> bool:
    """Whether a failed ``ray.init`` was refused for its authentication token (somewhere in the chain)."""
    seen = 0
    while e is not None and seen < 10:
        if type(e).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(e):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class RayExecutor:
    """Candidates of a step, and all final fine-tunes, as Ray tasks (module docstring)."""

    def __init__(self, spec: ExecutorSpec, device: str):
        self.spec = spec
        self.ray = ray = import_ray()
        self.where = spec.address or "a local Ray instance"
        self.owned = False
        if not ray.is_initialized():  # (a caller that already joined a cluster, e.g. a test, keeps it)
            kwargs = dict(log_to_driver=False, logging_level=logging.ERROR)
            try:
                if spec.address is None:
                    ray.init(address="local", include_dashboard=False, **kwargs)
                else:
                    ray.init(address=spec.address, **kwargs)
            except ConnectionError as e:
                if _auth_failed(e):
                    raise ExecutorError(f"the Ray cluster at {spec.address} refused this process's token (token "
                                        "authentication); set RAY_AUTH_MODE=token and the cluster's token in "
                                        "RAY_AUTH_TOKEN (or ~/.ray/auth_token), as on its nodes") from None
                raise ExecutorError(f"cannot join the Ray cluster at {spec.address} ({_first_line(e)}); start one with "
                                    "'ray start --head' or leave --ray-address out to start a local Ray instance") from None
            self.owned = True
        try:
            self._resolve_resources(device)
            if not (self.owned and spec.address is None):  # workers of a cluster may lack glp-bench
                self._check_nodes()
        except BaseException:
            self.close()
            raise
        # max_retries=0: a lost task is resubmitted by _gather, which logs it (Ray's own retries are silent)
        opts = dict(max_retries=0, retry_exceptions=False, num_cpus=spec.cpus_per_task,
                    num_gpus=1 if self.use_gpu else 0)
        self._score = ray.remote(**opts)(_score_task)
        self._final = ray.remote(**opts)(_final_task)
        self._calibrate = ray.remote(**opts)(_calibrate_task)
        self.work_ref = None
        self.run_path = None
        self.progress = None

    def _resolve_resources(self, device: str) -> None:
        nodes = [n["Resources"] for n in self.ray.nodes() if n.get("Alive")]
        gpus = sum(int(r.get("GPU", 0)) for r in nodes)
        cpt = self.spec.cpus_per_task
        if device == "cuda" and not gpus:
            raise ExecutorError(f"--device cuda but {self.where} has no GPU; use --device cpu or auto, or add GPU nodes")
        self.use_gpu = device != "cpu" and gpus > 0
        self.device = "cuda" if self.use_gpu else "cpu"
        if self.use_gpu:
            self.slots = sum(min(int(r.get("GPU", 0)), int(r.get("CPU", 0) // cpt)) for r in nodes)
        else:
            self.slots = sum(int(r.get("CPU", 0) // cpt) for r in nodes)
        if self.slots < 1:
            largest = max((int(r.get("CPU", 0)) for r in nodes), default=0)
            need = f"{cpt} CPU(s)" + (" and a GPU" if self.use_gpu else "")
            raise ExecutorError(f"no node of {self.where} has the {need} one task asks for (largest node: {largest} "
                                "CPUs); lower --ray-cpus-per-task or add nodes")

    def _task_nodes(self) -> list[dict]:
        cpt = self.spec.cpus_per_task
        return [n for n in self.ray.nodes() if n.get("Alive") and int(n["Resources"].get("CPU", 0)) >= cpt
                and (not self.use_gpu or n["Resources"].get("GPU", 0) >= 1)]

    def _check_nodes(self) -> None:
        """Before any work: a tiny task on every node that can run fine-tunes imports glp-bench and its
        dependencies there, and reports their version (the task is pickled by value: it needs no glp-bench)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from .. import __version__

        probe = self.ray.remote(num_cpus=0, max_retries=1)(_make_probe())
        nodes = self._task_nodes()
        refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
                              name="glp-check-node").remote(PROBE_MODULES) for n in nodes]
        try:
            answers = self.ray.get(refs, timeout=PROBE_TIMEOUT_S)
        except self.ray.exceptions.GetTimeoutError:
            raise ExecutorError(f"the nodes of {self.where} did not answer a {PROBE_TIMEOUT_S} s check (a task that "
                                "imports glp-bench); check that their workers start ('ray status', the nodes' "
                                "raylet logs), then re-run") from None
        except self.ray.exceptions.RayError as e:
            raise ExecutorError(f"checking the nodes of {self.where} failed ({_first_line(e)}); check the cluster "
                                "with 'ray status', then re-run") from None
        install = f"install glp-bench {__version__} ({INSTALL_HINT}, the version of this machine) on every node"
        for node, got in zip(nodes, answers, strict=True):
            where = f"Ray node {node.get('NodeManagerAddress', '?')} of {self.where} (python {got['python']})"
            if got.get("missing"):
                raise ExecutorError(f"{got['missing']} cannot be imported on {where}: {got['error']}; {install} of "
                                    "the cluster, then re-run")
            if got["version"] != __version__:
                raise ExecutorError(f"{where} has glp-bench {got['version']}, this machine {__version__}; {install} "
                                    "of the cluster, then re-run")

    def describe(self) -> str:
        per = "1 GPU" if self.use_gpu else f"{self.spec.cpus_per_task} CPU"
        return f"ray ({self.where}: {self.slots} tasks of {per} at once, {self.device})"

    def load(self, pruner) -> None:
        """Put the pre-trained model, tokenizer and tokenized splits in the object store, once."""
        work = pruner.work
        assert work.device == self.device, (work.device, self.device)
        work = replace(work, fit=_in_memory(work.fit), held=_in_memory(work.held), train=_in_memory(work.train),
                       dev={k: _in_memory(v) for k, v in work.dev.items()})
        self.pruner, self.run_path, self.progress = pruner, pruner.run.path, pruner.progress
        self.work_ref = self.ray.put(work)

    def calibrate(self) -> float:
        task = self._calibrate.options(name="glp-calibrate")
        for _, value in self._gather([(None, "the calibration fine-tune",
                                       lambda: task.remote(self.work_ref, self.spec.cpus_per_task))]):
            return value
        raise AssertionError("unreachable")  # pragma: no cover

    def scores(self, jobs) -> Iterator[tuple]:
        todo = []
        for key, kw in jobs:
            c, step = kw.get("candidate"), len(kw.get("removed", ())) + 1
            what = (f"candidate 'drop layer {c}' of GLP step {step}" if c is not None
                    else f"recipe sweep point lr {kw.get('lr'):g}")
            task = self._score.options(name=f"glp-candidate-s{step}-l{c}" if c is not None else "glp-recipe")
            if kw.get("resume"):  # paused states travel by value (the nodes share no file system)
                from .workload import load_state

                kw = {**kw, "resume": {s: load_state(p) for s, p in kw["resume"].items()}}
            todo.append((key, what, self._submitter(task, kw)))
        yield from self._gather(todo)

    def score_many(self, removed: tuple[int, ...], candidates: list[int], **options) -> Iterator[tuple[int, dict]]:
        return self.scores([(c, {"removed": tuple(removed), "candidate": c, **options}) for c in candidates])

    def run_finals(self, jobs) -> Iterator[tuple]:
        todo = [(key, f"final fine-tune of {_label(key)}",
                 self._submitter(self._final.options(name=f"glp-final-{key[0]}"), kw)) for key, kw in jobs]
        for key, (record, files) in self._gather(todo):
            staged = None
            if files is not None:
                staged = self.pruner.staging_dir(key[0])
                staged.mkdir()
                for fname, data in files.items():
                    (staged / fname).write_bytes(data)
            yield key, record, staged

    def _submitter(self, task, kw: dict):
        return lambda: task.remote(self.work_ref, dict(kw), self.spec.cpus_per_task)

    def _say(self, text: str) -> None:
        """A line in the run's log (stderr), above the live bars on a terminal."""
        console = getattr(self.progress, "console", None)
        if console is not None:
            console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def _gather(self, todo: list[tuple]) -> Iterator:
        """Submit ``todo`` = [(key, label, submit)] and yield ``(key, result)`` as they finish. A task whose
        worker or node was lost is submitted again, up to ``max_retries`` times, with a log line naming it (the
        same seeds: the same result). A task that failed for good does not stop the others: they are collected
        first, then the first failure is raised."""
        ray = self.ray
        lost = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError)
        labels = {submit(): (key, label, submit, 1) for key, label, submit in todo}
        pending, failures = list(labels), []
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    key, label, submit, attempt = labels.pop(ref)
                    try:
                        value = ray.get(ref)
                    except lost as e:
                        if attempt > self.spec.max_retries:
                            failures.append((label, e))
                            continue
                        again = submit()
                        labels[again] = (key, label, submit, attempt + 1)
                        pending.append(again)
                        self._say(f"ray: {label}: worker lost ({type(e).__name__}), retried (attempt {attempt + 1} "
                                  f"of {self.spec.max_retries + 1})")
                        continue
                    except ray.exceptions.RayError as e:
                        failures.append((label, e))
                        continue
                    yield key, value
        finally:  # the caller stopped early (an error, Ctrl-C): do not leave tasks running
            for ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 (already finished or gone)
                    pass
        if failures:
            raise self._failure(failures)

    def _failure(self, failures: list[tuple[str, BaseException]]) -> GlpError:
        label, e = failures[0]
        cause = getattr(e, "cause", None) if isinstance(e, self.ray.exceptions.RayTaskError) else None
        if isinstance(cause, GlpError):
            return cause
        if cause is not None:
            what = f"raised {type(cause).__name__}: {_first_line(cause)}"
        else:
            what = (f"failed {self.spec.max_retries + 1} time(s) on {self.where} ({type(e).__name__}: "
                    f"{_first_line(e)}; retries: --ray-max-retries)")
        more = f"; {len(failures) - 1} other task(s) failed too" if len(failures) > 1 else ""
        saved = f"{self.run_path}/manifest.json" if self.run_path else "the run directory"
        return ExecutorError(f"{label} {what}{more}; finished work is saved in {saved}: re-run the same command "
                             "to resume (with --executor ray or local)")

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
        self.owned = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
