"""Small hand-made inline SVG charts for the IOC page.

The page must work with no internet (an IOC network often has none) and no build step, so
no chart library: a bar chart per day, with a marker for a second value, is all it needs.
Every label is escaped here; the result is safe to put in a template as is.
"""

from __future__ import annotations

from html import escape

from markupsafe import Markup
from pydantic import BaseModel

WIDTH, HEIGHT = 640, 190
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 12, 30


class ChartPoint(BaseModel):
    label: str  # the x-axis label, e.g. "23/11"
    value: float | None  # the bar
    marker: float | None = None  # a dot on the bar, e.g. the value at the end of the day
    tooltip: str = ""


def _nice_max(value: float) -> float:
    """A round top for the y axis (1, 2, 5 × 10ⁿ) so gridlines read easily."""
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def bar_chart(points: list[ChartPoint], *, title: str, color: str, marker_color: str = "#1f2937",
              percent: bool = False, test_id: str = "") -> Markup:
    """Bars for ``value``, a dot for ``marker``; ``percent`` draws values in [0, 1] as 0–100 %."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = 1.0 if percent else _nice_max(max([p.value or 0 for p in points] + [p.marker or 0 for p in points] + [0]))
    n = max(len(points), 1)
    slot = plot_w / n
    bar_w = max(min(slot * 0.7, 48), 2)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}"'
             f' data-testid="{escape(test_id)}" xmlns="http://www.w3.org/2000/svg">', f"<title>{escape(title)}</title>"]
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        tick = f"{fraction * 100:.0f}%" if percent else f"{top * fraction:g}"
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{escape(tick)}</text>')
    label_every = max(1, round(n / 10))
    for i, point in enumerate(points):
        x = LEFT + slot * i + (slot - bar_w) / 2
        tooltip = f"<title>{escape(point.tooltip or point.label)}</title>"
        if point.value is not None:
            h = plot_h * min(point.value / top, 1)
            parts.append(f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w:.1f}" height="{max(h, 0.5):.1f}"'
                         f' fill="{color}" data-value="{point.value:g}">{tooltip}</rect>')
        if point.marker is not None:
            cy = TOP + plot_h * (1 - min(point.marker / top, 1))
            parts.append(f'<circle cx="{x + bar_w / 2:.1f}" cy="{cy:.1f}" r="4" fill="{marker_color}">{tooltip}</circle>')
        if i % label_every == 0:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle" class="tick">{escape(point.label)}</text>')
    if not points:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="tick">Chưa có dữ liệu</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
