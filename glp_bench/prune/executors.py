"""Where the fine-tunes of a prune run happen: in this process (``local``) or as Ray tasks (``ray``).

Both executors have the same small interface, used by ``glp_bench.commands.prune``:

* ``device`` (the torch device the fine-tunes run on), ``slots`` (how many run at once), ``describe()``;
* ``load(pruner)``: take the run's ``glp_bench.prune.workload.Workload`` (Ray: ``ray.put`` it once);
* ``calibrate() -> examples/s`` of the full model, for the time estimate;
* ``scores(jobs)`` with ``jobs = [(key, Workload.score keyword arguments)]`` yields ``(key, score record)`` as
  they finish (candidates, the recipe sweep's points); ``score_many(removed, candidates, **options)`` is the
  hook of ``glp_bench.prune.search.greedy_search`` built on it;
* ``run_finals(jobs)`` with ``jobs = [(key, {"removed": [...], "seed": s, "save": bool})]`` yields ``(key,
  record, staged folder or None)`` as final models finish; the caller moves a folder into place with
  ``Pruner.install``. A job with ``save`` false (an extra seed) only scores.

The driver (this process) stays the only writer of the run directory: Ray workers return score records and,
for final models, the bytes of the files they saved in a private temporary folder; the driver writes them.
The manifest is the same whichever executor filled it, and a run resumes with either.

Ray (``pip install 'glp-bench[ray]'``; imported only when chosen):

* ``address=None`` starts a local Ray instance (dashboard off, temporary files in Ray's default ``/tmp/ray``)
  and stops it at the end; ``auto`` or ``HOST:PORT`` joins a running cluster (``ray start --head``); the CLI
  takes ``RAY_ADDRESS`` from the environment when ``--ray-address`` is not given.
* Joining a cluster, a tiny task on every node that can run fine-tunes first imports glp-bench and its
  dependencies there (pickled by value, so it loads without glp-bench) and compares versions: a node without
  glp-bench stops the run before any work, with the fix.
* Data and the base model reach the workers through the object store (``load``: one ``ray.put`` of the
  Workload with the tokenized splits in memory), never through paths: the nodes share no file system.
* Each task asks for one GPU when the cluster has GPUs (and ``--device`` is not ``cpu``), else for
  ``cpus_per_task`` CPUs; torch in the worker uses exactly ``cpus_per_task`` threads.
* Retries are glp-bench's (Ray's own are off, as they are invisible to the driver): a task whose worker
  process or node was lost is submitted again, up to ``max_retries`` times, and the run log says so
  (``ray: candidate 'drop layer 3' of GLP step 1: worker lost (NodeDiedError), retried (attempt 2 of 4)``);
  an exception raised by the fine-tune itself is not retried (with fixed seeds it would fail the same way
  again). When a task fails for good, the tasks still running are collected first (their results are
  saved), then the run stops with one clear error.
* Determinism: every fine-tune draws from the run's seed alone, so a task gives the same numbers wherever it
  runs. On CPU, float results do depend on torch's thread count (reductions are split differently; the
  differences are ~1e-8 but can flip a near-tie). A Ray run therefore equals, bit for bit, a local run whose
  torch uses ``cpus_per_task`` threads (``OMP_NUM_THREADS=1 glp-bench prune ...`` for the default of 1).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

from ..core.errors import DeviceError, ExecutorError

EXECUTORS = ("local", "ray")
RAY_DEVICES = ("auto", "cpu", "cuda")
INSTALL_HINT = "pip install 'glp-bench[ray]'"


@dataclass(frozen=True)
class ExecutorSpec:
    """Which executor, and its options (``--executor``, ``--ray-*``). Not part of a run's config: a run may be
    resumed with another executor."""

    kind: str = "local"
    address: str | None = None  # Ray: None starts a local instance; "auto" or "HOST:PORT" joins a cluster
    cpus_per_task: int = 1  # Ray: CPUs (and torch threads) per task when the tasks run on CPU
    max_retries: int = 3  # Ray: re-runs of a task whose worker or node died
    address_from: str = "--ray-address"  # where ``address`` came from (or RAY_ADDRESS), for messages


def import_ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT} "
                            "(or use --executor local)") from None
    return ray


def parse_address(address: str, source: str = "--ray-address") -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port). Pure."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ExecutorError(f"{source} {address!r} is not auto or HOST:PORT (e.g. 10.0.0.1:6379, the "
                            "address 'ray start --head' prints)")
    return host.strip("[]"), int(port)


def check_spec(spec: ExecutorSpec, device: str) -> None:
    """Cheap checks before any weights are loaded: Ray importable, the address reachable, sane numbers."""
    if spec.kind not in EXECUTORS:
        raise ExecutorError(f"unknown executor {spec.kind!r}; choose from {', '.join(EXECUTORS)}")
    if spec.kind == "local":
        return
    if spec.cpus_per_task < 1:
        raise ExecutorError(f"--ray-cpus-per-task must be at least 1, got {spec.cpus_per_task}")
    if spec.max_retries < 0:
        raise ExecutorError(f"--ray-max-retries must be 0 or more, got {spec.max_retries}")
    if device not in RAY_DEVICES:
        raise DeviceError(f"--device {device!r} with --executor ray: use auto, cpu or cuda (Ray assigns the GPUs)")
    if spec.address and spec.address.startswith("ray://"):
        raise ExecutorError(f"{spec.address_from} {spec.address!r}: Ray Client (ray://) is not supported; run glp-bench on "
                            "a node of the cluster with --ray-address auto or HOST:PORT")
    import_ray()
    if spec.address not in (None, "auto"):
        host, port = parse_address(spec.address, spec.address_from)
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as e:
            leave = "unset RAY_ADDRESS" if spec.address_from == "RAY_ADDRESS" else "leave --ray-address out"
            raise ExecutorError(f"cannot reach a Ray cluster at {spec.address} ({spec.address_from}: "
                                f"{e.strerror or e}); start one with 'ray start --head' and pass the address it "
                                f"prints, or {leave} to start a local Ray instance") from None


def _label(key) -> str:
    """``(name, seed)`` of a final job as text."""
    return f"{key[0]} (seed {key[1]})" if isinstance(key, tuple) and key[1] is not None else str(key[0])


class LocalExecutor:
    """One fine-tune after the other, in this process (torch threads as configured for this process)."""

    slots = 1

    def __init__(self, device: str):
        from .train import resolve_device

        self.device = resolve_device(device)
        self.pruner = None

    def describe(self) -> str:
        return f"local ({self.device})"

    def load(self, pruner) -> None:
        self.pruner = pruner

    def calibrate(self) -> float:
        return self.pruner.work.calibrate()

    def scores(self, jobs) -> Iterator[tuple]:
        for key, kw in jobs:
            yield key, self.pruner.work.score(progress=self.pruner.progress, **kw)

    def score_many(self, removed: tuple[int, ...], candidates: list[int], **options) -> Iterator[tuple[int, dict]]:
        return self.scores([(c, {"removed": removed, "candidate": c, **options}) for c in candidates])

    def run_finals(self, jobs) -> Iterator[tuple]:
        for key, kw in jobs:
            staged = self.pruner.staging_dir(key[0]) if kw.get("save", True) else None
            record = self.pruner.work.final(kw["removed"], staged, self.pruner.progress,
                                            description=f"  final {_label(key)}", seed=kw.get("seed"))
            yield key, record, staged

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
