"""The routing report's chart, drawn on the server as SVG coordinates (no chart library, no
script): agreement (y, from the lowest value shown to 1) against the share routed to people
(x, 0 to 1), one line per curve, the budget's share as a vertical mark."""

from __future__ import annotations

W, H = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 52, 120, 12, 34
COLORS = {
    "random": "#5d6b78",
    "confidence": "#2457c5",
    "learned": "#1a7f37",
    "oracle": "#b42318",
}
OTHER = ("#9a6700", "#7a3ec2", "#0e7c86")


def chart(data: dict) -> dict | None:
    """Lines, ticks and the budget mark of the report; None when there is nothing to draw."""
    values = [v for curve in data["curves"].values() for v in curve if v is not None]
    if not values:
        return None
    low = min(0.5, _floor_tenth(min(values)))
    span_x, span_y = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(share: float) -> float:
        return round(LEFT + share * span_x, 1)

    def y(value: float) -> float:
        return round(TOP + (1 - (value - low) / (1 - low or 1)) * span_y, 1)

    lines = []
    for n, (name, curve) in enumerate(data["curves"].items()):
        points = [(x(s), y(v)) for s, v in zip(data["shares"], curve, strict=True) if v is not None]
        color = COLORS.get(name) or OTHER[n % len(OTHER)]
        lines.append(
            {
                "name": name,
                "color": color,
                "dashed": name == "oracle",
                "points": " ".join(f"{px},{py}" for px, py in points),
                "dots": points,
                "label_y": points[-1][1] if points else TOP,
            }
        )
    _spread_labels(lines)
    ticks_y = [{"y": y(v), "text": f"{v:.0%}"} for v in _steps(low)]
    ticks_x = [{"x": x(s), "text": f"{s:.0%}"} for s in (0, 0.25, 0.5, 0.75, 1)]
    share = data["budget_share"]
    return {
        "width": W,
        "height": H,
        "left": LEFT,
        "right": W - RIGHT,
        "top": TOP,
        "bottom": H - BOTTOM,
        "label_x": W - RIGHT + 6,
        "lines": lines,
        "ticks_x": ticks_x,
        "ticks_y": ticks_y,
        "budget_x": None if share is None else x(share),
        "budget_text": None if share is None else f"budget {share:.0%}",
    }


def _floor_tenth(value: float) -> float:
    return int(value * 10) / 10


def _steps(low: float) -> list[float]:
    steps, value = [], low
    while value <= 1 + 1e-9:
        steps.append(round(value, 2))
        value += 0.1
    return steps


def _spread_labels(lines: list[dict], gap: float = 13) -> None:
    """Move the curves' end labels apart where the lines end close together."""
    placed: list[float] = []
    for line in sorted(lines, key=lambda item: item["label_y"]):
        label_y = line["label_y"]
        if placed and label_y - placed[-1] < gap:
            label_y = placed[-1] + gap
        line["label_y"] = label_y + 4
        placed.append(label_y)
