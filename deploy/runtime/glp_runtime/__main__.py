"""``python -m glp_runtime`` / ``glp-runtime``: verify a bundle, classify stdin, or serve over HTTP.

    glp-runtime verify BUNDLE                       check every file's sha256; print what the bundle is
    glp-runtime predict BUNDLE < texts.txt          one JSON result per input line (see predict.py)
    glp-runtime serve BUNDLE --port 8000            HTTP server with batching (see server.py)
    glp-runtime serve BUNDLE --ray --replicas 2     the same API on Ray Serve (see ray_serve.py)

Exit status: 0 ok; 1 some input lines could not be classified; 2 unusable bundle or arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import __version__
from .bundle import BundleError
from .ray_serve import RayServeError  # Ray itself is imported only with serve --ray


def _number(convert, ok, what: str, show_value: bool = True):
    """An argparse type: ``convert(text)`` that must satisfy ``ok``; errors say ``expected <what>``."""

    def parse(text: str):
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(v):  # NaN fails every comparison
            raise argparse.ArgumentTypeError(f"expected {what}, got {v if show_value else repr(text)}")
        return v

    return parse


_positive = _number(int, lambda v: v >= 1, "a positive integer")
_non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_port = _number(int, lambda v: 0 <= v <= 65535, "a port from 0 to 65535 (0 = any free port)", show_value=False)
_wait_ms = _number(float, lambda v: 0 <= v <= 10_000, "milliseconds from 0 to 10000", show_value=False)


def build_parser() -> argparse.ArgumentParser:
    from .api import (
        DEFAULT_MAX_BATCH,
        DEFAULT_MAX_BODY,
        DEFAULT_MAX_INPUTS,
        DEFAULT_MAX_PENDING,
        DEFAULT_MAX_WAIT_MS,
    )
    from .predict import DEFAULT_CHUNK, FORMATS

    p = argparse.ArgumentParser(prog="glp-runtime", description=(
        "Classify text with a bundle written by 'glp-bench deploy' (onnxruntime + tokenizers + numpy only)."))
    p.add_argument("--version", action="version", version=f"glp-runtime {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(sp):
        sp.add_argument("bundle", help="the bundle folder written by 'glp-bench deploy --out'")
        sp.add_argument("--provider", default=None,
                        help="cpu, cuda or tensorrt (or an ONNX Runtime provider name); default: the bundle's target's")
        sp.add_argument("--threads", type=_non_negative_int, default=None,
                        help="intra-op threads, at most this machine's CPUs (0 = ONNX Runtime's default); default: the "
                             "bundle's target's, lowered to the CPUs with a warning")
        sp.add_argument("--batch-size", type=_positive, default=None,
                        help="inputs per model call, sorted by length (default: the bundle's, 64)")

    v = sub.add_parser("verify", help="check the bundle's files against their sha256 and print its summary")
    v.add_argument("bundle")
    pr = sub.add_parser("predict", help="classify stdin (text lines or JSON lines) into JSON lines on stdout")
    common(pr)
    pr.add_argument("--format", choices=FORMATS, default="auto",
                    help="text (one example per line; pairs tab-separated), jsonl, or auto: lines starting "
                         "with { or [ are JSON (default)")
    pr.add_argument("--chunk", type=_positive, default=DEFAULT_CHUNK,
                    help=f"lines read and classified at a time (default {DEFAULT_CHUNK})")
    pr.add_argument("--logits", action="store_true", help="add the raw logits to every result")
    sv = sub.add_parser("serve", help="HTTP server: GET /health, GET /info, POST /predict")
    common(sv)
    sv.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1: this machine only; another address warns)")
    sv.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0 = any free port)")
    sv.add_argument("--max-batch", type=_positive, default=DEFAULT_MAX_BATCH,
                    help=f"most inputs the batcher joins into one model call (default {DEFAULT_MAX_BATCH})")
    sv.add_argument("--max-wait-ms", type=_wait_ms, default=DEFAULT_MAX_WAIT_MS,
                    help=f"how long the batcher waits for more requests (default {DEFAULT_MAX_WAIT_MS:g} ms)")
    sv.add_argument("--max-body-bytes", type=_positive, default=DEFAULT_MAX_BODY,
                    help=f"largest request body accepted (default {DEFAULT_MAX_BODY}); larger: HTTP 413")
    sv.add_argument("--max-inputs", type=_positive, default=DEFAULT_MAX_INPUTS,
                    help=f"most inputs in one request (default {DEFAULT_MAX_INPUTS}); more: HTTP 413")
    sv.add_argument("--max-pending", type=_positive, default=DEFAULT_MAX_PENDING,
                    help=f"most requests in progress at once (default {DEFAULT_MAX_PENDING}); more: HTTP 503")
    sv.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                    help="a Host name clients may use besides localhost, 127.0.0.1, ::1 and --host (repeatable; "
                         "'*' = any); other Host headers get HTTP 421")
    sv.add_argument("--access-log", action="store_true", help="log every request to stderr")
    sv.add_argument("--ray", action="store_true",
                    help="serve on Ray Serve (same HTTP API, Serve's batching; needs pip install 'glp-runtime[ray]')")
    sv.add_argument("--replicas", type=_positive, default=None,
                    help="with --ray: replicas of the model, one CPU each (default 1)")
    sv.add_argument("--ray-address", default=None, metavar="ADDR",
                    help="with --ray: an existing Ray cluster (HOST:PORT, ray://HOST:PORT or auto); default: "
                         "start a local Ray instance")
    return p


def verify(args) -> int:
    from .bundle import load_bundle

    bundle = load_bundle(args.bundle)
    print(json.dumps({"ok": True, "files": bundle.manifest["files"], **bundle.summary()}, indent=2))
    return 0


def check_args(parser: argparse.ArgumentParser, args) -> None:
    """What argparse's types cannot check alone (exit 2 through ``parser.error``)."""
    from .limits import available_cpus

    if args.command == "serve" and not args.ray:
        for opt in ("replicas", "ray_address"):
            if getattr(args, opt) is not None:
                parser.error(f"argument --{opt.replace('_', '-')}: needs --ray (Ray Serve)")
    if args.command == "serve" and args.ray:
        args.replicas = args.replicas or 1
    cpus = available_cpus()
    if getattr(args, "threads", None) is not None and args.threads > cpus:
        parser.error(f"argument --threads: {args.threads} exceeds the {cpus} CPU(s) this process may use; "
                     f"pass at most {cpus} (0 = ONNX Runtime's default)")


def load_classifier(args):
    """The bundle's Classifier with the command's overrides; what was adjusted to this machine is printed."""
    from .classifier import Classifier

    clf = Classifier.load(args.bundle, provider=args.provider, threads=args.threads, batch_size=args.batch_size)
    for note in clf.warnings:
        print(f"glp-runtime: warning: {note}", file=sys.stderr)
    return clf


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    try:
        if args.command == "verify":
            return verify(args)
        if args.command == "predict":
            from .predict import main as run
        elif args.ray:
            from .ray_serve import import_serve
            from .ray_serve import main as run

            import_serve()  # before loading the bundle: the install hint first
        else:
            from .server import main as run
        return run(args, load_classifier(args))
    except (BundleError, RayServeError) as e:
        print(f"glp-runtime: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("glp-runtime: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `... | head`: the reader left, nothing to report
        return 0


if __name__ == "__main__":
    sys.exit(main())
