"""What an analyst sees, read off the Dagster UI's pages in a real browser.

``dashtam demo`` fills a temporary data dir (once per session), ``dagster-webserver``
serves it as ``make ui`` does, and Debian's Chromium, driven by Playwright, opens the pages
an analyst opens: the lineage (provider → dataset → mart), a FRED series' partition (its
own row count), a skipped asset's overview (its reason), the quotes' columns (their
descriptions) and the market group (not "0% filled"). Each page is saved as a screenshot
in ``$DASHTAM_UI_ARTIFACTS`` (default: pytest's temporary directory).

No browser is downloaded: the system's ``/usr/bin/chromium`` is used. Without it (or
without the ``playwright`` package) the module is skipped with the reason, except in CI
(``CI=true``), where a missing browser is a failure. ``test_ui_graphql.py`` asserts the same
facts without a browser.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashtam_pipeline_tests.machine import skip_unless_available
from dashtam_pipeline_tests.ui_helpers import Webserver, run_demo, warehouse_count, webserver

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PAGE_TIMEOUT_MS = 90_000


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


pytestmark = [
    pytest.mark.integration,
    # one worker runs the whole module: its session fixtures (a demo, a webserver) once
    pytest.mark.xdist_group("ui_browser"),
    skip_unless_available(_missing()),
]


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("ui_browser")
    run_demo(data_dir)
    return data_dir


@pytest.fixture(scope="session")
def server(demo_dir: Path) -> Iterator[Webserver]:
    with webserver(demo_dir) as running:
        yield running


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("DASHTAM_UI_ARTIFACTS")
    path = Path(where) if where else tmp_path_factory.mktemp("ui_screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium, closed with this module: Playwright's sync API keeps an event loop running
    in the worker's thread while it is open, which breaks later tests on the same worker
    that call ``asyncio.run`` (Dagster's automation-condition evaluator does)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, server: Webserver) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=server.url)
    # Dagster's first-visit "join the community" dialog would cover the page (the webserver
    # fixture marks it seen on the instance; this is the browser's own flag for it)
    context.add_init_script("try { localStorage.setItem('communityNux', '1'); } catch (e) {}")
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    yield page
    context.close()


def _open(page: Any, path: str, expect: str) -> None:
    """Open ``path`` and wait until ``expect`` is on the page; close the community
    dialog if it shows anyway."""
    page.goto(path)
    page.get_by_text(expect, exact=False).first.wait_for()
    skip = page.get_by_role("button", name="Skip")
    if skip.count():
        skip.first.click()


def _shot(page: Any, artifacts: Path, name: str, focus: Any = None) -> None:
    """Save the viewport, scrolled to ``focus`` (the fact the test reads) when given."""
    if focus is not None:
        focus.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=False)


def test_lineage_shows_provider_dataset_and_mart(
    page: Any, artifacts: Path
) -> None:
    _open(page, "/assets/macro/fred_observations?view=lineage&lineageScope=neighbors"
                "&lineageDepth=2", "fred_observations")
    page.get_by_text("macro_monthly_panel").first.wait_for()
    text = page.inner_text("body")
    _shot(page, artifacts, "lineage_fred")
    assert "fred" in text and "macro_monthly_panel" in text
    # the provider node is upstream: the graph holds the providers/fred external asset
    assert page.locator("text=/^fred$/").count() >= 1, text[:2000]


def test_fred_partition_shows_its_own_row_count(
    page: Any, artifacts: Path, demo_dir: Path
) -> None:
    expected = warehouse_count(
        demo_dir, "select count(*) from macro.fred_observations where series_id = 'UNRATE'"
    )
    total = warehouse_count(demo_dir, "select count(*) from macro.fred_observations")
    _open(page, "/assets/macro/fred_observations?view=partitions&partition=UNRATE", "UNRATE")
    row_count = page.get_by_text("dagster/row_count").first
    row_count.wait_for()
    _shot(page, artifacts, "fred_partition_unrate", row_count)
    text = page.inner_text("body")
    assert f"{expected:,}" in text or str(expected) in text, text[:3000]
    assert "table_row_count" in text and (f"{total:,}" in text or str(total) in text)


def test_skipped_asset_shows_its_reason_on_its_overview(page: Any, artifacts: Path) -> None:
    _open(page, "/assets/market/options_chain", "options_chain")
    reason = page.get_by_text("rights profile does not include options_chain").first
    reason.wait_for()
    _shot(page, artifacts, "options_chain_skipped", reason)
    assert "DASHTAM_RIGHTS_PROFILE=pro" in page.inner_text("body")


def test_quotes_columns_have_descriptions(page: Any, artifacts: Path) -> None:
    _open(page, "/assets/market/quotes", "Columns")
    change = page.get_by_text("price - previous_close").first
    change.wait_for()
    _shot(page, artifacts, "quotes_columns", change)
    text = page.inner_text("body")
    assert "Last traded price in USD" in text
    assert "<Check" not in text and "date32" not in text


def test_market_group_is_not_zero_percent_filled(page: Any, artifacts: Path) -> None:
    _open(page, "/locations/dashtam_pipeline/asset-groups/market", "quotes")
    filled_label = page.get_by_text(re.compile(r"\d+% filled")).first
    filled_label.wait_for()
    _shot(page, artifacts, "market_group", filled_label)
    text = page.inner_text("body")
    filled = [int(n) for n in re.findall(r"(\d+)% filled", text)]
    assert filled and all(n > 0 for n in filled), filled
