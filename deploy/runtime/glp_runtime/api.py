"""The HTTP API of a served bundle, apart from any HTTP server: what the standalone server (``server.py``,
standard library) and the Ray Serve deployment (``ray_serve.py``) both answer, with the same statuses and
messages. Every check raises :class:`RequestError` (status, message); the caller sends
``{"error": message}`` with that status.

    GET  /health    {"status": "ok", "task", "provider", "model": {...}, "uptime_s", "stats": {...}}
    GET  /info      the bundle's summary: labels, text keys, max length, expected dev score, latency
    POST /predict   body: one input or {"inputs": [input, ...]} (forms as in glp_runtime.inputs)
                    -> {"predictions": [...]} in input order

Checks, in order: the route (404 unknown path, 405 wrong method), the Host header (421 a name that is not
this server's, see :class:`HostCheck`), the Content-Type (415 unless ``application/json``), the length
(411 none or chunked, 400 bad, 413 over the body limit), the body (400 not UTF-8, malformed JSON, nested
deeper than ``MAX_DEPTH``, wrong fields, invalid Unicode; 413 more inputs than the limit).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable

from .bundle import InputError

DEFAULT_MAX_BODY = 1 << 20  # bytes
DEFAULT_MAX_INPUTS = 256
DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_WAIT_MS = 2.0
DEFAULT_MAX_PENDING = 64  # requests admitted at once (reading, waiting, running); more: 503
MAX_DEPTH = 32  # JSON nesting accepted in a body (inputs need 3: {"inputs": [[a, b]]})
ROUTES = {"/health": "GET", "/info": "GET", "/predict": "POST"}
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
ALLOW = "GET, POST"


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_route(method: str, path: str) -> None:
    """404 for an unknown path, 405 for a method the path does not serve."""
    if method not in ("GET", "POST"):
        raise RequestError(405, f"{method} is not served; use GET /health, GET /info or POST /predict")
    want = ROUTES.get(path)
    if want is None:
        if method == "POST":
            raise RequestError(404, f"POST {path} is not served; use POST /predict")
        raise RequestError(404, f"no such endpoint {path!r}; use GET /health, GET /info or POST /predict")
    if method != want:
        raise RequestError(405, "use POST /predict with a JSON body" if path == "/predict"
                           else f"POST {path} is not served; use POST /predict")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, int | None]:
    """``name[:port]`` / ``[v6]:port`` -> (lower-case name, port or None); ValueError for a bad port."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, port = value.split(":")
    else:
        name, port = value, ""
    return name, (int(port) if port else None)


class HostCheck:
    """Only Host headers naming this server are served: ``localhost``, ``127.0.0.1``, ``::1``, the bound
    host (unless a wildcard) and every ``--allowed-host`` name, with the bound port or none. A page a
    browser loads from another site that resolves its own name to this machine (DNS rebinding) sends its
    own name and gets 421. ``*`` among the allowed names turns the check off."""

    def __init__(self, bind_host: str, port: int, allowed: Iterable[str] = ()):
        allowed = [a.strip().lower() for a in allowed]
        self.any = "*" in allowed
        names = {*LOOPBACK_NAMES, *(split_host(a)[0] for a in allowed if a != "*")}
        if bind_host not in ("", "0.0.0.0", "::"):
            names.add(split_host(bind_host)[0])
        self.names, self.port = names, int(port)

    def check(self, value: str | None, http11: bool = True) -> None:
        if self.any:
            return
        if value is None:  # HTTP/1.0 clients may omit it (a browser never does)
            if http11:
                raise RequestError(400, "an HTTP/1.1 request needs a Host header")
            return
        try:
            name, port = split_host(value)
        except ValueError:
            raise RequestError(400, f"bad Host header {value!r}") from None
        if name not in self.names or (port is not None and port != self.port):
            raise RequestError(421, f"this server does not answer for Host {value!r}; use "
                               f"http://127.0.0.1:{self.port} or start it with --allowed-host NAME")


def check_content_type(value: str | None) -> None:
    """415 unless ``application/json`` (parameters such as charset allowed): a browser can POST text/plain
    or a form to any site without asking first, but not JSON."""
    media = (value or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        got = f"got {value!r}" if value else "none was sent"
        raise RequestError(415, f"POST /predict needs Content-Type: application/json ({got})")


def check_length(content_length: str | None, transfer_encoding: str | None, max_body: int) -> int:
    """The body length to read: 411 chunked or missing, 400 bad, 413 over ``max_body``, 400 empty."""
    if "chunked" in (transfer_encoding or "").lower():
        raise RequestError(411, "chunked bodies are not supported; send a Content-Length")
    if content_length is None:
        raise RequestError(411, "a Content-Length header is required")
    try:
        n = int(content_length)
        if n < 0:
            raise ValueError
    except ValueError:
        raise RequestError(400, f"bad Content-Length {content_length!r}") from None
    if n > max_body:
        raise RequestError(413, f"the body has {n} bytes; the limit is {max_body} (--max-body-bytes)")
    if n == 0:
        raise RequestError(400, "the body is empty; send a JSON input")
    return n


def nesting_depth(obj: object) -> int:
    """How deeply lists and objects nest in ``obj`` (iterative: no recursion limit to hit)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict | list):
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:
                stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return deepest


def decode_body(body: bytes) -> object:
    """The JSON of a request body (RequestError 400 for undecodable, malformed or too deeply nested JSON)."""
    too_deep = f"the JSON is nested deeper than {MAX_DEPTH} levels; send {{\"inputs\": [...]}} of texts"
    try:
        obj = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError(400, "the body is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise RequestError(400, f"malformed JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise RequestError(400, too_deep) from None
    if nesting_depth(obj) > MAX_DEPTH:
        raise RequestError(400, too_deep)
    return obj


def parse_request(obj: object, classifier, max_inputs: int) -> list[tuple[str, ...]]:
    """The inputs of a /predict body (RequestError 400/413 naming what is wrong)."""
    if isinstance(obj, dict) and "inputs" in obj:
        items = obj["inputs"]
        if not isinstance(items, list):
            raise RequestError(400, f'"inputs" must be a list, got {type(items).__name__}')
        if not items:
            raise RequestError(400, '"inputs" is empty; send at least one input')
        if len(items) > max_inputs:
            raise RequestError(413, f"{len(items)} inputs in one request; the limit is {max_inputs} (--max-inputs)")
        out = []
        for i, item in enumerate(items):
            try:
                out.append(classifier.normalize(item))
            except InputError as e:
                raise RequestError(400, f"inputs[{i}]: {e}") from None
        return out
    try:
        return [classifier.normalize(obj)]
    except InputError as e:
        raise RequestError(400, str(e)) from None


def health(summary: dict, provider: str, uptime_s: float, stats: dict) -> dict:
    m = summary["model"]
    return {"status": "ok", "task": summary["task"], "provider": provider,
            "model": {k: m.get(k) for k in ("name", "depth", "original_depth", "variant") if k in m},
            "uptime_s": round(uptime_s, 3), "stats": stats}


def encode(obj: dict) -> bytes:
    """A response body (lone surrogates in echoed input escaped, not a crash)."""
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "backslashreplace")


def overload(limit: int) -> RequestError:
    return RequestError(503, f"the server is busy ({limit} requests in progress, --max-pending); retry shortly")


def not_loopback_warning(host: str) -> str | None:
    """The warning for a server reachable from other machines (None on a loopback address)."""
    if is_loopback(host):
        return None
    return (f"--host {host} serves every machine that can reach this one, without authentication or TLS; "
            "put it behind a proxy that has them, and name the host clients use with --allowed-host")


def announce(host: str, summary: dict, provider: str, where: str) -> None:
    """What both servers print once they listen: the non-loopback warning (stderr), then the one line saying
    what is served ``where`` (stdout; scripts wait for "serving")."""
    import sys

    warning = not_loopback_warning(host)
    if warning:
        print(f"glp-runtime: warning: {warning}", file=sys.stderr, flush=True)
    m = summary["model"]
    print(f"glp-runtime: serving {summary['task']} ({m.get('name')}, depth {m.get('depth')}, {m.get('variant')}, "
          f"{provider}) {where}", flush=True)
