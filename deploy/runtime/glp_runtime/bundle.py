"""Reading and verifying a deployment bundle written by ``glp-bench deploy``.

A bundle is one folder (format ``glp-bench-bundle``, version 1)::

    bundle.json     the manifest: format, version, what the model is (task, depth, kept layers,
                    variant), the target it was chosen for, the expected dev score, the latency measured
                    on that target, and ``files``: {name: {"size": bytes, "sha256": hex}} of every other file
    runtime.json    what this runtime needs: task, label names, text keys, tokenizer settings (max
                    length, truncation, padding), the graph's inputs, session settings (providers, threads)
    model.onnx      the ONNX model (the variant chosen for the target)
    tokenizer.json  the fast tokenizer (Hugging Face ``tokenizers`` format)

``load_bundle`` refuses a folder that is not a bundle, a manifest of another format or a newer version,
a missing or unlisted required file, a file in the folder the manifest does not list, and any file whose
size or sha256 differs from the manifest:
a bundle is only served exactly as ``glp-bench deploy`` wrote it. (Checksums detect corruption and
incomplete copies; they are not a signature against someone who can also edit the manifest.)

Pure standard library: no numpy, onnxruntime or tokenizers needed to verify a bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

FORMAT = "glp-bench-bundle"
VERSION = 1
MANIFEST = "bundle.json"
RUNTIME = "runtime.json"
MODEL = "model.onnx"
TOKENIZER = "tokenizer.json"
REQUIRED = (RUNTIME, MODEL, TOKENIZER)

FIX = "re-copy the bundle or re-create it with 'glp-bench deploy'"


class BundleError(Exception):
    """A bundle that cannot be served: missing, incomplete, tampered with, or of an unknown format."""


class InputError(ValueError):
    """Input text the model cannot classify (empty, wrong type, wrong number of texts)."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict  # bundle.json
    runtime: dict  # runtime.json

    @property
    def labels(self) -> list[str]:
        return list(self.runtime["task"]["labels"])

    @property
    def text_keys(self) -> list[str]:
        return list(self.runtime["task"]["text_keys"])

    @property
    def is_regression(self) -> bool:
        return not self.runtime["task"]["labels"]

    @property
    def max_length(self) -> int:
        return int(self.runtime["tokenizer"]["max_length"])

    def file(self, name: str) -> Path:
        return self.path / name

    def summary(self) -> dict:
        """What /health and ``verify`` show: the model, its expected score and latency."""
        m = self.manifest
        return {
            "bundle": str(self.path),
            "task": self.runtime["task"]["name"],
            "labels": self.labels,
            "text_keys": self.text_keys,
            "max_length": self.max_length,
            "model": m.get("model", {}),
            "target": (m.get("target") or {}).get("name"),
            "expected": m.get("expected"),
            "latency": m.get("latency"),
        }


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path} is missing: the bundle is incomplete; {FIX}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path} is not valid JSON ({e}); the {what} is corrupt: {FIX}") from None
    except OSError as e:
        raise BundleError(f"cannot read {path}: {e.strerror}") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path} is not a JSON object; the {what} is corrupt: {FIX}")
    return data


def read_manifest(path: str | os.PathLike) -> dict:
    """``bundle.json`` of the bundle at ``path``, format and version checked (files not verified)."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path} is not a folder; pass the folder 'glp-bench deploy --out' wrote")
    if not (path / MANIFEST).is_file():
        raise BundleError(f"{path} is not a glp-bench bundle (no {MANIFEST}); pass the folder 'glp-bench deploy --out' wrote")
    manifest = _read_json(path / MANIFEST, "bundle manifest")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{path / MANIFEST} is not a {FORMAT} manifest (format {manifest.get('format')!r})")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= VERSION:
        raise BundleError(
            f"{path / MANIFEST} has bundle format version {version!r}; this glp-runtime reads up to {VERSION}: "
            "upgrade glp-runtime (pip install -U deploy/runtime) or re-deploy with a matching glp-bench"
        )
    return manifest


def verify_files(path: Path, manifest: dict) -> None:
    """Every file the manifest lists exists with its recorded size and sha256; the required ones are listed."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{path / MANIFEST} lists no files; the manifest is corrupt: {FIX}")
    unlisted = [name for name in REQUIRED if name not in files]
    if unlisted:
        raise BundleError(f"{path / MANIFEST} does not list {', '.join(unlisted)}; the manifest is incomplete: {FIX}")
    for name, rec in files.items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise BundleError(f"{path / MANIFEST} lists {name!r}, which is not a plain file name: {FIX}")
        if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str) or not isinstance(rec.get("size"), int):
            raise BundleError(f"{path / MANIFEST}: the record of {name} lacks size/sha256; the manifest is corrupt: {FIX}")
        f = path / name
        if not f.is_file():
            raise BundleError(f"{f} is missing: the bundle is incomplete; {FIX}")
        size = f.stat().st_size
        if size != rec["size"]:
            raise BundleError(
                f"{f} has {size} bytes, the manifest says {rec['size']}: the file was modified or truncated; {FIX}"
            )
        if sha256_file(f) != rec["sha256"].lower():
            raise BundleError(f"{f} does not match its sha256 in {MANIFEST}: the file was modified or is corrupt; {FIX}")
    extra = sorted(p.name for p in path.iterdir() if p.name != MANIFEST and p.name not in files)
    if extra:
        raise BundleError(f"{path} holds {', '.join(extra[:5])}, which {MANIFEST} does not list: the bundle was "
                          f"modified; remove {'them' if len(extra) > 1 else 'it'} or {FIX}")


def check_runtime(path: Path, rt: dict) -> None:
    """The fields of runtime.json this package relies on, with their types."""

    def bad(field: str, why: str) -> BundleError:
        return BundleError(f"{path / RUNTIME}: '{field}' {why}; the bundle is corrupt: {FIX}")

    task = rt.get("task")
    if not isinstance(task, dict):
        raise bad("task", "is missing")
    keys = task.get("text_keys")
    if not isinstance(keys, list) or len(keys) not in (1, 2) or not all(isinstance(k, str) for k in keys):
        raise bad("task.text_keys", "must list one or two names")
    labels = task.get("labels")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise bad("task.labels", "must be a list of names (empty for regression)")
    tok = rt.get("tokenizer")
    if not isinstance(tok, dict):
        raise bad("tokenizer", "is missing")
    ml = tok.get("max_length")
    if not isinstance(ml, int) or isinstance(ml, bool) or ml < 2:
        raise bad("tokenizer.max_length", "must be an integer >= 2")
    for k in ("pad_id", "pad_type_id"):
        if not isinstance(tok.get(k), int):
            raise bad(f"tokenizer.{k}", "must be an integer")
    session = rt.get("session", {})
    if not isinstance(session, dict) or not isinstance(session.get("providers", []), list):
        raise bad("session.providers", "must be a list of ONNX Runtime provider names")


def load_bundle(path: str | os.PathLike, verify: bool = True) -> Bundle:
    """Read and verify the bundle at ``path`` (``verify=False`` skips only the checksums)."""
    path = Path(path).expanduser()
    manifest = read_manifest(path)
    if verify:
        verify_files(path, manifest)
    else:
        missing = [n for n in REQUIRED if not (path / n).is_file()]
        if missing:
            raise BundleError(f"{path / missing[0]} is missing: the bundle is incomplete; {FIX}")
    runtime = _read_json(path / RUNTIME, "runtime settings file")
    check_runtime(path, runtime)
    return Bundle(path=path, manifest=manifest, runtime=runtime)
