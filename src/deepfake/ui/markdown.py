"""The little Markdown that report.md and results.md use, as HTML: headings, paragraphs, lists, pipe
tables, images, **bold**, `code`. Everything is escaped first, so a report cannot inject markup; image
links are rewritten by the caller's `image_url` (relative to the report's folder).
"""

from __future__ import annotations

import re
from html import escape, unescape
from typing import Callable

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")
_ITEM = re.compile(r"^\s*[-*]\s+")


def _inline(text: str, image_url: Callable[[str], str | None]) -> str:
    codes: list[str] = []

    def keep_code(m: re.Match) -> str:  # code spans are literal: no bold or links inside
        codes.append(f"<code>{escape(m[1])}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = _CODE.sub(keep_code, text)
    out = escape(text, quote=False)

    def image(m: re.Match) -> str:  # m's groups are escaped already, quotes not: attributes need them too
        url = image_url(unescape(m[2]))
        alt = escape(unescape(m[1]), quote=True)
        return f'<img src="{escape(url, quote=True)}" alt="{alt}" class="report-plot">' if url else m[1]

    out = _IMAGE.sub(image, out)
    out = _LINK.sub(lambda m: m[1], out)  # links point at files of the CLI's layout: keep the text
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m[1])], out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def to_html(text: str, image_url: Callable[[str], str | None]) -> str:
    lines = text.splitlines()
    html: list[str] = []
    para: list[str] = []
    i = 0

    def flush() -> None:
        if para:
            html.append(f"<p>{_inline(' '.join(para), image_url)}</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            flush()
        elif m := re.match(r"^(#{1,6})\s+(.*)$", stripped):
            flush()
            level = min(6, len(m[1]) + 1)  # the page has its own h1
            html.append(f"<h{level}>{_inline(m[2], image_url)}</h{level}>")
        elif stripped.startswith("|") and i + 1 < len(lines) and re.match(r"^\|?\s*:?-{3,}", lines[i + 1].strip()):
            flush()
            head = _cells(stripped)
            i += 2
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            html.append("<table class=\"report-table\"><thead><tr>" + "".join(f"<th>{_inline(c, image_url)}</th>" for c in head)
                        + "</tr></thead><tbody>" + "".join(
                            "<tr>" + "".join(f"<td>{_inline(c, image_url)}</td>" for c in r) + "</tr>" for r in rows)
                        + "</tbody></table>")
            continue
        elif _ITEM.match(stripped):
            flush()
            items = []
            while i < len(lines) and _ITEM.match(lines[i]):
                item = [_ITEM.sub("", lines[i])]
                i += 1
                # An indented line that starts no item of its own continues the one above.
                while i < len(lines) and lines[i][:1].isspace() and lines[i].strip() and not _ITEM.match(lines[i]):
                    item.append(lines[i].strip())
                    i += 1
                items.append(f"<li>{_inline(' '.join(item), image_url)}</li>")
            html.append("<ul>" + "".join(items) + "</ul>")
            continue
        else:
            para.append(stripped)
        i += 1
    flush()
    return "\n".join(html)
