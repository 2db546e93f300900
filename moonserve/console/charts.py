"""Bar charts as inline SVG, drawn on the server: a few rectangles need no charting library, and
the page stays within its own Content-Security-Policy (no scripts for the charts)."""

from __future__ import annotations

from markupsafe import Markup, escape

WIDTH, BAR, GAP, LABEL = 640, 22, 8, 150


def bar_chart(points: list[tuple[str, float]], unit: str) -> Markup:
    """Horizontal bars, one per (label, value), scaled to the largest; the value is printed beside it."""
    if not points:
        return Markup('<p class="empty">No calls in this period.</p>')
    top = max(v for _, v in points) or 1
    height = len(points) * (BAR + GAP) + GAP
    rows = []
    for k, (label, value) in enumerate(points):
        y = GAP + k * (BAR + GAP)
        w = max(1.0, (WIDTH - LABEL - 110) * value / top)
        shown = f"{value:,.6f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}"
        rows.append(
            f'<text x="{LABEL - 8}" y="{y + BAR * 0.7:.0f}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{LABEL}" y="{y}" width="{w:.1f}" height="{BAR}" rx="3"><title>{escape(label)}: '
            f'{escape(shown)} {escape(unit)}</title></rect>'
            f'<text x="{LABEL + w + 6:.1f}" y="{y + BAR * 0.7:.0f}">{escape(shown)}</text>')
    return Markup(f'<svg class="chart" role="img" aria-label="{escape(unit)} per group" viewBox="0 0 {WIDTH} '
                  f'{height}" preserveAspectRatio="xMinYMin meet">{"".join(rows)}</svg>')
