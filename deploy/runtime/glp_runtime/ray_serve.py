"""``glp-runtime serve BUNDLE --ray --replicas N [--ray-address ADDR]``: the bundle's Classifier as a Ray
Serve deployment, with the standalone server's HTTP API (``glp_runtime.api``: the same routes, checks,
statuses and messages) and Serve's request batching (``@serve.batch``).

Each replica loads and verifies the bundle itself and classifies the inputs of the requests Serve batched
together in one ``Classifier.predict`` call, so the batch-invariance rule is the standalone server's: an
int8 bundle runs each input alone. Each replica reserves one CPU and runs one intra-op thread unless
``--threads`` says otherwise. ``/health`` reports the answering replica's stats. Serve's own queue
bound answers 503 past ``--max-pending`` requests per replica.

Needs Ray Serve (``pip install 'glp-runtime[ray]'``); the standalone server needs nothing of it. Without
``--ray-address`` a local Ray instance is started (and stopped on exit); with it, the deployment joins an
existing cluster, whose nodes need glp-runtime's dependencies (onnxruntime, tokenizers, numpy, onnx): the
package itself is shipped with the deployment (``runtime_env`` ``py_modules``), and the bundle folder must
be readable at the same path on the nodes that run replicas.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path

from . import api
from .api import RequestError

APP_NAME = "glp-runtime"
INSTALL_HINT = "install Ray Serve: pip install 'glp-runtime[ray]' (or 'glp-bench[ray]')"
CONNECT_TIMEOUT_S = 5.0


class RayServeError(Exception):
    """Ray Serve cannot be used as asked (not installed, cluster unreachable, too few CPUs)."""


def import_serve():
    """(ray, ray.serve), or RayServeError with the install hint."""
    try:
        import ray
        from ray import serve
    except ImportError as e:
        raise RayServeError(f"--ray needs Ray Serve, which cannot be imported ({e}); {INSTALL_HINT}") from None
    return ray, serve


class Replica:
    """One Serve replica: a verified Classifier behind the API of ``glp_runtime.api``. ``make_app`` deploys
    a subclass whose ``_run_batch`` is ``serve.batch``-wrapped: called with one request's inputs, it returns
    that request's predictions."""

    def __init__(self, bundle: str, provider: str | None, threads: int | None, batch_size: int | None,
                 max_body: int, max_inputs: int, host: str, port: int, allowed_hosts: list[str]):
        from .classifier import Classifier

        self.clf = Classifier.load(bundle, provider=provider, threads=threads, batch_size=batch_size)
        self.max_body, self.max_inputs = int(max_body), int(max_inputs)
        self.hosts = api.HostCheck(host, port, allowed_hosts)
        self.summary = self.clf.bundle.summary()
        self.started = time.monotonic()
        self.stats = {"requests": 0, "inputs": 0, "batches": 0, "largest_batch": 0, "errors": 0}

    def _classify(self, jobs: list[list[tuple[str, ...]]]) -> list[list[dict]]:
        items = [x for j in jobs for x in j]
        try:
            preds = self.clf.predict(items)
        except Exception:
            self.stats["errors"] += len(jobs)
            raise
        s = self.stats
        s["requests"] += len(jobs)
        s["inputs"] += len(items)
        s["batches"] += 1
        s["largest_batch"] = max(s["largest_batch"], len(items))
        out, start = [], 0
        for j in jobs:
            out.append(preds[start:start + len(j)])
            start += len(j)
        return out

    async def _run_batch(self, jobs: list[list[tuple[str, ...]]]) -> list[list[dict]]:
        """The requests Serve batched, classified in one call (off the event loop: /health stays answered)."""
        return await asyncio.to_thread(self._classify, jobs)

    def health(self) -> dict:
        return api.health(self.summary, self.clf.provider, time.monotonic() - self.started, dict(self.stats))

    async def __call__(self, request):
        from starlette.responses import Response

        def answer(status: int, obj: dict, headers: dict | None = None):
            return Response(api.encode(obj), status_code=status, media_type="application/json; charset=utf-8",
                            headers=headers)

        method, path = request.method, request.url.path
        try:
            api.check_route(method, path)
            self.hosts.check(request.headers.get("host"), http11=request.scope.get("http_version") == "1.1")
            if method == "GET":
                return answer(200, self.health() if path == "/health" else self.summary)
            api.check_content_type(request.headers.get("content-type"))
            n = api.check_length(request.headers.get("content-length"), request.headers.get("transfer-encoding"),
                                 self.max_body)
            body = await request.body()
            if len(body) < n:
                raise RequestError(400, f"the body ended after {len(body)} of {n} bytes")
            items = api.parse_request(api.decode_body(body), self.clf, self.max_inputs)
            preds = await self._run_batch(items)
            return answer(200, {"predictions": preds})
        except RequestError as e:
            headers = {"Allow": api.ALLOW} if e.status == 405 and method not in ("GET", "POST") else None
            return answer(e.status, {"error": str(e)}, headers)
        except Exception as e:  # noqa: BLE001 - one failed request must not stop the replica
            return answer(500, {"error": f"internal error: {type(e).__name__}: {e}"})


def make_app(bundle: str | Path, *, replicas: int = 1, provider: str | None = None, threads: int | None = None,
             batch_size: int | None = None, max_batch: int = api.DEFAULT_MAX_BATCH,
             max_wait_ms: float = api.DEFAULT_MAX_WAIT_MS, max_body_bytes: int = api.DEFAULT_MAX_BODY,
             max_inputs: int = api.DEFAULT_MAX_INPUTS, max_pending: int = api.DEFAULT_MAX_PENDING,
             host: str = "127.0.0.1", port: int = 8000, allowed_hosts=(), cpus_per_replica: float = 1.0,
             runtime_env: dict | None = None):
    """The bound Serve application (``serve.run`` it) of ``replicas`` replicas of the bundle."""
    _, serve = import_serve()

    class GlpRuntime(Replica):
        _run_batch = serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=max_wait_ms / 1000.0)(
            Replica._run_batch)

    options = {"num_cpus": cpus_per_replica}
    if runtime_env:
        options["runtime_env"] = runtime_env
    deployment = serve.deployment(GlpRuntime, name="Classifier", num_replicas=replicas, ray_actor_options=options,
                                  max_ongoing_requests=max(max_pending, max_batch), max_queued_requests=max_pending)
    return deployment.bind(str(Path(bundle).resolve()), provider, threads, batch_size, max_body_bytes, max_inputs,
                           host, port, list(allowed_hosts))


def check_address(address: str) -> None:
    """RayServeError unless ``address`` (``host:port`` or ``ray://host:port``; ``auto`` is Ray's) accepts a
    TCP connection within a few seconds: ``ray.init`` would otherwise retry for a minute."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayServeError(f"--ray-address {address!r} is not HOST:PORT (or ray://HOST:PORT, or auto)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        raise RayServeError(f"cannot reach the Ray cluster at {address} ({e.strerror or e}); start it with "
                            "'ray start --head' or pass the head's address (ray status prints it)") from None


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port(host: str, port: int) -> None:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, port))
    except OSError as e:
        raise RayServeError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port") from None


def main(args, clf) -> int:
    """Deploy ``args.bundle`` (already verified and loaded here as ``clf``) and serve until interrupted."""
    ray, serve = import_serve()
    if args.ray_address:
        check_address(args.ray_address)
    port = args.port or free_port(args.host)
    check_port(args.host, port)
    local = not args.ray_address
    runtime_env = None if local else {"py_modules": [str(Path(__file__).resolve().parent)]}
    try:
        ray.init(address=args.ray_address or None, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    except Exception as e:  # noqa: BLE001 - ConnectionError, RuntimeError, ...: all mean no cluster
        raise RayServeError(f"cannot start or join Ray ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                            "check --ray-address and that the cluster's Ray version matches this one") from None
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        cpus = float(ray.cluster_resources().get("CPU", 0))
        if cpus < args.replicas:
            raise RayServeError(f"--replicas {args.replicas} needs {args.replicas} CPUs (one per replica); the Ray "
                                f"cluster has {cpus:g}: pass --replicas {max(1, int(cpus))} or add nodes")
        serve.start(http_options={"host": args.host, "port": port})
        threads = args.threads if args.threads is not None else 1  # one CPU per replica: one intra-op thread
        app = make_app(args.bundle, replicas=args.replicas, provider=args.provider, threads=threads,
                       batch_size=args.batch_size, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                       max_body_bytes=args.max_body_bytes, max_inputs=args.max_inputs, max_pending=args.max_pending,
                       host=args.host, port=port, allowed_hosts=args.allowed_host, runtime_env=runtime_env)
        serve.run(app, name=APP_NAME, route_prefix="/")
        api.announce(args.host, clf.bundle.summary(), clf.provider,
                     f"on Ray Serve, {args.replicas} replica(s), at http://{args.host}:{port}")
        while not stop["now"]:
            time.sleep(0.2)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if local:
                serve.shutdown()
            else:
                serve.delete(APP_NAME)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        ray.shutdown()
    return 0
