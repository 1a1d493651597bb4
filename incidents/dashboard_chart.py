"""The dashboard's activity chart as server-drawn SVG: no script, nothing from a CDN.

Four lines over time (apologies sent, delivered, bounced or failed, ESP events
received), one scale, with the axis labels a reader needs. The same figures go
in a table under the chart for screen readers and for copying.
"""

from dataclasses import dataclass
from datetime import datetime

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28
SERIES = (
    ("sent", "Sent"),
    ("delivered", "Delivered"),
    ("failed", "Bounced or failed"),
    ("events", "ESP events received"),
)


@dataclass(frozen=True)
class Line:
    key: str
    label: str
    points: str  # for <polyline points="…">
    total: int


def _nice_max(value: int) -> int:
    """The y axis' top: 1, 2 or 5 times a power of ten, at least `value`."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= value:
            return factor * magnitude
    return 10 * magnitude


def chart(data: dict) -> dict | None:
    """Geometry for templates/incidents/dashboard/_chart.html, or None when nothing happened."""
    buckets = data.get("buckets") or []
    if not buckets:
        return None
    top = _nice_max(max(max(b[key] for key, _ in SERIES) for b in buckets))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step_x = plot_w / max(1, len(buckets) - 1)

    def xy(i: int, value: int) -> str:
        return f"{LEFT + i * step_x:.1f},{TOP + plot_h - value / top * plot_h:.1f}"

    lines = [
        Line(
            key=key,
            label=label,
            points=" ".join(xy(i, b[key]) for i, b in enumerate(buckets)),
            total=sum(b[key] for b in buckets),
        )
        for key, label in SERIES
    ]
    moments = [datetime.fromisoformat(b["t"]) for b in buckets]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "top": TOP,
        "bottom": HEIGHT - BOTTOM,
        "middle": TOP + plot_h / 2,
        "label_y": HEIGHT - 8,
        "y_max": top,
        "y_half": top // 2 if top % 2 == 0 else top / 2,
        "lines": lines,
        "start": moments[0],
        "end": moments[-1],
        "step_seconds": data.get("step", 0),
        "rows": [{"t": m, **b} for m, b in zip(moments, buckets, strict=True)],
    }
