"""The self-contained HTML report of ``llamaforge eval`` (no torch, standard library only).

    write_html(path, title, sections)   one HTML file: inline CSS, figures as base64 data URIs
    render_html(title, sections)        the same page as a string
    pct(x, ci)                          "53.0% [49.1, 56.8]" for table cells ("-" when unknown)

A section is a dict with a "title" and any of "text" (paragraphs, split at blank lines), "table"
(``{"columns": [...], "rows": [[...], ...]}``), "figures" (image paths; a missing one is shown as a
note) and "details" (preformatted text, or anything JSON-serialisable, in a collapsed block). Every
string that comes from the caller is HTML-escaped: model answers may hold markup such as "<script>".
The page references nothing outside itself, so it can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import tempfile
from collections.abc import Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Optional

__all__ = ["write_html", "render_html", "pct"]

SECTION_KEYS = frozenset({"title", "text", "table", "figures", "details"})
NUMERIC_TEXT = re.compile(r"-?[\d.,]+(e[-+]?\d+)?%?( \[-?[\d.,]+, -?[\d.,]+\])?")  # e.g. pct's output
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
        ".svg": "image/svg+xml"}
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1040px; padding: 1.5em 2em 3em; color: #1d1f23; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; }
.subtitle { color: #5b6270; margin-top: 0; }
nav { font-size: 0.9em; margin: 1em 0 1.5em; padding: 0.6em 1em; background: #f4f6f9; border-radius: 6px; }
nav a { margin-right: 1.2em; color: #2f5ea8; text-decoration: none; }
section { margin-top: 2.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #dde1e7; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #d5d9e0; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eceef2; }
figcaption { font-size: 0.8em; color: #6b7280; }
.note { color: #8a5a00; background: #fff6e0; padding: 0.4em 0.8em; border-radius: 4px; }
details { margin: 0.8em 0; }
summary { cursor: pointer; color: #2f5ea8; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.82em; white-space: pre-wrap; }
footer { margin-top: 3em; font-size: 0.8em; color: #8b919c; }
"""


def _bad(x: Any) -> bool:
    return x is None or (isinstance(x, Real) and not isinstance(x, Integral) and not math.isfinite(float(x)))


def pct(x: Optional[float], ci: Optional[Sequence[Optional[float]]] = None, *, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage, with its interval when one is known.

    Args:
        x: the share; None or NaN gives "-".
        ci: ``(low, high)`` shares, or None; an interval with a None / NaN end is left out.
        digits: decimals of every number.
    Returns:
        e.g. ``pct(0.53, (0.491, 0.568)) == "53.0% [49.1, 56.8]"``, ``pct(0.53) == "53.0%"``.
    """
    if _bad(x):
        return "-"
    text = f"{100 * float(x):.{digits}f}%"
    if ci is not None and len(ci) == 2 and not any(_bad(v) for v in ci):
        text += f" [{100 * float(ci[0]):.{digits}f}, {100 * float(ci[1]):.{digits}f}]"
    return text


def _cell(x: Any) -> tuple[str, bool]:
    """A table cell's escaped text and whether it is a number (right-aligned)."""
    if _bad(x):
        return "-", False
    if isinstance(x, bool) or not isinstance(x, Real):
        return html.escape(str(x)), isinstance(x, str) and NUMERIC_TEXT.fullmatch(x) is not None
    if isinstance(x, Integral):
        return f"{int(x):,}", True
    x = float(x)  # floats: 4 significant digits, no exponent for ordinary magnitudes
    if x == 0 or 1e-3 <= abs(x) < 1e6:
        return f"{x:,.{max(0, 3 - math.floor(math.log10(abs(x))))}f}" if x else "0", True
    return f"{x:.3e}", True


def _table(table: Any, where: str) -> list[str]:
    if not isinstance(table, dict) or set(table) - {"columns", "rows"}:
        raise ValueError(f"{where}: 'table' must be a dict with 'columns' and 'rows', got {table!r:.200}")
    columns, rows = list(table.get("columns") or []), list(table.get("rows") or [])
    out = ["<table>"]
    if columns:
        out.append("<thead><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in columns) + "</tr></thead>")
    out.append("<tbody>")
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence):
            raise ValueError(f"{where}: table row {i} must be a list of cells, got {row!r:.200}")
        if columns and len(row) != len(columns):
            raise ValueError(f"{where}: table row {i} has {len(row)} cells for {len(columns)} columns")
        cells = [_cell(x) for x in row]
        out.append("<tr>" + "".join(f'<td class="num">{t}</td>' if num else f"<td>{t}</td>"
                                    for t, num in cells) + "</tr>")
    out.append("</tbody></table>")
    return out


def _figure(path: Any) -> str:
    """An embedded image, or a note when the figure was not drawn or its file cannot be read."""
    if path is None:
        return '<p class="note">Figure not drawn (is matplotlib installed?).</p>'
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError:
        return f'<p class="note">Figure missing: {html.escape(path.name)}</p>'
    mime = MIME.get(path.suffix.lower(), "image/png")
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    name = html.escape(path.name)
    return f'<figure><img src="{uri}" alt="{name}"><figcaption>{name}</figcaption></figure>'


def _section(k: int, sec: Any) -> list[str]:
    where = f"section {k}"
    if not isinstance(sec, dict) or "title" not in sec:
        raise ValueError(f"{where}: need a dict with a 'title', got {sec!r:.200}")
    if unknown := set(sec) - SECTION_KEYS:
        raise ValueError(f"{where} ({sec['title']!r}): unknown keys {sorted(unknown)}; "
                         f"known: {sorted(SECTION_KEYS)}")
    out = [f'<section id="s{k}">', f"<h2>{html.escape(str(sec['title']))}</h2>"]
    for para in str(sec.get("text") or "").split("\n\n"):
        if para.strip():
            out.append("<p>" + html.escape(para.strip()).replace("\n", "<br>") + "</p>")
    if sec.get("table") is not None:
        out += _table(sec["table"], where)
    figures = sec.get("figures") or []
    out += [_figure(f) for f in ([figures] if isinstance(figures, (str, os.PathLike)) else figures)]
    details = sec.get("details")
    if details is not None and details != "":
        text = details if isinstance(details, str) else json.dumps(details, indent=2, default=str)
        out.append(f"<details><summary>details</summary><pre>{html.escape(text)}</pre></details>")
    out.append("</section>")
    return out


def render_html(title: str, sections: Sequence[dict], *, subtitle: str = "") -> str:
    """The report page as a string (see ``write_html``)."""
    body = [line for k, sec in enumerate(sections, 1) for line in _section(k, sec)]
    nav = "".join(f'<a href="#s{k}">{html.escape(str(s["title"]))}</a>' for k, s in enumerate(sections, 1))
    t = html.escape(str(title))
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">', f"<title>{t}</title>",
        f"<style>{CSS}</style>", "</head>", "<body>", "<header>", f"<h1>{t}</h1>",
        f'<p class="subtitle">{html.escape(str(subtitle))}</p>' if subtitle else "", "</header>",
        f"<nav>{nav}</nav>" if len(sections) > 1 else "", "<main>", *body, "</main>",
        "<footer>Written by llamaforge eval.</footer>", "</body>", "</html>", ""])


def write_html(path: str | Path, title: str, sections: Sequence[dict], *, subtitle: str = "") -> Path:
    """Write the report as ONE self-contained HTML file, atomically (a temporary file, then a rename).

    Args:
        path: the HTML file to write (its folder is made if needed).
        title: the page's title and heading.
        sections: ``{"title", "text"?, "table"?: {"columns", "rows"}, "figures"?: [paths], "details"?}``
            in page order; table cells may be numbers (formatted here) or strings (e.g. from ``pct``).
        subtitle: a line under the heading (e.g. the run and the model compared).
    Returns:
        ``path`` as a Path.
    Raises:
        ValueError: a section that is not a dict with a title, has unknown keys, or a malformed table.
    """
    path = Path(path)
    text = render_html(title, sections, subtitle=subtitle)  # errors surface before anything is written
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
