"""``python -m glp_runtime predict BUNDLE``: classify lines of stdin, one JSON object per line on stdout.

Input (``--format``):

* ``text``: one example per line; for pair tasks the two texts separated by a tab;
* ``jsonl``: one JSON value per line, any form ``glp_runtime.inputs`` accepts (a string, a list, an
  object with the task's field names or ``"text"``/``"text_pair"``; other fields are ignored);
* ``auto`` (default): a line starting with ``{`` or ``[`` is JSON, any other line is text.

Output: for every input line, in order, ``{"line": n, "label": ..., "label_id": ..., "scores": {...},
"truncated": bool}`` (``"score"`` for regression), or ``{"line": n, "error": "..."}`` for a line that
cannot be classified (not UTF-8, malformed JSON, wrong fields): the other lines are still classified, a
summary goes to stderr and the exit status is 1. Blank lines (empty or whitespace only, a trailing one
included) are not inputs: they are skipped without output, and ``line`` stays the line's number in the
input. Lines are read and classified in chunks of ``--chunk`` lines (sorted by length inside a chunk, in
batches of ``--batch-size``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO, TextIO

from .bundle import InputError

FORMATS = ("auto", "text", "jsonl")
DEFAULT_CHUNK = 4096


def decode_line(line: bytes | str, n: int) -> str:
    """Line ``n`` as text: bytes must be UTF-8 (InputError naming the first bad byte); a BOM on line 1 goes."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"the line is not UTF-8 text (byte 0x{line[e.start]:02x} at byte {e.start + 1}); "
                             "send UTF-8") from None
    return line.removeprefix("\ufeff") if n == 1 else line


def is_blank(line: bytes | str) -> bool:
    return not line.strip()


def parse_line(line: str, fmt: str, n_texts: int) -> object:
    """The input object of one (non-blank) line, before ``normalize``; InputError for malformed JSON."""
    line = line.rstrip("\r\n")
    if not line.strip():
        raise InputError("blank line; there is nothing to classify")
    if fmt == "jsonl" or (fmt == "auto" and line.lstrip()[:1] in ("{", "[")):
        try:
            return json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"malformed JSON ({e.msg} at column {e.colno})") from None
    if n_texts == 2:
        parts = line.split("\t")
        if len(parts) != 2:
            raise InputError(f"a pair task needs two texts separated by one tab, got {len(parts)} field(s)")
        return parts
    return line


def chunks(lines: Iterable[bytes | str], size: int) -> Iterator[list[tuple[int, bytes | str]]]:
    """(line number, line) of the non-blank lines, ``size`` at a time."""
    chunk: list[tuple[int, bytes | str]] = []
    for n, line in enumerate(lines, start=1):
        if is_blank(line):
            continue
        chunk.append((n, line))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predict_stream(classifier, stdin: IO, stdout: TextIO, fmt: str = "auto", batch_size: int | None = None,
                   chunk: int = DEFAULT_CHUNK, return_logits: bool = False) -> tuple[int, int]:
    """Classify ``stdin`` (text or bytes) line by line into ``stdout``; returns (inputs, inputs with errors)."""
    total = errors = 0
    n_texts = len(classifier.text_keys)
    for part in chunks(stdin, chunk):
        results: dict[int, dict] = {}
        good: list[tuple[int, tuple[str, ...]]] = []
        for n, line in part:
            try:
                good.append((n, classifier.normalize(parse_line(decode_line(line, n), fmt, n_texts))))
            except InputError as e:
                results[n] = {"line": n, "error": str(e)}
        preds = classifier.predict([t for _, t in good], batch_size=batch_size, return_logits=return_logits)
        for (n, _), pred in zip(good, preds, strict=True):
            results[n] = {"line": n, **pred}
        for n, _ in part:
            stdout.write(json.dumps(results[n], ensure_ascii=False) + "\n")
        stdout.flush()
        total += len(part)
        errors += len(part) - len(good)
    return total, errors


def main(args, clf) -> int:
    stdin = getattr(sys.stdin, "buffer", sys.stdin)  # bytes: each line decoded alone (decode_line)
    total, errors = predict_stream(clf, stdin, sys.stdout, args.format, args.batch_size, args.chunk, args.logits)
    if total == 0:
        print("glp-runtime: error: no input on stdin (blank lines are skipped); pipe one text per line (or JSON lines) into the command",
              file=sys.stderr)
        return 2
    if errors:
        print(f"glp-runtime: {errors} of {total} line(s) could not be classified (see their \"error\" field)",
              file=sys.stderr)
        return 1
    return 0
