"""Server-drawn SVG line charts: the page needs no chart library and no network.

A chart is a list of series against one x axis, with optional vertical markers (the over-fitting
step). Non-finite points are dropped; text and attribute values are escaped (quotes too), so a series
name or a colour cannot inject markup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Sequence

PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


@dataclass
class Series:
    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    color: str = ""
    dots: bool = False  # markers instead of only a line (sparse series: validation)
    dashed: bool = False


@dataclass
class Marker:
    x: float
    label: str
    color: str = "#c44e52"


@dataclass
class Chart:
    series: list[Series]
    x_label: str = "step"
    y_label: str = ""
    title: str = ""
    markers: list[Marker] = field(default_factory=list)
    y_min: float | None = None  # fixed bounds (a 0-100 % axis); None: fit the data
    y_max: float | None = None


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 10_000:
        return f"{v / 1000:g}k"
    return f"{v:.4g}"


def render(chart: Chart, width: int = 640, height: int = 260) -> str:
    left, right, top, bottom = 56, 12, 26 if chart.title else 12, 40
    pts = [[(float(x), float(y)) for x, y in zip(s.xs, s.ys) if y is not None and math.isfinite(y) and math.isfinite(x)]
           for s in chart.series]
    xs = [p[0] for ps in pts for p in ps] + [m.x for m in chart.markers]
    ys = [p[1] for ps in pts for p in ps]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="chart" role="img">']
    if chart.title:
        out.append(f'<text x="{left}" y="16" class="chart-title">{escape(chart.title)}</text>')
    if not ys:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="chart-empty">no data yet</text></svg>')
        return "".join(out)
    x0, x1 = min(xs), max(xs)
    y0 = chart.y_min if chart.y_min is not None else min(ys)
    y1 = chart.y_max if chart.y_max is not None else max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - abs(y0) * 0.1 - 1e-3, y1 + abs(y1) * 0.1 + 1e-3
    pad = (y1 - y0) * 0.05 if chart.y_min is None else 0.0
    y0, y1 = y0 - pad, y1 + pad
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="chart-bg"/>')
    for t in nice_ticks(y0, y1):
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" class="chart-grid"/>'
                   f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end" class="chart-tick">{_fmt(t)}</text>')
    for t in nice_ticks(x0, x1, 6):
        out.append(f'<text x="{sx(t):.1f}" y="{top + ph + 16}" text-anchor="middle" class="chart-tick">{_fmt(t)}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle" class="chart-label">{escape(chart.x_label)}</text>')
    if chart.y_label:
        out.append(f'<text transform="translate(12 {top + ph / 2}) rotate(-90)" text-anchor="middle" '
                   f'class="chart-label">{escape(chart.y_label)}</text>')
    for m in chart.markers:
        out.append(f'<line x1="{sx(m.x):.1f}" x2="{sx(m.x):.1f}" y1="{top}" y2="{top + ph}" stroke="{escape(m.color)}" '
                   f'stroke-dasharray="4 3" class="chart-marker"/><text x="{sx(m.x) + 4:.1f}" y="{top + 12}" '
                   f'fill="{escape(m.color)}" class="chart-tick">{escape(m.label)}</text>')
    legend_x = left + 8
    for i, (s, ps) in enumerate(zip(chart.series, pts)):
        color = escape(s.color or PALETTE[i % len(PALETTE)])
        if ps:
            d = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y) in enumerate(ps))
            dash = ' stroke-dasharray="5 3"' if s.dashed else ""
            out.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="1.6"{dash}/>')
            if s.dots:
                out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.6" fill="{color}"/>' for x, y in ps]
        out.append(f'<rect x="{legend_x}" y="{top + 6}" width="10" height="3" fill="{color}"/>'
                   f'<text x="{legend_x + 14}" y="{top + 11}" class="chart-legend">{escape(s.name)}</text>')
        legend_x += 22 + 6.5 * len(s.name)
    out.append("</svg>")
    return "".join(out)
