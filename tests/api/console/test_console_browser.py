"""The operator console in a real browser: Debian's chromium driven by playwright.

The service runs in a thread of its own (its own trio loop, ports 0 on
loopback) because playwright's sync API blocks the thread that calls it.
One browser serves the whole module; each test gets a fresh browser context
(its own sessionStorage). Chromium is required, not optional: without
``/usr/bin/chromium`` these tests fail with the command that installs it
(``.ci/run`` installs it).

``CONSOLE_SCREENSHOT`` names where the screenshot test writes its PNG
(default ``build/console.png``; ``docs/console.png`` is made this way).
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import trio
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from mdactors.api.admin.chaos_orders import ORDERS
from mdactors.app import Service, build_service
from mdactors.settings import load_settings
from tests.conftest import ROOT, TEST_ENV

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "console-test-token"
ENV = {"PRICE_UPDATE_INTERVAL": "100ms", "ADMIN_TOKEN": TOKEN}


@contextmanager
def service_thread(env: Mapping[str, str]) -> Iterator[Service]:
    """A whole service in a thread running its own trio loop; drained on exit."""
    settings = load_settings(environ={**TEST_ENV, **env}, dotenv=None)
    service = build_service(settings, handle_signals=False)
    ready = threading.Event()
    token: list[trio.lowlevel.TrioToken] = []
    errors: list[BaseException] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            token.append(trio.lowlevel.current_trio_token())
            ready.set()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as error:  # reported by the test thread
            errors.append(error)
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="mdactors-service", daemon=True)
    thread.start()
    ready.wait(30)
    if errors or not token:
        raise RuntimeError(f"the service did not start: {errors}")
    try:
        yield service
    finally:
        trio.from_thread.run_sync(service.context.lifecycle.begin_drain, trio_token=token[0])
        thread.join(15)
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    with service_thread(ENV) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


def _url(service: Service, path: str = "/console") -> str:
    return f"http://127.0.0.1:{service.ports['http']}{path}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], errors


def _admin(page: Page, token: str) -> None:
    """Put ``token`` in the tab's sessionStorage before the console starts."""
    page.add_init_script(f"sessionStorage.setItem('mdactors.adminToken', {token!r})")


BTC_PRICE = '#symbols tr[data-symbol="BTC/USD"] td.num'


def test_console_loads_and_a_price_updates_within_3_s(service: Service, page: Page) -> None:
    started = time.perf_counter()
    page.goto(_url(service))
    cell = page.locator(BTC_PRICE).first
    expect(cell).not_to_have_text("—")
    first_data = time.perf_counter() - started
    first = cell.text_content()
    page.wait_for_function(
        "([cell, first]) => document.querySelector(cell).textContent !== first",
        arg=[BTC_PRICE, first],
        timeout=3_000,
    )
    expect(page.locator("#conn-prices")).to_have_attribute("data-state", "live")
    expect(page.locator("#conn-ws")).to_have_attribute("data-state", "live")
    expect(page.locator("#chart canvas").first).to_be_visible()
    expect(page.locator("#age")).to_contain_text("last update")
    timing = page.evaluate(
        """() => ({
            paint: performance.getEntriesByName("first-contentful-paint")[0].startTime,
            data: performance.getEntriesByName("mdactors:first-data")[0].startTime,
            bytes: performance.getEntriesByType("resource")
                .concat(performance.getEntriesByType("navigation"))
                .filter((entry) => new URL(entry.name).pathname.startsWith("/console"))
                .reduce((sum, entry) => sum + entry.encodedBodySize, 0),
        })"""
    )
    # Reported, not asserted: timings belong to benches (the cores here are shared).
    print(
        f"first paint {timing['paint']:.0f} ms, first data {timing['data']:.0f} ms after "
        f"navigation ({first_data * 1000:.0f} ms from goto), page {timing['bytes'] / 1024:.0f} KB"
    )


def test_wrong_admin_token_shows_the_401_and_the_right_one_works(
    service: Service, page: Page
) -> None:
    page.goto(_url(service))
    form = page.locator("#token-form")
    expect(form).to_be_visible()
    page.fill("#token-input", "not-the-token")
    page.click("#token-form button")
    alert = page.locator("#chaos-auth-error")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("401")
    expect(page.locator("#chaos-controls")).to_be_hidden()
    page.fill("#token-input", TOKEN)
    page.click("#token-form button")
    expect(page.locator("#chaos-controls")).to_be_visible()
    expect(alert).to_be_hidden()
    expect(page.locator("#kind-select option")).to_have_count(len(ORDERS))


def _price_shock_form(service: Service, page: Page) -> Locator:
    """The console open with the admin token, its form showing the price-shock kind."""
    _admin(page, TOKEN)
    page.goto(_url(service))
    page.select_option("#kind-select", "price-shock")
    return page.locator("#scenario-form")


def test_price_shock_from_the_form_moves_the_last_candle_down_and_stops(
    service: Service, page: Page
) -> None:
    form = _price_shock_form(service, page)
    legend = page.locator("#legend")
    expect(legend).to_have_attribute("data-close", re.compile(r".+"))
    before = float(legend.get_attribute("data-close") or "nan")
    form.locator('input[name="symbol"]').fill("BTC/USD")
    form.locator('input[name="shock_percentage"]').fill("-12")
    form.locator('input[name="duration_seconds"]').fill("120")
    form.locator('input[name="recovery_time_seconds"]').fill("0")
    form.locator("button[type=submit]").click()
    expect(form.locator(".form-status")).to_contain_text("started")
    row = page.locator('#active tr[data-type="price_shock"]')
    expect(row).to_have_count(1)
    expect(row).to_contain_text("BTC/USD")
    page.wait_for_function(
        "(bound) => Number(document.querySelector('#legend').dataset.close) < bound",
        arg=before * 0.95,
    )
    row.locator("button[data-stop]").click()
    expect(row).to_have_count(0)
    expect(page.locator("#active-empty")).to_be_visible()


def test_out_of_range_value_shows_the_services_422_next_to_the_field(
    service: Service, page: Page
) -> None:
    form = _price_shock_form(service, page)
    form.locator('input[name="shock_percentage"]').fill("-90")
    form.locator("button[type=submit]").click()
    error = form.locator('[data-field="shock_percentage"] .field-error')
    expect(error).to_be_visible()
    expect(error).to_contain_text("MAX_PRICE_DEVIATION")
    expect(form.locator('input[name="shock_percentage"]')).to_have_attribute("aria-invalid", "true")
    assert service.context.scenarios.active() == []


def test_listeners_panel_shows_the_consoles_own_streams(service: Service, page: Page) -> None:
    page.goto(_url(service))
    expect(page.locator('#transports tr[data-transport="sse"] td >> nth=1')).not_to_have_text("0")
    expect(page.locator('#transports tr[data-transport="ws"] td >> nth=1')).not_to_have_text("0")
    expect(page.locator("#loop-lag")).to_contain_text("ms now")
    expect(page.locator('#dependencies li[data-status="ok"]').first).to_be_visible()


def test_without_chaos_the_controls_are_absent_and_the_console_says_why(
    browser: Browser,
) -> None:
    with service_thread({"CHAOS_ENABLED": "false"}) as service:
        context = browser.new_context()
        page = context.new_page()
        page.goto(_url(service))
        notice = page.locator("#chaos-unavailable")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text("CHAOS_ENABLED=false")
        expect(page.locator("#chaos-controls")).to_be_hidden()
        expect(page.locator("#token-form")).to_be_hidden()
        context.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_console_shows_reconnecting_while_the_service_is_down_and_resubscribes(
    browser: Browser,
) -> None:
    ports = {"HTTP_PORT": str(_free_port()), "WS_PORT": str(_free_port())}
    context = browser.new_context()
    page = context.new_page()
    with service_thread(ports) as first:
        page.goto(_url(first))
        expect(page.locator("#conn-ws")).to_have_attribute("data-state", "live")
        expect(page.locator("#conn-prices")).to_have_attribute("data-state", "live")
    expect(page.locator("#conn-ws")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#conn-prices")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#age")).to_have_attribute("data-stale", "true")
    with service_thread(ports) as second:
        expect(page.locator("#conn-prices")).to_have_attribute("data-state", "live")
        expect(page.locator("#conn-ws")).to_have_attribute("data-state", "live")
        expect(page.locator("#age")).to_have_attribute("data-stale", "false")
        assert second.context.streams.by_type["ws"] == 1
    context.close()


def test_a_screenshot_of_the_console_is_written(service: Service, page: Page) -> None:
    target = Path(os.environ.get("CONSOLE_SCREENSHOT", ROOT / "build" / "console.png"))
    target.parent.mkdir(parents=True, exist_ok=True)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    shock = {"symbol": "ETH/USD", "shock_percentage": -8, "duration_seconds": 300}
    response = httpx.post(_url(service, "/chaos/price-shock"), json=shock, headers=headers)
    assert response.status_code == 201, response.text
    _admin(page, TOKEN)
    page.goto(_url(service))
    page.locator('#symbols tr[data-symbol="ETH/USD"]').click()
    expect(page.locator('#active tr[data-type="price_shock"]')).to_have_count(1)
    expect(page.locator("#heatmap td").first).to_be_visible()
    expect(page.locator("#tape tr.buy, #tape tr.sell").first).to_be_visible()
    expect(page.locator('#transports tr[data-transport="sse"] td >> nth=1')).not_to_have_text("0")
    expect(page.locator("#legend")).to_have_attribute("data-close", re.compile(r".+"))
    page.screenshot(path=str(target), full_page=True)
    data = target.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000
    httpx.delete(_url(service, f"/chaos/stop-scenario/{response.json()['id']}"), headers=headers)
