"""The HTML report: pure SVG helpers, and the page built from a real chDB database."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clickhouse_connect.driver.client import Client

from schemas import FeedbackEvent, GateDecision, RequestEvent
from shadowlab.core.errors import UnknownRouteError
from shadowlab.report import (
    BUCKETS_S,
    MAX_POINTS,
    Decision,
    FlagsVersion,
    ReportData,
    build_report,
    choose_bucket,
    decision_markers,
    fmt_number,
    render,
    summarise,
    version_instants,
)
from shadowlab.svgchart import (
    Marker,
    Point,
    Series,
    YAxis,
    fit,
    free_gap,
    line_chart,
    nice_ticks,
    tick_label,
    time_ticks,
)
from shadowlab.testing import sample_request
from sinks.clickhouse import insert_events
from sinks.migrations import apply_migrations
from tests.shadowlab import report_sample
from tests.shadowlab.report_sample import CANDIDATE, PRIMARY, ROUTE, T0, Rollout, at

REPO = Path(__file__).resolve().parents[2]

# --- parsing the page -------------------------------------------------------------------------


class Page(HTMLParser):
    """The parts of the report a test reads: chart points and markers, table rows, texts."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.svg: str | None = None
        self.table: str | None = None
        self.points: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.markers: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.texts: dict[str, list[str]] = defaultdict(list)
        self.rows: dict[str, list[list[str]]] = defaultdict(list)
        self._cell: list[str] | None = None
        self._in_text = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "svg":
            self.svg = a["id"]
        elif tag == "table":
            self.table = a.get("id") or a.get("class") or "table"
        elif tag == "circle" and self.svg:
            self.points[self.svg].append(a)
        elif tag == "g" and self.svg and a.get("class") == "marker":
            self.markers[self.svg].append(a)
        elif tag == "text" and self.svg:
            self._in_text = True
        elif tag == "tr" and self.table:
            self.rows[self.table].append([])
        elif tag == "td" and self.table:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.svg = None
        elif tag == "table":
            self.table = None
        elif tag == "text":
            self._in_text = False
        elif tag == "td" and self._cell is not None and self.table:
            self.rows[self.table][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_text and self.svg:
            self.texts[self.svg].append(data)

    def series(self, chart: str, name: str) -> dict[str, tuple[float, int | None]]:
        """``data-t`` → (value, n) of one series of one chart."""
        return {
            p["data-t"]: (float(p["data-value"]), int(p["data-n"]) if "data-n" in p else None)
            for p in self.points[chart]
            if p.get("data-series") == name
        }


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hour(t: dt.datetime) -> str:
    return _iso(t.replace(minute=0, second=0, microsecond=0))


# --- pure helpers -----------------------------------------------------------------------------


def test_bucket_keeps_the_points_between_about_50_and_max() -> None:
    assert choose_bucket(72 * 3600) == 3600
    assert choose_bucket(600) == 60
    for hours in (3, 10, 50, 100, 500, 2000, 9000):
        bucket = choose_bucket(hours * 3600)
        assert 40 <= hours * 3600 / bucket <= MAX_POINTS, hours
    assert choose_bucket(10**9) == BUCKETS_S[-1]


def test_nice_ticks_are_round_and_cover_the_range() -> None:
    assert nice_ticks(0, 3000) == [0, 1000, 2000, 3000]
    assert nice_ticks(1, 5) == [1, 2, 3, 4, 5]
    assert nice_ticks(0, 0.1) == [0, 0.025, 0.05, 0.075, 0.1]
    assert nice_ticks(2, 2) == [2]
    assert [tick_label(t, 0.025) for t in (0, 0.05)] == ["0", "0.050"]
    assert tick_label(2500, 500) == "2,500"


def test_time_ticks_are_aligned_utc_instants_inside_the_span() -> None:
    ticks = time_ticks(T0 + dt.timedelta(minutes=17), T0 + dt.timedelta(hours=72))
    assert ticks[0] == T0 + dt.timedelta(hours=6)
    assert all((b - a) == dt.timedelta(hours=6) for a, b in itertools.pairwise(ticks))
    assert ticks[-1] == T0 + dt.timedelta(hours=72)
    short = time_ticks(T0, T0 + dt.timedelta(minutes=40))
    assert short[1] - short[0] == dt.timedelta(minutes=5)


def test_free_gap_and_fit() -> None:
    assert free_gap(0, 100, [(10, 20), (60, 70)]) == (20, 60)
    assert free_gap(0, 100, [(-5, 95)]) == (95, 100)
    assert free_gap(0, 100, []) == (0, 100)
    assert fit("rollback: p95_latency", 30) == "rollback: p95_latency"
    assert fit("abcdef", 4) == "abc…"


_AXIS = YAxis("p95", lambda v: f"{v:.0f}", "ms")
_SPAN = (T0, T0 + dt.timedelta(hours=10))


def _points(*hours_values: tuple[int, float]) -> tuple[Point, ...]:
    return tuple(Point(at(h), v, 10) for h, v in hours_values)


def test_line_chart_draws_each_point_with_its_numbers_and_breaks_at_gaps() -> None:
    series = Series("canary", "#ff7f0e", _points((0, 100.0), (1, 200.0), (5, 300.0)))
    svg = line_chart("lat", "c1", [series], span=_SPAN, axis=_AXIS, bucket_s=3600)
    page = Page(svg)
    assert page.series("c1", "canary") == {
        _iso(at(0)): (100.0, 10),
        _iso(at(1)): (200.0, 10),
        _iso(at(5)): (300.0, 10),
    }
    path = re.search(r'<path d="([^"]+)"', svg)
    assert path is not None
    assert path[1].count("M") == 2  # hours 1 → 5 is a gap: two segments
    assert "no data" not in svg
    assert "canary · 06-01 01:00 · 200 ms · n=10" in svg


def test_line_chart_without_points_says_no_data() -> None:
    svg = line_chart(
        "Faithfulness", "c2", [Series("primary", "#000", ())], span=_SPAN, axis=_AXIS, bucket_s=60
    )
    assert "no data" in svg
    assert "<circle" not in svg
    assert 'id="c2"' in svg


def test_line_chart_escapes_text_and_drops_markers_outside_the_span() -> None:
    markers = [
        Marker(at(3), "rollback: <b>x</b>", "#d62728"),
        Marker(at(30), "far away", "#000"),
    ]
    series = Series("<i>arm</i>", "#123456", _points((2, 1.0)))
    svg = line_chart(
        "t <script>", "c3", [series], span=_SPAN, axis=_AXIS, bucket_s=3600, markers=markers
    )
    assert "<script>" not in svg
    assert "<b>" not in svg
    assert "<i>" not in svg
    assert "t &lt;script&gt;" in svg
    page = Page(svg)
    assert [m["data-t"] for m in page.markers["c3"]] == [_iso(at(3))]
    assert page.markers["c3"][0]["data-label"] == "rollback: <b>x</b>"


def test_step_series_runs_to_the_end_of_the_span() -> None:
    steps = Series("weight", "#000", (Point(at(0), 0.0), Point(at(4), 50.0)), step=True)
    axis = YAxis("w", str, "%", lo=0, hi=100)
    svg = line_chart("w", "c4", [steps], span=_SPAN, axis=axis, bucket_s=3600)
    path = re.search(r'<path d="([^"]+)"', svg)
    assert path is not None
    assert re.fullmatch(r"M[\d.]+,[\d.]+H[\d.]+V[\d.]+H1136\.0", path[1]), path[1]


def _flags(version: int, **changes: Any) -> FlagsVersion:
    base: dict[str, Any] = {
        "version": version, "stage": "canary", "primary": "a", "canary": "b",
        "canary_weight_bp": 100, "override": None, "changed_at": T0, "changed_by": "x",
        "reason": "", "paused": False, "stage_since": None, "step_since": None,
    }  # fmt: skip
    return FlagsVersion(**{**base, **changes})


def test_version_instants_use_the_controllers_event_time() -> None:
    span = (T0, at(48))
    flags = [
        _flags(1, stage="offline", changed_at=T0 - dt.timedelta(days=3)),  # before the data
        _flags(2, step_since=at(2), changed_at=at(500)),  # the controller: event time
        _flags(3, step_since=at(2), paused=True, changed_at=at(5)),  # by hand, live
        _flags(4, step_since=at(2), stage="rolled_back", changed_at=at(900)),  # by hand, replay
        _flags(5, step_since=at(7), stage_since=at(7)),
    ]
    assert version_instants(flags, span) == [T0, at(2), at(5), at(5), at(7)]


def _decision(hour: int, gate: str, action: str, stage: str = "canary") -> Decision:
    return Decision(stage, gate, "pass", action, 1.0, 2.0, 1.1, 0.9, 1.2, 5, T0, at(hour), at(hour))


def test_one_marker_per_moving_tick_labelled_with_where_it_went() -> None:
    flags = [_flags(1, stage="shadow", canary_weight_bp=0), _flags(2, canary_weight_bp=500)]
    decisions = [
        _decision(1, "p95_latency", "hold"),
        _decision(2, "error_rate", "advance", "shadow"),
        _decision(2, "p95_latency", "advance", "shadow"),
        _decision(9, "p95_latency", "rollback"),
        _decision(9, "csat", "rollback"),
        _decision(9, "error_rate", "none"),
    ]
    markers = decision_markers(decisions, flags, [at(0), at(2)])
    assert [(m.t, m.label) for m in markers] == [
        (at(2), "advance → canary 5%"),
        (at(9), "rollback: csat, p95_latency"),
    ]
    assert markers[1].colour != markers[0].colour


def test_summary_names_the_outcome() -> None:
    assert summarise([]).outcome.startswith("no rollout recorded")
    rolled = summarise([_flags(1), _flags(2, stage="rolled_back", reason="gate failed: x")])
    assert (rolled.primary, rolled.candidate, rolled.stage) == ("a", "b", "rolled_back")
    assert rolled.outcome == "rolled back by x: gate failed: x"
    promoted = summarise([_flags(1), _flags(2, stage="promoted", primary="b", canary=None)])
    assert (promoted.primary, promoted.candidate) == ("a", "b")
    assert promoted.outcome == "promoted: b replaced a"
    assert summarise([_flags(1, canary_weight_bp=2500)]).outcome == "in progress: canary at 25%"


def test_numbers_are_formatted_for_people() -> None:
    assert [fmt_number(v) for v in (None, 1.23456, 1828.4, -0.0017463, float("nan"))] == [
        "–", "1.235", "1828", "-0.001746", "–",
    ]  # fmt: skip


def test_render_without_any_event_draws_every_chart_as_no_data() -> None:
    html = render(ReportData("faq", None, 60))
    page = Page(html)
    assert html.count("no data") == 5
    assert not page.points
    assert "no gate decisions recorded" in html


# --- the page from chDB -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(clickhouse: Client) -> Iterator[tuple[str, Rollout]]:
    """The synthetic 72-hour rollout stored in a fresh database (shared by this module)."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    apply_migrations(clickhouse, database)
    events = report_sample.rollout(seed=1, per_hour=90)
    report_sample.insert(clickhouse, database, events)
    report_sample.insert(clickhouse, database, Rollout(requests=events.requests[:500]))  # again
    yield database, events
    clickhouse.command(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture(scope="module")
def html(clickhouse: Client, stored: tuple[str, Rollout]) -> str:
    return build_report(clickhouse, stored[0], ROUTE)


@pytest.fixture(scope="module")
def page(html: str) -> Page:
    return Page(html)


def _by_hour_and_arm(
    items: list[tuple[dt.datetime, str, float]], reduce: Callable[[np.ndarray], float]
) -> dict[tuple[str, str], tuple[float, int]]:
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for t, arm, value in items:
        groups[(arm, _hour(t))].append(value)
    return {k: (reduce(np.array(v)), len(v)) for k, v in groups.items()}


def _assert_series(
    page: Page, chart: str, expected: dict[tuple[str, str], tuple[float, int]]
) -> None:
    arms = {arm for arm, _ in expected}
    for arm in arms:
        want = {t: vn for (a, t), vn in expected.items() if a == arm}
        got = page.series(chart, arm)
        assert set(got) == set(want), (chart, arm)
        for t, (value, n) in want.items():
            assert got[t][0] == pytest.approx(value, rel=1e-5, abs=1e-9), (chart, arm, t)
            assert got[t][1] == n, (chart, arm, t)
    drawn = {p["data-series"] for p in page.points[chart]}
    assert drawn == arms


def _p95(values: np.ndarray) -> float:
    # ClickHouse's quantileExact(0.95): the sorted value at floor(0.95 n), which is numpy's
    # "higher" method for this level
    return float(np.percentile(values, 95, method="higher"))


def test_p95_latency_per_arm_and_hour_matches_numpy(
    page: Page, stored: tuple[str, Rollout]
) -> None:
    events = stored[1]
    items = [(r.event_time, r.arm, r.latency_ms) for r in events.requests if r.status == "ok"]
    items += [
        (c.event_time, "shadow", c.candidate_latency_ms)
        for c in events.comparisons
        if c.candidate_status == "ok" and c.candidate_latency_ms is not None
    ]
    expected = _by_hour_and_arm(items, _p95)
    assert {arm for arm, _ in expected} == {"primary", "canary", "override", "shadow"}
    assert len(expected) > 120  # every hour of every arm
    _assert_series(page, "chart-latency", expected)


def test_error_rate_per_arm_and_hour(page: Page, stored: tuple[str, Rollout]) -> None:
    events = stored[1]
    items = [(r.event_time, r.arm, float(r.status != "ok")) for r in events.requests]
    items += [
        (c.event_time, "shadow", float(c.candidate_status != "ok"))
        for c in events.comparisons
        if c.status == "joined"
    ]
    _assert_series(page, "chart-errors", _by_hour_and_arm(items, lambda v: float(v.mean())))


def test_faithfulness_and_csat_means_per_arm(page: Page, stored: tuple[str, Rollout]) -> None:
    events = stored[1]
    scores = [(j.event_time, j.arm, j.score) for j in events.judgements if j.score is not None]
    _assert_series(page, "chart-faithfulness", _by_hour_and_arm(scores, lambda v: float(v.mean())))
    csat = [
        (f.event_time, f.arm or "unknown", float(f.csat))
        for f in events.feedback
        if f.csat is not None
    ]
    _assert_series(page, "chart-csat", _by_hour_and_arm(csat, lambda v: float(v.mean())))


def test_canary_weight_steps_at_the_controllers_event_times(page: Page) -> None:
    weight = page.points["chart-weight"]
    assert [(p["data-t"], float(p["data-value"])) for p in weight] == [
        (_iso(T0), 0.0),  # v1: promoted before the data: at the start
        (_iso(T0), 0.0),  # v2: rollout started by hand (offline), before the data
        (_iso(at(2)), 0.0),  # shadow
        (_iso(at(8)), 5.0),
        (_iso(at(14)), 25.0),
        (_iso(at(26)), 50.0),
        (_iso(at(40)), 0.0),  # rolled back
    ]
    labels = "".join(page.texts["chart-weight"])
    for stage in ("shadow", "canary", "rolled back"):
        assert stage in labels


def test_every_chart_marks_the_decisions_that_moved_the_rollout(page: Page) -> None:
    expected = [
        (_iso(at(2)), "advance → shadow"),
        (_iso(at(8)), "advance → canary 5%"),
        (_iso(at(14)), "advance → canary 25%"),
        (_iso(at(26)), "advance → canary 50%"),
        (_iso(at(40)), "rollback: p95_latency"),
    ]
    for chart in ("chart-latency", "chart-errors", "chart-faithfulness", "chart-csat",
                  "chart-weight"):  # fmt: skip
        assert [(m["data-t"], m["data-label"]) for m in page.markers[chart]] == expected, chart


def test_header_names_models_stage_and_outcome(page: Page) -> None:
    facts = [row[0] for row in page.rows["facts"]]  # one <th> and one <td> per row
    assert facts[:5] == [
        ROUTE,
        PRIMARY,
        CANDIDATE,
        "rolled back",
        f"rolled back by shadowlab-gates: {report_sample.ROLLBACK_REASON}",
    ]
    assert facts[5] == "2026-06-01 00:00 → 2026-06-03 23:59 UTC, buckets of 1 h"


def test_the_table_lists_every_decision_in_order(page: Page, stored: tuple[str, Rollout]) -> None:
    decisions: list[GateDecision] = sorted(
        stored[1].decisions, key=lambda d: (d.decided_at, d.gate, d.stage, d.decision_id)
    )
    rows = page.rows["decisions"][1:]  # the header row has no <td>
    assert len(rows) == len(decisions) > 100
    for row, d in zip(rows, decisions, strict=True):
        assert row[:5] == [d.decided_at.strftime("%m-%d %H:%M"), d.stage, d.gate, d.outcome,
                           d.action]  # fmt: skip
        assert row[5] == d.margin
        assert row[6:11] == [
            fmt_number(v) for v in (d.value, d.baseline, d.threshold, d.ci_low, d.ci_high)
        ]
        assert row[11] == f"{d.n:,}"
        assert row[12:14] == [
            f"{d.needed_n:,}" if d.needed_n is not None else "",
            f"{d.eta_h:.1f}" if d.eta_h is not None else "",
        ]
        assert row[14] == (f"{d.window_start:%Y-%m-%d %H:%M} → {d.window_end:%Y-%m-%d %H:%M}")
    moves = page.rows["moves"][1:]
    assert len(moves) == sum(d.action in ("advance", "promote", "rollback") for d in decisions)
    assert moves[-1][3:5] == ["fail", "rollback"]


def test_text_is_escaped_and_nothing_external_is_referenced(html: str) -> None:
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the odd gate name
    assert "&lt;script&gt;alert(&#x27;reason&#x27;)&lt;/script&gt;" in html  # the reason
    assert "http://" not in html
    assert "https://" not in html
    assert not re.search(r"""\b(?:src|href|xlink:href)\s*=""", html, re.IGNORECASE)
    assert "@import" not in html
    assert "url(" not in html
    assert html.startswith("<!DOCTYPE html>")


def test_same_data_same_page(clickhouse: Client, stored: tuple[str, Rollout], html: str) -> None:
    assert build_report(clickhouse, stored[0], ROUTE) == html
    titled = build_report(clickhouse, stored[0], ROUTE, title="Q3 <rollout>")
    assert "<title>Q3 &lt;rollout&gt;</title>" in titled


def test_a_route_without_judgements_feedback_or_flags_says_no_data(
    clickhouse: Client, ch_db: str
) -> None:
    requests: list[RequestEvent] = [
        sample_request(request_id=f"r{i}", event_time=at(i / 6), route="faq", latency_ms=100.0 + i)
        for i in range(60)
    ]
    feedback = FeedbackEvent.parse(
        {"feedback_id": "f1", "request_id": "r1", "event_time": at(1), "route": "faq",
         "thumbs": "up"}
    )  # fmt: skip
    insert_events(clickhouse, ch_db, requests)
    insert_events(clickhouse, ch_db, [feedback])  # thumbs only: no CSAT
    page = Page(build_report(clickhouse, ch_db, "faq"))
    for chart in ("chart-faithfulness", "chart-csat", "chart-weight"):
        assert "no data" in page.texts[chart], chart
        assert not page.points[chart]
    assert "no data" not in page.texts["chart-latency"]
    # 9 h 50 min of requests, one every 10 min: 5-minute buckets, one request in every other
    assert len(page.series("chart-latency", "primary")) == 60
    assert "buckets of 5 min" in page.rows["facts"][5][0]
    assert "no rollout recorded (no routing flags)" in {r[0] for r in page.rows["facts"]}
    assert page.rows["decisions"] == []


def test_an_unknown_route_raises_and_values_are_bound(clickhouse: Client, ch_db: str) -> None:
    insert_events(clickhouse, ch_db, [sample_request(route="faq")])
    with pytest.raises(UnknownRouteError, match="no data for route 'nope'"):
        build_report(clickhouse, ch_db, "nope")
    with pytest.raises(UnknownRouteError):  # a bound value: no SQL error, no match
        build_report(clickhouse, ch_db, "faq' OR '1'='1")


# --- the command line -------------------------------------------------------------------------


def _shadowlab(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWLAB_")}
    env.update({"SHADOWLAB_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"})
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=tmp_path, env=env,
        timeout=120, check=False,
    )  # fmt: skip


_STORE = """
import sys
sys.path.insert(0, sys.argv[1])
from shadowlab.core.settings import load_settings
from sinks.clickhouse import open_client
from sinks.migrations import apply_migrations
from tests.shadowlab import report_sample
settings = load_settings()
client = open_client(settings.clickhouse.dsn_value(settings.data_dir))
apply_migrations(client, settings.clickhouse.database)
report_sample.insert(client, settings.clickhouse.database, report_sample.rollout(per_hour=10))
"""


def test_cli_writes_the_report_and_refuses_an_unknown_route(tmp_path: Path) -> None:
    # chDB allows one engine path per process: the database lives in subprocesses
    stored = _shadowlab(tmp_path, "-c", _STORE, str(REPO))
    assert stored.returncode == 0, stored.stderr
    out = tmp_path / "out" / "r.html"
    done = _shadowlab(tmp_path, "-m", "shadowlab", "report", ROUTE, "--out", str(out))
    assert done.returncode == 0, done.stderr
    size = out.stat().st_size
    assert f"wrote {out}" in done.stdout
    assert f"{size:,} bytes" in done.stdout
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert len(Page(text).markers["chart-latency"]) == 5
    missing = tmp_path / "missing.html"
    refused = _shadowlab(tmp_path, "-m", "shadowlab", "report", "nope", "--out", str(missing))
    assert refused.returncode == 3
    assert "no data for route 'nope'" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not missing.exists()
