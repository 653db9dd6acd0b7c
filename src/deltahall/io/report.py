"""A self-contained HTML report: text, tables and figures embedded as base64.

Experiments contribute :class:`Section` objects; :class:`Report` stitches them
into one file that opens offline in any browser.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deltahall.io.atomic import atomic_write_text
from deltahall.io.rundir import union_keys

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #bbb;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f2f2f2}
td.l,th.l{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:0.9em;color:#555}
.ok{color:#11772d;font-weight:bold}.bad{color:#b00020;font-weight:bold}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:0.5em 1em}
pre{background:#f6f6f6;padding:0.6em;overflow-x:auto}
"""


@dataclass
class Section:
    """One titled part of the report; ``parts`` are HTML fragments in order."""

    title: str
    parts: list[str] = field(default_factory=list)

    def text(self, text: str) -> Section:
        """A paragraph of plain text (escaped)."""
        self.parts.append(f"<p>{html.escape(text)}</p>")
        return self

    def note(self, text: str) -> Section:
        """A highlighted caveat (escaped)."""
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')
        return self

    def code(self, text: str) -> Section:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")
        return self

    def raw(self, fragment: str) -> Section:
        """Trusted HTML produced by this package."""
        self.parts.append(fragment)
        return self

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str] | None = None,
        *,
        caption: str | None = None,
        float_format: str = "{:.4g}",
    ) -> Section:
        self.parts.append(table_html(rows, columns, caption=caption, float_format=float_format))
        return self

    def figure(self, path: str | os.PathLike[str], caption: str = "") -> Section:
        """Embed a PNG/SVG file as a data URI."""
        self.parts.append(figure_html(path, caption))
        return self


def table_html(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    caption: str | None = None,
    float_format: str = "{:.4g}",
) -> str:
    """Rows of dicts as an HTML table; floats formatted with ``float_format``."""
    if columns is None:
        columns = union_keys(rows)

    def cell(v: Any) -> str:
        if isinstance(v, bool):
            return f'<td class="{"ok" if v else "bad"}">{v}</td>'
        if isinstance(v, float):
            return f"<td>{html.escape(float_format.format(v))}</td>"
        if isinstance(v, int):
            return f"<td>{v}</td>"
        return f'<td class="l">{html.escape("" if v is None else str(v))}</td>'

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(r.get(c)) for c in columns) + "</tr>" for r in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure_html(path: str | os.PathLike[str], caption: str = "") -> str:
    """An ``<img>`` with the file inlined as base64 (PNG, SVG, JPEG)."""
    p = Path(path)
    mime = {
        ".png": "image/png",
        ".svg": "image/svg+xml",
        ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg",
    }.get(p.suffix.lower())
    if mime is None:
        raise ValueError(f"`path` must be a .png, .svg or .jpg file; got {p.name!r}.")
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (
        f'<figure><img alt="{html.escape(p.stem)}" src="data:{mime};base64,{data}"/>{cap}</figure>'
    )


class Report:
    """A list of sections rendered to one self-contained HTML file."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.sections: list[Section] = []

    def section(self, title: str) -> Section:
        s = Section(title)
        self.sections.append(s)
        return s

    def add(self, section: Section) -> None:
        self.sections.append(section)

    def render(self) -> str:
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        toc = "".join(
            f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>'
            for i, s in enumerate(self.sections)
        )
        body = "".join(
            f'<h2 id="s{i}">{html.escape(s.title)}</h2>' + "".join(s.parts)
            for i, s in enumerate(self.sections)
        )
        from deltahall import __version__

        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>"
            f"<p>deltahall {__version__} &middot; generated {now}</p>"
            f"<ul>{toc}</ul>{body}</body></html>\n"
        )

    def write(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_text(path, self.render())
