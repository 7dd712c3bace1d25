"""Open Superset dashboards in headless Chromium as a person would: log in, open, wait until no chart is
loading, count the charts rendered and those in error, take a screenshot.

Playwright drives Debian's `chromium` (`/usr/bin/chromium`; Playwright's own browser download is not
needed). Used by the browser test and by `make bench-bi` (time until a dashboard has fully rendered).
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from lakehouse.settings import LakehouseSettings

CHART = "[data-test='chart-grid-component']"
RENDERED = "[data-test='chart-grid-component'] [data-test='chart-container']"
LOADING = "[data-test='chart-grid-component'] [data-test='loading-indicator'], [data-test='chart-grid-component'] .loading"
ERROR = "[data-test='chart-grid-component'] .ant-alert-error"


@dataclass
class Rendered:
    url: str
    rendered: int
    charts: int
    seconds: float
    screenshot: Path
    errors: list[str] = field(default_factory=list)


def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise FileNotFoundError(
            "Debian's chromium is missing: apt-get install -y chromium (make setup does it)"
        )
    return path


def render_dashboards(
    s: LakehouseSettings, urls: list[str], out_dir: Path, timeout: float = 120.0
) -> list[Rendered]:
    """Each dashboard rendered in one logged-in browser session, in order."""
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{s.superset_url}/login/")
            page.wait_for_selector("input#username", timeout=timeout * 1000)
            page.fill("input#username", s.superset_admin_user)
            page.fill("input#password", s.superset_admin_password)
            page.keyboard.press("Enter")
            page.wait_for_url(re.compile(r".*/superset/welcome/.*"), timeout=timeout * 1000)
            for url in urls:
                started = time.monotonic()
                for attempt in (1, 2):
                    page.goto(url)
                    page.wait_for_selector(CHART, timeout=timeout * 1000)
                    charts = page.locator(CHART).count()
                    deadline = time.monotonic() + timeout / 2
                    while time.monotonic() < deadline:
                        done = page.locator(RENDERED).count() + page.locator(ERROR).count()
                        if done >= charts and page.locator(LOADING).count() == 0:
                            break
                        page.wait_for_timeout(200)
                    if attempt == 2 or page.locator(CHART).count() == charts:
                        break
                    # The grid emptied itself after showing its charts (seen once, right after the dashboard
                    # was re-imported): reload once, as a person would; a dashboard still empty fails.
                seconds = time.monotonic() - started
                errors = [e.inner_text()[:300] for e in page.locator(ERROR).all()]
                shot = out_dir / f"superset-{url.rstrip('/').rsplit('/', 1)[-1]}.png"
                page.wait_for_timeout(500)  # let the last chart's animation settle for the picture
                page.screenshot(path=str(shot), full_page=True)
                results.append(Rendered(url, page.locator(RENDERED).count(), charts, seconds, shot, errors))
        finally:
            browser.close()
    return results
