"""JSON Lines (one JSON value per line), read strictly.

Lines are split on ``"\\n"`` only, as the JSON Lines format says: a raw U+2028/U+2029,
``\\x85``, ``\\x0c`` or ``\\r`` inside a JSON string is part of that string (``str.splitlines``
would split there). A trailing ``"\\r"`` (CRLF files) is whitespace to JSON. Every error names
the file and the 1-based line number. Reading is linear in the file size: a 50 MB line costs
one ``json.loads`` of 50 MB.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["iter_jsonl", "read_jsonl"]


def _no_constant(name: str) -> Any:
    raise ValueError(
        f"non-standard JSON constant {name} (strict JSON has no NaN/Infinity; use null)"
    )


def iter_jsonl(
    path: str | os.PathLike[str], *, skip_blank: bool = True
) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, value)`` for every line of a JSON Lines file.

    Parameters
    ----------
    path : path
    skip_blank : bool, default=True
        Skip lines holding only whitespace (otherwise they are an error).

    Yields
    ------
    (int, object)
        The 1-based line number and the parsed JSON value.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        ``"<path>:<line>: ..."`` for invalid UTF-8, invalid JSON or a NaN/Infinity constant.
    """
    p = Path(path)
    if not p.is_file():
        if p.is_dir():
            raise ValueError(f"{os.fspath(p)!r} is a directory, not a JSON Lines file.")
        raise FileNotFoundError(2, "JSON Lines file not found", os.fspath(p))
    with p.open("rb") as fh:  # binary iteration splits on b"\n" only
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(
                    f"{os.fspath(p)}:{lineno}: invalid UTF-8 at byte {exc.start + 1} of the line "
                    f"({raw[exc.start : exc.start + 4]!r}); JSON Lines files must be UTF-8."
                ) from None
            if skip_blank and not text.strip():
                continue
            try:
                value = json.loads(text, parse_constant=_no_constant)
            except json.JSONDecodeError as exc:
                msg = exc.msg.removesuffix(
                    " at"
                )  # "Invalid control character at" expects a position
                raise ValueError(
                    f"{os.fspath(p)}:{lineno}: invalid JSON at column {exc.colno}: {msg}."
                ) from None
            except ValueError as exc:
                raise ValueError(f"{os.fspath(p)}:{lineno}: {exc}.") from None
            yield lineno, value


def read_jsonl(path: str | os.PathLike[str], *, skip_blank: bool = True) -> list[Any]:
    """Every value of a JSON Lines file, in order (see :func:`iter_jsonl` for the rules).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.jsonl"
    >>> _ = p.write_text('{"q": "line\\u2028sep"}\\n{"q": 2}\\n', encoding="utf-8")
    >>> [r["q"] for r in read_jsonl(p)]
    ['line\\u2028sep', 2]
    """
    return [value for _, value in iter_jsonl(path, skip_blank=skip_blank)]
