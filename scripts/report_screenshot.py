"""Screenshot the report of a synthetic 72-hour rollout (the README's ``docs/report.png``).

    python scripts/report_screenshot.py [--out docs/report.png] [--html report.html]

Stores the rollout of ``tests/shadowlab/report_sample.py`` (shadow, canary 5 → 25 → 50 %,
rolled back by the p95 latency gate) in a throw-away chDB database, builds the report,
renders it with headless Chromium and saves the PNG with a reduced palette (small enough
for a README).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    """Write the screenshot (and optionally the HTML) and print their sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "report.png")
    parser.add_argument("--html", type=Path, help="also keep the HTML page here")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1780)
    parser.add_argument("--colours", type=int, default=64, help="palette size of the PNG")
    parser.add_argument("--per-hour", type=int, default=240, help="requests per hour")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))  # the sample rollout lives with the tests

    from PIL import Image  # noqa: PLC0415 - the dev extra

    from shadowlab.report import build_report  # noqa: PLC0415
    from sinks.clickhouse import open_client  # noqa: PLC0415
    from sinks.migrations import apply_migrations  # noqa: PLC0415
    from tests.shadowlab import report_sample  # noqa: PLC0415
    from tests.shadowlab.chromium import screenshot  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        client = open_client(f"chdb://{tmp}/chdb")
        apply_migrations(client, "shadowlab")
        report_sample.insert(
            client, "shadowlab", report_sample.rollout(per_hour=args.per_hour, markup=False)
        )
        page = Path(tmp) / "report.html"
        page.write_text(build_report(client, "shadowlab", report_sample.ROUTE), encoding="utf-8")
        client.close()
        if args.html is not None:
            args.html.write_bytes(page.read_bytes())
            print(f"wrote {args.html} ({args.html.stat().st_size:,} bytes)")
        shot = Path(tmp) / "shot.png"
        screenshot(page, shot, width=args.width, height=args.height)
        with Image.open(shot) as image:
            small = image.convert("RGB").quantize(args.colours, dither=Image.Dither.NONE)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        small.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
