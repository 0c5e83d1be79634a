"""What counts as one input to classify, for the Python API, the ``predict`` command and the server.

One input is the text (or, for pair tasks such as MRPC or RTE, the two texts) of one example:

* a string (single-sentence tasks);
* a list ``[text, text_pair]`` (pair tasks) or ``[text]``;
* an object with the task's own field names (``{"sentence": ...}``, ``{"sentence1": ..., "sentence2":
  ...}``) or with ``"text"`` (and ``"text_pair"`` for pairs). Other fields (an id, a gold label) are ignored.

Empty or blank texts and non-strings are refused with ``InputError``: a classifier has nothing to say
about them. Long texts are fine: the tokenizer truncates them to the bundle's max length.
"""

from __future__ import annotations

from collections.abc import Sequence

from .bundle import InputError


def normalize(item: object, text_keys: Sequence[str]) -> tuple[str, ...]:
    """``item`` as a tuple of ``len(text_keys)`` non-empty strings, or InputError saying what is wrong."""
    n = len(text_keys)
    if isinstance(item, str):
        if n != 1:
            raise InputError(f"this model classifies pairs of texts ({text_keys[0]}, {text_keys[1]}); "
                             f'pass [text, text_pair] or {{"{text_keys[0]}": ..., "{text_keys[1]}": ...}}')
        texts: tuple = (item,)
    elif isinstance(item, list | tuple):
        if len(item) != n:
            raise InputError(f"expected {n} text{'s' if n > 1 else ''} ({', '.join(text_keys)}), got a list of {len(item)}")
        texts = tuple(item)
    elif isinstance(item, dict):
        if all(k in item for k in text_keys):
            texts = tuple(item[k] for k in text_keys)
        elif "text" in item and (n == 1 or "text_pair" in item):
            texts = (item["text"],) if n == 1 else (item["text"], item["text_pair"])
        else:
            wanted = " and ".join(f'"{k}"' for k in text_keys)
            alt = '"text"' if n == 1 else '"text" and "text_pair"'
            raise InputError(f"an input object needs {wanted} (or {alt}); got keys {sorted(map(str, item))}")
    else:
        raise InputError(f"an input must be a string, a list of strings or an object, got {type(item).__name__}")
    for key, text in zip(text_keys, texts, strict=True):
        if not isinstance(text, str):
            raise InputError(f"{key} must be a string, got {type(text).__name__}")
        if not text.strip():
            raise InputError(f"{key} is empty; there is nothing to classify")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{key} is not valid Unicode text (it holds a lone surrogate such as \\ud800); "
                             "send UTF-8 text") from None
    return texts
