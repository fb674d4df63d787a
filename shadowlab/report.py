"""The visual report of a route's rollout: one self-contained HTML file.

:func:`build_report` reads a route's events from ClickHouse (tables read ``FINAL``, the
route always a bound ``{route:String}`` parameter) and draws, over **event time** (the
events' ``event_time``, in buckets sized so the span has at most :data:`MAX_POINTS` of them):

- p95 latency of successful calls per arm (``requests``: primary, canary, override; the
  shadow candidate's ``candidate_latency_ms`` from ``comparisons`` as arm ``shadow``);
- error rate per arm (``requests`` with status ≠ ok; joined ``comparisons`` whose
  candidate status ≠ ok for ``shadow``);
- faithfulness (mean judge score of ``judgements`` of kind faithfulness) and CSAT (mean of
  ``feedback``), per arm;
- the canary weight as a step line over the rollout's stages (``routing_flags``), each flags
  version placed at the event time the controller wrote it: ``step_since`` (see
  :func:`version_instants`);
- on every chart, the decisions that moved the rollout (``gate_decisions`` whose action is
  advance, promote or rollback) as labelled vertical lines at their ``window_end``;

with a header (route, primary, candidate, final stage, outcome), a table of the answers
compared in shadow per candidate (:mod:`shadowlab.report_answers`: structured answers that
do not match their schema, tool calls that differ from the primary's) and a table of every
gate decision. The page has inline CSS and inline SVG only: no script, font or network access.
:func:`render` turns the loaded :class:`ReportData` into the page without ClickHouse.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

from shadowlab.core.errors import ConfigError, UnknownRouteError
from shadowlab.report_answers import ANSWERS_SQL, AnswerQuality, answer_rows, answers_table
from shadowlab.svgchart import (
    Band,
    Marker,
    Point,
    Series,
    YAxis,
    line_chart,
    no_data_chart,
    short_time,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

#: The arms in legend order, and their colours (colour-blind-safe Tableau hues).
ARM_COLOURS = {
    "primary": "#1f77b4",
    "canary": "#ff7f0e",
    "override": "#9467bd",
    "shadow": "#2ca02c",
    "unknown": "#7f7f7f",
}
WEIGHT_COLOUR = "#8c564b"
STAGE_COLOURS = {
    "offline": "#f0f0f0",
    "shadow": "#e6f4e6",
    "canary": "#fff0dc",
    "promoted": "#e2edfb",
    "rolled_back": "#fbe3e3",
}
ACTION_COLOURS = {"advance": "#4d4d4d", "promote": "#1a7f1a", "rollback": "#d62728"}
#: The actions that move a rollout, drawn as markers.
MOVES = tuple(ACTION_COLOURS)
#: Bucket widths (seconds); the smallest that gives at most MAX_POINTS buckets is used.
BUCKETS_S = (60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600,
             86400, 2 * 86400, 7 * 86400)  # fmt: skip
MAX_POINTS = 120
#: Decision tables longer than this start folded.
OPEN_TABLE_ROWS = 200
_DATABASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EVENT_TABLES = ("requests", "comparisons", "judgements", "feedback")


@dataclass(frozen=True)
class FlagsVersion:
    """One version of the route's routing flags (a row of ``routing_flags``)."""

    version: int
    stage: str
    primary: str
    canary: str | None
    canary_weight_bp: int
    override: str | None
    changed_at: dt.datetime
    changed_by: str
    reason: str
    paused: bool
    stage_since: dt.datetime | None
    step_since: dt.datetime | None


@dataclass(frozen=True)
class Decision:
    """One gate decision (a row of ``gate_decisions``)."""

    stage: str
    gate: str
    outcome: str
    action: str
    value: float | None
    baseline: float | None
    threshold: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    window_start: dt.datetime
    window_end: dt.datetime
    decided_at: dt.datetime
    flags_version: int | None = None
    #: The gate's rule in words (its margin).
    margin: str = ""
    #: An inconclusive gate's samples needed, and the event hours until it has them.
    needed_n: int | None = None
    eta_h: float | None = None


#: One aggregate of one arm in one bucket: (bucket start, arm, value, samples).
ArmRow = tuple[dt.datetime, str, float, int]


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, as read from ClickHouse."""

    route: str
    #: Event-time range of the route's requests, comparisons, judgements and feedback.
    span: tuple[dt.datetime, dt.datetime] | None
    bucket_s: int
    counts: dict[str, int] = field(default_factory=dict)
    latency: tuple[ArmRow, ...] = ()
    errors: tuple[ArmRow, ...] = ()
    faithfulness: tuple[ArmRow, ...] = ()
    csat: tuple[ArmRow, ...] = ()
    flags: tuple[FlagsVersion, ...] = ()
    decisions: tuple[Decision, ...] = ()
    #: Per shadow candidate: its pairs, structured answers and tool calls.
    answers: tuple[AnswerQuality, ...] = ()


@dataclass(frozen=True)
class Summary:
    """The header's facts."""

    primary: str
    candidate: str
    stage: str
    outcome: str


# --- pure: buckets, series, flags, markers ----------------------------------------------------


def choose_bucket(span_s: float) -> int:
    """The bucket width (seconds) for an event-time span: the smallest giving ≤ MAX_POINTS."""
    return next((b for b in BUCKETS_S if span_s / b <= MAX_POINTS), BUCKETS_S[-1])


def utc(t: dt.datetime) -> dt.datetime:
    """``t`` as an aware UTC datetime (a naive one is taken to be UTC already)."""
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def arm_series(rows: Iterable[ArmRow]) -> list[Series]:
    """One series per arm (in :data:`ARM_COLOURS` order, others after), points by time."""
    by_arm: dict[str, list[Point]] = {}
    for t, arm, value, n in rows:
        if value is not None and math.isfinite(value):
            by_arm.setdefault(arm, []).append(Point(utc(t), float(value), int(n)))
    order = [a for a in ARM_COLOURS if a in by_arm] + sorted(set(by_arm) - set(ARM_COLOURS))
    return [
        Series(arm, ARM_COLOURS.get(arm, "#444444"), tuple(sorted(by_arm[arm], key=_at)))
        for arm in order
    ]


def _at(point: Point) -> dt.datetime:
    return point.t


def version_instants(
    flags: Sequence[FlagsVersion], span: tuple[dt.datetime, dt.datetime]
) -> list[dt.datetime]:
    """The event time at which each flags version took effect (never earlier than the last).

    The controller writes the event time of the tick that changed the flags into
    ``step_since`` (``changed_at`` is wall-clock time). A version without a newer
    ``step_since`` of its own (a change by hand, which copies the previous one, or the
    flags before the controller's first tick) takes its ``changed_at`` when that falls in
    the data's event-time span (live traffic), else the previous version's instant (or
    the span's start).
    """
    start, end = span
    out: list[dt.datetime] = []
    for version in flags:
        previous = out[-1] if out else None
        own = version.step_since or version.stage_since
        if own is not None and (previous is None or utc(own) > previous):
            out.append(utc(own))
            continue
        floor = previous or start
        wall = utc(version.changed_at)
        out.append(wall if floor <= wall <= end else floor)
    return out


def weight_series(flags: Sequence[FlagsVersion], instants: Sequence[dt.datetime]) -> Series:
    """The canary weight (percent) as a step series, one point per flags version."""
    points = tuple(
        Point(
            t,
            f.canary_weight_bp / 100,
            note=f"v{f.version} {f.stage}{' (paused)' if f.paused else ''}: {f.reason}",
        )
        for f, t in zip(flags, instants, strict=True)
    )
    return Series("canary weight", WEIGHT_COLOUR, points, step=True)


def stage_bands(
    flags: Sequence[FlagsVersion], instants: Sequence[dt.datetime], end: dt.datetime
) -> list[Band]:
    """Shaded stage intervals: consecutive versions of one stage make one band."""
    bands: list[Band] = []
    for i, (f, t) in enumerate(zip(flags, instants, strict=True)):
        until = instants[i + 1] if i + 1 < len(instants) else max(end, t)
        label = f.stage.replace("_", " ") + (" (paused)" if f.paused else "")
        if bands and bands[-1].label == label:
            bands[-1] = Band(bands[-1].start, until, label, bands[-1].colour)
        else:
            bands.append(Band(t, until, label, STAGE_COLOURS.get(f.stage, "#f4f4f4")))
    return [b for b in bands if b.end > b.start]


def decision_markers(
    decisions: Sequence[Decision],
    flags: Sequence[FlagsVersion] = (),
    instants: Sequence[dt.datetime] = (),
) -> list[Marker]:
    """One marker per tick whose decisions moved the rollout (advance, promote, rollback).

    An advance is labelled with where it went (the flags version taking effect at that
    instant), a rollback with the gates that failed.
    """
    ticks: dict[tuple[dt.datetime, str], list[Decision]] = {}
    for d in decisions:
        if d.action in MOVES:
            ticks.setdefault((utc(d.window_end), d.action), []).append(d)
    at: dict[dt.datetime, FlagsVersion] = {}
    for t, version in zip(instants, flags, strict=True):
        at.setdefault(t, version)  # the controller's change, not a later change by hand
    markers = []
    for (t, action), moved in sorted(ticks.items()):
        markers.append(Marker(t, _marker_label(action, moved, at.get(t)), ACTION_COLOURS[action]))
    return markers


def _marker_label(action: str, moved: Sequence[Decision], target: FlagsVersion | None) -> str:
    if action == "rollback":
        return "rollback: " + ", ".join(sorted({d.gate for d in moved}))
    if action == "advance" and target is not None:
        weight = f" {target.canary_weight_bp / 100:g}%" if target.stage == "canary" else ""
        return f"advance → {target.stage}{weight}"
    return action


def summarise(flags: Sequence[FlagsVersion]) -> Summary:
    """The header: primary, candidate, final stage and outcome, from the flags history."""
    if not flags:
        return Summary("–", "–", "–", "no rollout recorded (no routing flags)")
    latest = flags[-1]
    candidates = [f for f in flags if f.canary is not None]
    candidate = candidates[-1].canary if candidates else None
    primary = candidates[-1].primary if candidates else latest.primary
    return Summary(primary, candidate or "–", latest.stage, _outcome(latest, primary, candidate))


def _outcome(latest: FlagsVersion, primary: str, candidate: str | None) -> str:
    if latest.stage == "promoted":
        return f"promoted: {candidate} replaced {primary}" if candidate else "promoted (no rollout)"
    if latest.stage == "rolled_back":
        return f"rolled back by {latest.changed_by}: {latest.reason or 'no reason given'}"
    weight = f" at {latest.canary_weight_bp / 100:g}%" if latest.stage == "canary" else ""
    paused = ", paused by hand" if latest.paused else ""
    return f"in progress: {latest.stage}{weight}{paused}"


# --- pure: HTML --------------------------------------------------------------------------------


def fmt_number(value: float | None) -> str:
    """A table number: 4 significant digits, ``–`` for none."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.4g}"


def _percent(value: float) -> str:
    return f"{value * 100:.3g}"


def _ms(value: float) -> str:
    return f"{value:,.0f}"


def _score(value: float) -> str:
    return f"{value:.2f}"


def _weight(value: float) -> str:
    return f"{value:g}"


_DECISION_COLUMNS = ("decided at", "stage", "gate", "outcome", "action", "rule", "value",
                     "baseline", "threshold", "ci low", "ci high", "n", "needed n", "ETA h",
                     "window")  # fmt: skip


def decision_row(d: Decision) -> str:
    """One ``<tr>`` of the decisions table."""
    cells = [
        short_time(utc(d.decided_at)),
        d.stage,
        d.gate,
        d.outcome,
        d.action,
        d.margin,
        *(fmt_number(v) for v in (d.value, d.baseline, d.threshold, d.ci_low, d.ci_high)),
        f"{d.n:,}",
        f"{d.needed_n:,}" if d.needed_n is not None else "",
        f"{d.eta_h:.1f}" if d.eta_h is not None else "",
        f"{utc(d.window_start):%Y-%m-%d %H:%M} → {utc(d.window_end):%Y-%m-%d %H:%M}",
    ]
    css = f"outcome-{d.outcome} action-{d.action}"
    tds = "".join(f"<td>{escape(c)}</td>" for c in cells)
    return f'<tr class="{escape(css, quote=True)}">{tds}</tr>'


def decisions_table(decisions: Sequence[Decision]) -> str:
    """Every decision in a table (folded when long), or a note that there is none."""
    if not decisions:
        return '<p class="empty-note">no gate decisions recorded for this route</p>'
    head = "".join(f"<th>{escape(c)}</th>" for c in _DECISION_COLUMNS)
    rows = "\n".join(decision_row(d) for d in decisions)
    moved = sum(d.action in MOVES for d in decisions)
    fold = "" if len(decisions) <= OPEN_TABLE_ROWS else " (folded: click to open)"
    return (
        f'<details class="decisions"{" open" if not fold else ""}>'
        f"<summary>{len(decisions):,} decisions, {moved:,} of them moved the rollout{fold}"
        "</summary>"
        f'<table id="decisions"><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>'
        "</details>"
    )


def moves_table(decisions: Sequence[Decision]) -> str:
    """The decisions that moved the rollout (advance, promote, rollback), always shown."""
    moved = [d for d in decisions if d.action in MOVES]
    if not moved:
        return '<p class="empty-note">no decision moved the rollout</p>'
    head = "".join(f"<th>{escape(c)}</th>" for c in _DECISION_COLUMNS)
    rows = "\n".join(decision_row(d) for d in moved)
    return f'<table id="moves"><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>'


def header(data: ReportData, summary: Summary, title: str) -> str:
    """The page's title and the facts table (route, models, stage, outcome, span)."""
    span = (
        f"{utc(data.span[0]):%Y-%m-%d %H:%M} → {utc(data.span[1]):%Y-%m-%d %H:%M} UTC, "
        f"buckets of {_duration(data.bucket_s)}"
        if data.span is not None
        else "no events"
    )
    counts = ", ".join(f"{data.counts.get(t, 0):,} {t}" for t in _EVENT_TABLES)
    facts = [
        ("route", data.route),
        ("primary", summary.primary),
        ("candidate", summary.candidate),
        ("final stage", summary.stage.replace("_", " ")),
        ("outcome", summary.outcome),
        ("event time", span),
        ("events", counts),
    ]
    rows = "".join(
        f'<tr><th>{escape(k)}</th><td class="fact-{escape(k.replace(" ", "-"))}">'
        f"{escape(v)}</td></tr>"
        for k, v in facts
    )
    stage_class = escape(f"stage-{summary.stage}", quote=True)
    return (
        f'<header class="{stage_class}"><h1>{escape(title)}</h1>'
        f'<table class="facts">{rows}</table></header>'
    )


def _duration(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"


#: The charts: id, title and value axis.
CHARTS = (
    ("chart-latency", "p95 latency of successful calls, by arm (shadow: the candidate in replay)",
     YAxis("p95 latency", _ms, "ms")),
    ("chart-errors", "Error rate (status ≠ ok), by arm",
     YAxis("error rate", _percent, "%", scale=100.0)),
    ("chart-faithfulness", "Faithfulness (LLM judge, mean score 1–5), by arm",
     YAxis("faithfulness", _score, lo=1.0, hi=5.0)),
    ("chart-csat", "CSAT (users, mean 1–5), by arm", YAxis("CSAT", _score, lo=1.0, hi=5.0)),
    ("chart-weight", "Canary weight and stage (routing flags)",
     YAxis("canary weight", _weight, "%", lo=0.0, hi=100.0)),
)  # fmt: skip


def charts(data: ReportData) -> list[str]:
    """The five SVG charts, sharing the event-time axis and the decision markers."""
    span = chart_span(data)
    if span is None:
        return [no_data_chart(title, chart_id) for chart_id, title, _ in CHARTS]
    instants = version_instants(data.flags, span)
    series = {
        "chart-latency": arm_series(data.latency),
        "chart-errors": arm_series(data.errors),
        "chart-faithfulness": arm_series(data.faithfulness),
        "chart-csat": arm_series(data.csat),
        "chart-weight": [weight_series(data.flags, instants)] if data.flags else [],
    }
    markers = decision_markers(data.decisions, data.flags, instants)
    bands = stage_bands(data.flags, instants, span[1])
    return [
        line_chart(title, chart_id, series[chart_id], span=span, axis=axis,
                   bucket_s=data.bucket_s, markers=markers,
                   bands=bands if chart_id == "chart-weight" else ())
        for chart_id, title, axis in CHARTS
    ]  # fmt: skip


def chart_span(data: ReportData) -> tuple[dt.datetime, dt.datetime] | None:
    """The x range shared by the charts.

    The buckets of the events' span, drawn in full, widened to every decision marker and
    every event time the controller wrote in the flags.
    """
    times = [utc(d.window_end) for d in data.decisions if d.action in MOVES]
    times += [utc(f.step_since) for f in data.flags if f.step_since is not None]
    if data.span is not None:
        bucket = dt.timedelta(seconds=data.bucket_s)
        times += [_bucket_start(data.span[0], bucket), _bucket_start(data.span[1], bucket) + bucket]
    if not times:
        return None
    return min(times), max(times)


def _bucket_start(t: dt.datetime, bucket: dt.timedelta) -> dt.datetime:
    seconds = bucket.total_seconds()
    return dt.datetime.fromtimestamp(math.floor(utc(t).timestamp() / seconds) * seconds, dt.UTC)


_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif;
  margin: 0 auto; padding: 16px 24px 40px; max-width: 1240px; color: #222; background: #fff; }
h1 { font-size: 22px; margin: 4px 0 10px; }
h2 { font-size: 17px; margin: 22px 0 6px; }
table { border-collapse: collapse; font-size: 12.5px; font-variant-numeric: tabular-nums; }
table.facts th { text-align: left; padding: 2px 14px 2px 0; color: #555; font-weight: 600; }
table.facts td { padding: 2px 0; }
header.stage-rolled_back td.fact-outcome { color: #b3171b; font-weight: 600; }
header.stage-promoted td.fact-outcome { color: #1a7f1a; font-weight: 600; }
svg.chart { width: 100%; height: auto; display: block; margin: 10px 0 4px; }
svg.chart .chart-title { font-size: 15px; font-weight: 600; fill: #222; }
svg.chart .tick, svg.chart .legend { font-size: 12px; fill: #444; }
svg.chart .axis-title { font-size: 12px; fill: #666; }
svg.chart .axis { stroke: #888; stroke-width: 1; }
svg.chart .grid { stroke: #e3e3e3; stroke-width: 1; }
svg.chart .band-label { font-size: 12px; fill: #555; font-weight: 600; }
svg.chart .marker-label { font-size: 11px; font-weight: 600; paint-order: stroke;
  stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }
svg.chart .empty { fill: #fafafa; stroke: #ddd; }
svg.chart .no-data { font-size: 16px; fill: #999; }
#decisions, #moves { width: 100%; margin-top: 6px; }
#decisions th, #moves th { text-align: left; border-bottom: 2px solid #ccc; padding: 3px 6px;
  position: sticky; top: 0; background: #fff; }
#decisions td, #moves td { padding: 2px 6px; border-bottom: 1px solid #eee; white-space: nowrap; }
#decisions tbody tr:nth-child(even) { background: #fafafa; }
tr.outcome-pass td:nth-child(4) { color: #1a7f1a; }
tr.outcome-fail td:nth-child(4) { color: #b3171b; font-weight: 600; }
tr.outcome-inconclusive td:nth-child(4) { color: #9a6700; }
tr.action-advance, tr.action-promote, tr.action-rollback { font-weight: 600; }
tr.action-rollback { background: #fdeaea !important; }
details.decisions summary { cursor: pointer; color: #444; margin: 6px 0; }
.empty-note { color: #888; font-style: italic; }
footer { margin-top: 24px; font-size: 12px; color: #777; }
"""


def render(data: ReportData, title: str | None = None) -> str:
    """The report page for ``data`` (pure: no I/O)."""
    title = title or f"shadowlab report: {data.route}"
    summary = summarise(data.flags)
    body = [
        header(data, summary, title),
        "<h2>Over event time</h2>",
        *charts(data),
        "<h2>Answers compared in shadow</h2>",
        answers_table(data.answers),
        "<h2>Decisions that moved the rollout</h2>",
        moves_table(data.decisions),
        "<h2>Every gate decision</h2>",
        decisions_table(data.decisions),
        "<footer>Made by <code>shadowlab report</code> from the ClickHouse tables (read FINAL). "
        "Points sit at the middle of their bucket; hover one for its value and sample count. "
        "Dashed lines: decisions that moved the rollout, at their window end.</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


# --- ClickHouse --------------------------------------------------------------------------------

# Every query is a constant: the route and the bucket width are bound parameters, the
# database name (checked to be an identifier) replaces {db}.
_SPAN_SQL = """
SELECT 'requests', count(), min(event_time), max(event_time)
FROM {db}.requests FINAL WHERE route = {route:String}
UNION ALL SELECT 'comparisons', count(), min(event_time), max(event_time)
FROM {db}.comparisons FINAL WHERE route = {route:String}
UNION ALL SELECT 'judgements', count(), min(event_time), max(event_time)
FROM {db}.judgements FINAL WHERE route = {route:String}
UNION ALL SELECT 'feedback', count(), min(event_time), max(event_time)
FROM {db}.feedback FINAL WHERE route = {route:String}"""
_LATENCY_SQL = """
SELECT toStartOfInterval(event_time, toIntervalSecond({bucket:UInt32})) AS t, arm,
       quantileExact(0.95)(latency_ms), count()
FROM {db}.requests FINAL WHERE route = {route:String} AND status = 'ok' GROUP BY t, arm
UNION ALL
SELECT toStartOfInterval(event_time, toIntervalSecond({bucket:UInt32})) AS t, 'shadow',
       quantileExact(0.95)(candidate_latency_ms), count()
FROM {db}.comparisons FINAL
WHERE route = {route:String} AND status = 'joined' AND candidate_status = 'ok' GROUP BY t"""
_ERRORS_SQL = """
SELECT toStartOfInterval(event_time, toIntervalSecond({bucket:UInt32})) AS t, arm,
       countIf(status != 'ok') / count(), count()
FROM {db}.requests FINAL WHERE route = {route:String} GROUP BY t, arm
UNION ALL
SELECT toStartOfInterval(event_time, toIntervalSecond({bucket:UInt32})) AS t, 'shadow',
       countIf(candidate_status != 'ok') / count(), count()
FROM {db}.comparisons FINAL WHERE route = {route:String} AND status = 'joined' GROUP BY t"""
_FAITHFULNESS_SQL = """
SELECT toStartOfInterval(event_time, toIntervalSecond({bucket:UInt32})) AS t, arm,
       avg(score), count()
FROM {db}.judgements FINAL
WHERE route = {route:String} AND kind = 'faithfulness' AND score IS NOT NULL GROUP BY t, arm"""
_CSAT_SQL = """
SELECT toStartOfInterval(event_time, toIntervalSecond({bucket:UInt32})) AS t,
       ifNull(arm, 'unknown') AS a, avg(csat), count()
FROM {db}.feedback FINAL WHERE route = {route:String} AND csat IS NOT NULL GROUP BY t, a"""
_FLAGS_SQL = (
    "SELECT version, stage, primary, canary, canary_weight_bp, override, changed_at, "
    "changed_by, reason, paused, stage_since, step_since FROM {db}.routing_flags FINAL "
    "WHERE route = {route:String} ORDER BY version"
)
_DECISIONS_SQL = (
    "SELECT stage, gate, outcome, action, value, baseline, threshold, ci_low, ci_high, n, "
    "window_start, window_end, decided_at, flags_version, margin, needed_n, eta_h "
    "FROM {db}.gate_decisions FINAL "
    "WHERE route = {route:String} ORDER BY decided_at, gate, stage, decision_id"
)


def _rows(client: Client, database: str, sql: str, **parameters: Any) -> list[tuple[Any, ...]]:
    result = client.query(sql.replace("{db}", database), parameters=parameters)
    return [tuple(row) for row in result.result_rows]


def _span(rows: Sequence[tuple[Any, ...]]) -> tuple[dt.datetime, dt.datetime] | None:
    present = [(utc(lo), utc(hi)) for _, n, lo, hi in rows if n]
    if not present:
        return None
    return min(lo for lo, _ in present), max(hi for _, hi in present)


def load(client: Client, database: str, route: str) -> ReportData:
    """Read everything the report shows for ``route`` from ClickHouse.

    Raises:
        ConfigError: the database name is not a plain identifier.
        UnknownRouteError: the route has no events, flags or decisions at all.
    """
    if not _DATABASE.match(database):
        raise ConfigError(f"database name {database!r} is not a plain identifier")
    span_rows = _rows(client, database, _SPAN_SQL, route=route)
    counts = {str(table): int(n) for table, n, _, _ in span_rows}
    span = _span(span_rows)
    flags = tuple(FlagsVersion(*row) for row in _rows(client, database, _FLAGS_SQL, route=route))
    decisions = tuple(Decision(*row) for row in _rows(client, database, _DECISIONS_SQL,
                                                        route=route))  # fmt: skip
    if span is None and not flags and not decisions:
        raise UnknownRouteError(
            f"no data for route {route!r} in database {database!r}: no requests, comparisons, "
            "judgements, feedback, flags or gate decisions; check the route's name "
            "(`shadowlab flags show`)"
        )
    bucket = choose_bucket((span[1] - span[0]).total_seconds()) if span else BUCKETS_S[0]
    aggregates = {
        name: tuple(_arm_rows(_rows(client, database, sql, route=route, bucket=bucket)))
        for name, sql in (("latency", _LATENCY_SQL), ("errors", _ERRORS_SQL),
                          ("faithfulness", _FAITHFULNESS_SQL), ("csat", _CSAT_SQL))
    }  # fmt: skip
    answers = answer_rows(_rows(client, database, ANSWERS_SQL, route=route))
    return ReportData(route, span, bucket, counts, flags=flags, decisions=decisions,
                      answers=answers, **aggregates)  # fmt: skip


def _arm_rows(rows: Iterable[tuple[Any, ...]]) -> Iterable[ArmRow]:
    for t, arm, value, n in rows:
        if value is not None:
            yield utc(t), str(arm), float(value), int(n)


def build_report(client: Client, database: str, route: str, *, title: str | None = None) -> str:
    """Build the report of ``route`` as one self-contained HTML page.

    Args:
        client: a clickhouse-connect client (chDB or a server).
        database: shadowlab's database.
        route: the route to report on.
        title: the page title (default ``shadowlab report: ROUTE``).

    Raises:
        UnknownRouteError: nothing is stored for the route.
        ConfigError: ``database`` is not a plain identifier.
    """
    return render(load(client, database, route), title)
