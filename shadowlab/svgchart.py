"""Time-series charts as inline SVG: pure functions from points to markup, no I/O.

The report (:mod:`shadowlab.report`) draws every chart with :func:`line_chart`: one line per
series over event time, optional stage bands behind them, and vertical decision markers on
top. Each point is a ``<circle>`` carrying ``data-series``, ``data-t`` (the bucket's start,
ISO-8601 UTC), ``data-value`` and ``data-n`` attributes and a ``<title>`` tooltip, so the
numbers behind the picture can be read by a person hovering and by a test. All text is
escaped; no external resource is referenced.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

#: Chart geometry in SVG user units (the SVG scales to its container's width).
WIDTH = 1180
HEIGHT = 270
LEFT, RIGHT, TOP, BOTTOM = 78, 44, 52, 44

#: Tick spacings of the time axis (seconds), the smallest giving at most ``_MAX_X_TICKS``.
_TIME_STEPS = (60, 300, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
               2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400)  # fmt: skip
_MAX_X_TICKS = 12
#: The width of a character of a marker label (11 px bold), to fit labels to the plot.
_LABEL_CHAR = 6.8


@dataclass(frozen=True)
class Point:
    """One value of a series: at event time ``t`` (a bucket's start), over ``n`` samples."""

    t: dt.datetime
    value: float
    #: The samples behind the value (``None``: not an aggregate, e.g. a flags version).
    n: int | None = None
    #: Extra tooltip text (a flags version's reason, say).
    note: str = ""


@dataclass(frozen=True)
class Series:
    """A named line of points in one colour; ``step`` draws it as a step line."""

    label: str
    colour: str
    points: tuple[Point, ...]
    step: bool = False


@dataclass(frozen=True)
class Marker:
    """A vertical line at event time ``t`` with a label (a gate decision's action)."""

    t: dt.datetime
    label: str
    colour: str


@dataclass(frozen=True)
class Band:
    """A shaded event-time interval behind the lines (a rollout stage)."""

    start: dt.datetime
    end: dt.datetime
    label: str
    colour: str


@dataclass(frozen=True)
class YAxis:
    """The value axis: title, number format, unit and fixed bounds (``None``: from the data)."""

    title: str
    fmt: Callable[[float], str]
    #: Shown after the title and after each tooltip value, not on the ticks.
    unit: str = ""
    lo: float | None = 0.0
    hi: float | None = None
    #: Tick labels show value × scale (100 for a rate shown in percent).
    scale: float = 1.0

    def label(self, value: float) -> str:
        """``value`` with its unit, for tooltips."""
        return f"{self.fmt(value)} {self.unit}".rstrip()


@dataclass(frozen=True)
class Frame:
    """Maps event time and values to SVG coordinates."""

    t0: float
    t1: float
    y0: float
    y1: float

    def x(self, t: dt.datetime | float) -> float:
        """The x coordinate of event time ``t`` (a datetime or POSIX seconds)."""
        seconds = t.timestamp() if isinstance(t, dt.datetime) else t
        return LEFT + (seconds - self.t0) / (self.t1 - self.t0) * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        """The y coordinate of ``value``."""
        return HEIGHT - BOTTOM - (value - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM)


def _num(value: float) -> str:
    """A coordinate, short."""
    return f"{value:.1f}"


def iso(t: dt.datetime) -> str:
    """``t`` as ISO-8601 UTC with a ``Z`` (the ``data-t`` of points)."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def short_time(t: dt.datetime) -> str:
    """``t`` as ``MM-DD HH:MM`` UTC, for labels and tooltips."""
    return t.astimezone(dt.UTC).strftime("%m-%d %H:%M")


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering ``[lo, hi]`` (steps of 1, 2, 2.5 or 5 × 10ᵏ)."""
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks: list[float] = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def time_ticks(start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Round event-time ticks (UTC) between ``start`` and ``end``, at most about a dozen."""
    t0, t1 = start.timestamp(), end.timestamp()
    span = max(t1 - t0, 1.0)
    step = next((s for s in _TIME_STEPS if span / s <= _MAX_X_TICKS), _TIME_STEPS[-1])
    first = math.ceil(t0 / step) * step
    return [
        dt.datetime.fromtimestamp(first + i * step, dt.UTC)
        for i in range(int((t1 - first) // step) + 1)
    ]


def tick_label(value: float, step: float) -> str:
    """A tick value with as many decimals as the tick step needs (thousands separated)."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    if step > 0 and round(step, decimals) != round(step, decimals + 3):
        decimals += 1  # a step of 2.5 × 10ᵏ
    text = f"{value:,.{decimals}f}"
    return "0" if text.strip("-0.,") == "" else text


def _time_label(t: dt.datetime, ticks: Sequence[dt.datetime]) -> str:
    whole_days = all(x.hour == 0 and x.minute == 0 for x in ticks)
    return t.strftime("%m-%d") if whole_days else short_time(t)


def value_range(series: Sequence[Series], axis: YAxis) -> tuple[float, float]:
    """The y range: the axis's fixed bounds, else the data's with 10 % headroom."""
    values = [p.value for s in series for p in s.points if math.isfinite(p.value)]
    lo = axis.lo if axis.lo is not None else min(values, default=0.0)
    hi = axis.hi if axis.hi is not None else max(values, default=1.0) * 1.1
    if hi <= lo:
        hi = lo + (abs(lo) * 0.1 or 1.0)
    return lo, hi


def _x_axis(frame: Frame, start: dt.datetime, end: dt.datetime) -> list[str]:
    ticks = time_ticks(start, end)
    base = HEIGHT - BOTTOM
    out = [f'<line class="axis" x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}"/>']
    for tick in ticks:
        x = _num(frame.x(tick))
        out.append(f'<line class="grid" x1="{x}" y1="{TOP}" x2="{x}" y2="{base}"/>')
        out.append(
            f'<text class="tick" x="{x}" y="{base + 16}" text-anchor="middle">'
            f"{escape(_time_label(tick, ticks))}</text>"
        )
    out.append(
        f'<text class="axis-title" x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end">'
        "event time (UTC)</text>"
    )
    return out


def _y_axis(frame: Frame, axis: YAxis) -> list[str]:
    out = [f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}"/>']
    ticks = nice_ticks(frame.y0 * axis.scale, frame.y1 * axis.scale)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 0.0
    for tick in ticks:
        y = _num(frame.y(tick / axis.scale))
        out.append(f'<line class="grid" x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}"/>')
        out.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y}" dy="0.32em" text-anchor="end">'
            f"{escape(tick_label(tick, step))}</text>"
        )
    middle = (TOP + HEIGHT - BOTTOM) / 2
    out.append(
        f'<text class="axis-title" transform="translate(16 {_num(middle)}) rotate(-90)" '
        f'text-anchor="middle">{escape(f"{axis.title} ({axis.unit})" if axis.unit else axis.title)}'
        "</text>"
    )
    return out


def _segments(points: Sequence[Point], gap_s: float) -> list[list[Point]]:
    """``points`` split where consecutive points are more than ``gap_s`` apart."""
    segments: list[list[Point]] = []
    for point in points:
        if segments and (point.t - segments[-1][-1].t).total_seconds() <= gap_s:
            segments[-1].append(point)
        else:
            segments.append([point])
    return segments


def _line_path(series: Series, frame: Frame, offset_s: float, gap_s: float, end: float) -> str:
    if series.step:
        coords = [(frame.x(p.t), frame.y(p.value)) for p in series.points]
        parts = [f"M{_num(coords[0][0])},{_num(coords[0][1])}"]
        for x, y in coords[1:]:
            parts.append(f"H{_num(x)}V{_num(y)}")
        parts.append(f"H{_num(frame.x(end))}")
        return "".join(parts)
    parts = []
    for segment in _segments(series.points, gap_s):
        xy = [(frame.x(p.t.timestamp() + offset_s), frame.y(p.value)) for p in segment]
        parts.append("M" + "L".join(f"{_num(x)},{_num(y)}" for x, y in xy))
    return "".join(parts)


def _series(series: Series, frame: Frame, axis: YAxis, bucket_s: float, end: float) -> list[str]:
    offset = 0.0 if series.step else bucket_s / 2
    label = escape(series.label, quote=True)
    out = [
        f'<g class="series" data-series="{label}">',
        f'<path d="{_line_path(series, frame, offset, bucket_s * 1.5, end)}" fill="none" '
        f'stroke="{series.colour}" stroke-width="2" stroke-linejoin="round"/>',
    ]
    for p in series.points:
        tip = f"{series.label} · {short_time(p.t)} · {axis.label(p.value)}"
        tip += f" · n={p.n:,}" if p.n is not None else ""
        tip += f" · {p.note}" if p.note else ""
        n = f' data-n="{p.n}"' if p.n is not None else ""
        out.append(
            f'<circle cx="{_num(frame.x(p.t.timestamp() + offset))}" cy="{_num(frame.y(p.value))}" '
            f'r="2.5" fill="{series.colour}" data-series="{label}" data-t="{iso(p.t)}" '
            f'data-value="{p.value:.6g}"{n}><title>{escape(tip)}</title></circle>'
        )
    out.append("</g>")
    return out


def free_gap(x0: float, x1: float, taken: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The widest part of ``[x0, x1]`` that overlaps none of the ``taken`` intervals."""
    best, left = (x0, x0), x0
    for lo, hi in sorted(taken):
        if hi <= left or lo >= x1:
            continue
        if min(lo, x1) - left > best[1] - best[0]:
            best = (left, min(lo, x1))
        left = max(left, hi)
    if x1 - left > best[1] - best[0]:
        best = (left, x1)
    return best


def _bands(bands: Sequence[Band], frame: Frame, markers: Sequence[Marker]) -> list[str]:
    # a marker's line and its label (to the right of the line) take ~16 units
    taken = [(frame.x(m.t) - 3, frame.x(m.t) + 16) for m in markers]
    out = []
    for band in bands:
        x0, x1 = frame.x(band.start), frame.x(band.end)
        out.append(
            f'<rect class="band" x="{_num(x0)}" y="{TOP}" width="{_num(max(x1 - x0, 0.0))}" '
            f'height="{HEIGHT - TOP - BOTTOM}" fill="{band.colour}"/>'
        )
        lo, hi = free_gap(x0, x1, taken)
        if hi - lo >= 7 * len(band.label) + 8:
            out.append(
                f'<text class="band-label" x="{_num((lo + hi) / 2)}" y="{TOP + 14}" '
                f'text-anchor="middle">{escape(band.label)}</text>'
            )
    return out


def fit(text: str, chars: int) -> str:
    """``text`` cut to ``chars`` characters, with an ellipsis when cut."""
    return text if len(text) <= chars else text[: max(chars - 1, 0)] + "…"


def _markers(markers: Sequence[Marker], frame: Frame) -> list[str]:
    out = []
    room = int((HEIGHT - TOP - BOTTOM - 8) / _LABEL_CHAR)
    for marker in markers:
        if not frame.t0 <= marker.t.timestamp() <= frame.t1:
            continue
        x = _num(frame.x(marker.t))
        label = escape(fit(marker.label, room))
        out.append(
            f'<g class="marker" data-t="{iso(marker.t)}" data-label="{escape(marker.label)}">'
            f'<line x1="{x}" y1="{TOP}" x2="{x}" y2="{HEIGHT - BOTTOM}" stroke="{marker.colour}" '
            'stroke-width="1.5" stroke-dasharray="5 3"/>'
            f'<text class="marker-label" transform="translate({x} {TOP + 4}) rotate(-90)" '
            f'text-anchor="end" dy="11" fill="{marker.colour}">{label}</text>'
            f"<title>{escape(short_time(marker.t) + ' · ' + marker.label)}</title></g>"
        )
    return out


def _legend(series: Sequence[Series]) -> list[str]:
    out = []
    x = LEFT
    for s in series:
        out.append(
            f'<rect x="{x}" y="{TOP - 18}" width="14" height="4" fill="{s.colour}"/>'
            f'<text class="legend" x="{x + 19}" y="{TOP - 13}">{escape(s.label)}</text>'
        )
        x += 30 + 7 * len(s.label)
    return out


def _open(title: str, chart_id: str) -> list[str]:
    return [
        f'<svg class="chart" id="{escape(chart_id, quote=True)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title, quote=True)}">',
        f"<title>{escape(title)}</title>",
        f'<text class="chart-title" x="{LEFT}" y="18">{escape(title)}</text>',
    ]


def no_data_chart(title: str, chart_id: str, why: str = "no data") -> str:
    """A chart frame with ``title`` that says ``why`` there is nothing to draw."""
    middle = (TOP + HEIGHT - BOTTOM) / 2
    return "\n".join(
        [
            *_open(title, chart_id),
            f'<rect class="empty" x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
            f'height="{HEIGHT - TOP - BOTTOM}"/>',
            f'<text class="no-data" x="{WIDTH / 2}" y="{_num(middle)}" text-anchor="middle">'
            f"{escape(why)}</text>",
            "</svg>",
        ]
    )


def line_chart(
    title: str,
    chart_id: str,
    series: Sequence[Series],
    *,
    span: tuple[dt.datetime, dt.datetime],
    axis: YAxis,
    bucket_s: float,
    markers: Sequence[Marker] = (),
    bands: Sequence[Band] = (),
) -> str:
    """An SVG line chart of ``series`` over the event-time ``span``.

    Args:
        title: shown above the chart.
        chart_id: the ``id`` of the ``<svg>`` element.
        series: the lines; empty ones are left out, and with none left the chart says
            "no data".
        span: the event-time range of the x axis (the same for every chart of a report).
        axis: the y axis.
        bucket_s: the bucket width; points are drawn at their bucket's centre, and a line
            is broken where buckets are missing.
        markers: vertical lines with labels (gate decisions).
        bands: shaded intervals behind the lines (stages).
    """
    drawn = [s for s in series if s.points]
    if not drawn:
        return no_data_chart(title, chart_id)
    start, end = span
    t0, t1 = start.timestamp(), end.timestamp()
    if t1 <= t0:
        t0, t1 = t0 - bucket_s, t1 + bucket_s
    lo, hi = value_range(drawn, axis)
    frame = Frame(t0, t1, lo, hi)
    body = [
        *_open(title, chart_id),
        *_bands(bands, frame, markers),
        *_y_axis(frame, axis),
        *_x_axis(frame, start, end),
        *_legend(drawn),
    ]
    for s in drawn:
        body.extend(_series(s, frame, axis, bucket_s, t1))
    body.extend(_markers(markers, frame))
    body.append("</svg>")
    return "\n".join(body)
