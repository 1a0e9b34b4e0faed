"""The dashboard in a real browser (headless Chromium through Playwright) during a simulated run: it loads,
slots fill, it updates without a reload, a pin from the page shows the symbol pinned, a bad pin shows the
error; screenshots at 1280 and 390 px wide go to the test's folder, or to docs/img/ for the README with
`OBSERVER_SCREENSHOTS=docs/img`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.surfaces.support import REPO, call, start_observer, wait_until

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extras)")
if not CHROMIUM.exists():
    pytest.skip(
        "Debian chromium is not installed (apt-get install chromium; .ci/run does it)",
        allow_module_level=True,
    )


def test_the_dashboard_fills_updates_and_pins(tmp_path: Path) -> None:
    observer = start_observer(tmp_path)
    try:
        with playwright_api.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(observer.url)
            assert page.title() == "Observer"
            wait_until(lambda: page.text_content("#phase") != "-", 30, "the first update")
            page.wait_for_selector("#slots-body tr", timeout=90_000)
            version = int(page.get_attribute("body", "data-version") or "0")
            wait_until(
                lambda: int(page.get_attribute("body", "data-version") or 0) > version + 2,
                30,
                "three more updates without a reload",
            )
            assert page.locator("#live").text_content() == "live"

            # A candidate outside the slots when there is one (the pin brings it in), else an unpinned slot.
            rows = page.locator("#slots-body tr").all()
            slotted = {row.get_attribute("data-symbol") for row in rows}
            unpinned = [
                row.get_attribute("data-symbol") for row in rows if not row.get_attribute("data-pinned")
            ]
            candidates = call(observer.url, "/api/candidates")[1]["candidates"]
            symbol = next((c["symbol"] for c in candidates if c["symbol"] not in slotted), unpinned[0])
            page.fill("#control-symbol", symbol)
            page.click("#pin-button")
            page.wait_for_selector("#control-result.ok", timeout=30_000)
            assert f"{symbol} pinned" in (page.text_content("#control-result") or "")
            page.wait_for_selector(
                f'#slots-body tr[data-symbol="{symbol}"][data-pinned="true"]', timeout=60_000
            )

            page.fill("#control-symbol", "999999")
            page.click("#pin-button")
            page.wait_for_selector("#control-result.error", timeout=30_000)
            assert "not in today's universe" in (page.text_content("#control-result") or "")
            assert call(observer.url, "/api/slots")[1]["pinned"].count("999999") == 0

            other = next(candidate for candidate in sorted(slotted) if candidate != symbol)
            page.fill("#picks", f"{symbol} {other}:0.5")
            page.click("#picks-button")
            page.wait_for_selector("#control-result.ok", timeout=30_000)
            assert "2 picks loaded" in (page.text_content("#control-result") or "")

            wait_until(
                lambda: int(page.get_attribute("#tick-chart", "data-points") or 0) >= 2,
                60,
                "two points on the tick-rate chart",
            )
            wanted = os.environ.get("OBSERVER_SCREENSHOTS")
            shots = REPO / wanted if wanted else tmp_path
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / "dashboard-1280.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})
            page.wait_for_timeout(1500)
            width = page.locator("main").bounding_box()["width"]
            assert width <= 390, f"the page is {width} px wide on a 390 px phone"
            page.screenshot(path=str(shots / "dashboard-390.png"), full_page=True)
            browser.close()
        assert all(url.startswith(observer.url) for url in requests), "every asset comes from the observer"
    finally:
        assert observer.stop() == 0
