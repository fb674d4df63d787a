"""A real browser renders the report: headless Chromium takes a screenshot, Pillow reads it.

Chromium is required, not optional: without it this test fails and says how to install it
(``.ci/run`` installs it).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from clickhouse_connect.driver.client import Client
from PIL import Image

from shadowlab.report import ACTION_COLOURS, ARM_COLOURS, WEIGHT_COLOUR, build_report
from tests.shadowlab import report_sample
from tests.shadowlab.chromium import INSTALL_HINT, find_chromium, screenshot

WIDTH, HEIGHT = 1400, 2400


def _rgb(colour: str) -> tuple[int, int, int]:
    value = int(colour.removeprefix("#"), 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF


def test_chromium_renders_every_chart_of_the_report(
    clickhouse: Client, ch_db: str, tmp_path: Path
) -> None:
    if find_chromium() is None:
        pytest.fail(INSTALL_HINT)
    report_sample.insert(clickhouse, ch_db, report_sample.rollout(seed=2, per_hour=40))
    page = tmp_path / "report.html"
    page.write_text(build_report(clickhouse, ch_db, report_sample.ROUTE), encoding="utf-8")
    png = tmp_path / "report.png"

    log = screenshot(page, png, width=WIDTH, height=HEIGHT)

    assert png.is_file(), log
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size == (WIDTH, HEIGHT)
        rgb = image.convert("RGB")
    colours = rgb.getcolors(maxcolors=WIDTH * HEIGHT)
    assert colours is not None
    pixels = Counter({colour: count for count, colour in colours})
    assert len(pixels) > 500, "the page looks blank"
    white = pixels[(255, 255, 255)] / (WIDTH * HEIGHT)
    assert 0.3 < white < 0.97
    # every arm's line, the weight line and both kinds of decision markers are drawn
    for name, colour in {
        **ARM_COLOURS,
        "weight": WEIGHT_COLOUR,
        "advance": ACTION_COLOURS["advance"],
        "rollback": ACTION_COLOURS["rollback"],
    }.items():
        if name == "unknown":
            continue  # few points: drawn, but thin
        assert pixels[_rgb(colour)] > 150, (name, colour, pixels[_rgb(colour)])
    # the primary arm's line crosses each of the four per-arm charts (legend swatches are
    # narrower than `spread`); the rollback marker is drawn on all five charts
    assert len(_bands_of(rgb, ARM_COLOURS["primary"], spread=200)) == 4
    assert len(_bands_of(rgb, ACTION_COLOURS["rollback"])) == 5


def _bands_of(
    image: Image.Image, colour: str, *, spread: int = 0, gap: int = 40
) -> list[tuple[int, int]]:
    """The vertical extents (top, bottom rows) where ``colour`` occurs, split at gaps.

    Only rows where the colour's pixels lie at least ``spread`` pixels apart count.
    """
    hits = np.all(np.asarray(image) == np.array(_rgb(colour), dtype=np.uint8), axis=2)
    bands: list[tuple[int, int]] = []
    for y in np.flatnonzero(hits.any(axis=1)):
        xs = np.flatnonzero(hits[y])
        if xs[-1] - xs[0] < spread:
            continue
        if bands and y - bands[-1][1] <= gap:
            bands[-1] = (bands[-1][0], int(y))
        else:
            bands.append((int(y), int(y)))
    return bands
