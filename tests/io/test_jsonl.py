"""read_jsonl: split on "\\n" only, strict JSON, file and line in every error (issue 8)."""

from __future__ import annotations

import json

import pytest

from deltahall.io import iter_jsonl, read_jsonl


def test_unicode_line_breaks_inside_strings_do_not_split(tmp_path):
    texts = ["a\u2028b", "c\u2029d", "e\x85f", "g\x0ch", "i\x1cj", "k\rl"]
    p = tmp_path / "a.jsonl"
    p.write_bytes(
        "".join(json.dumps({"q": t}, ensure_ascii=False) + "\n" for t in texts).encode("utf-8")
    )
    assert "a\u2028b".splitlines() != ["a\u2028b"]  # what the old reader split on
    assert [r["q"] for r in read_jsonl(p)] == texts


def test_crlf_bom_and_blank_lines(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\r\n  \n[2, 3]\r\n"s"')
    assert list(iter_jsonl(p)) == [(1, {"a": 1}), (4, [2, 3]), (5, "s")]
    with pytest.raises(ValueError, match=r"a.jsonl:2: invalid JSON at column 1: Expecting value"):
        read_jsonl(p, skip_blank=False)


@pytest.mark.parametrize(
    ("content", "msg"),
    [
        (b'{"a": 1}\n{"a": 2,}\n', r":2: invalid JSON at column 9: Expecting property name"),
        (
            b'{"a": 1}\n{"a": "\xff\xfe"}\n',
            r":2: invalid UTF-8 at byte 8 of the line \(b'\\xff\\xfe",
        ),
        (b'{"a": NaN}\n', r":1: non-standard JSON constant NaN"),
        (b'{"a": 1}\n{"a": -Infinity}\n', r":2: non-standard JSON constant -Infinity"),
        (b'{"a": 1} {"b": 2}\n', r":1: invalid JSON at column 10: Extra data"),
        (
            b'{"a": "unterminated\r"}\n',
            r":1: invalid JSON at column 20: Invalid control character\.$",
        ),
    ],
    ids=["syntax", "utf8", "nan", "inf", "two-values", "raw-newline-in-string"],
)
def test_errors_name_file_and_line(tmp_path, content, msg):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(content)
    with pytest.raises(ValueError, match=str(p).replace(".", r"\.") + msg):
        read_jsonl(p)


def test_missing_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="JSON Lines file not found") as info:
        read_jsonl(tmp_path / "nope.jsonl")
    assert info.value.filename == str(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="is a directory, not a JSON Lines file"):
        read_jsonl(tmp_path)


def test_50_mb_line(tmp_path):
    big = "x\u2028" * (25 * 1024 * 1024 // 2) + "é"
    p = tmp_path / "big.jsonl"
    with p.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"q": big}, ensure_ascii=False) + "\n" + '{"q": "small"}\n')
    assert p.stat().st_size > 50 * 10**6 - 10**6
    rows = read_jsonl(p)
    assert len(rows) == 2 and rows[0]["q"] == big and rows[1] == {"q": "small"}
