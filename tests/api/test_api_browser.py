"""The interactive API docs in headless Chromium: Swagger UI renders from this server alone (no CDN) and
"Try it out" with a token reaches the API."""

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from apps.api import tokens
from tests.r1studio.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_docs_render_offline_and_try_it_out_uses_the_token(live_server, users, dataset, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
    _, token = tokens.issue_token(users["viewer"], "docs")
    server = urlsplit(live_server.url).netloc
    requested = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("request", lambda request: requested.append(request.url))
        page.goto(live_server.url + "/api/docs")
        expect(page.locator(".opblock-summary-path").first).to_be_visible(timeout=15_000)
        expect(page.locator(".title")).to_contain_text("R1 Studio API")
        assert page.locator(".opblock").count() >= 18  # every operation is listed

        page.get_by_role("button", name="Authorize").first.click()
        page.locator(".auth-container input").fill(token)
        page.locator(".auth-btn-wrapper .authorize").click()
        page.locator(".btn-done").click()
        operation = page.locator("#operations-datasets-list_datasets")
        operation.locator(".opblock-summary").click()
        operation.get_by_role("button", name="Try it out").click()
        operation.get_by_role("button", name="Execute").click()
        expect(operation.locator(".live-responses-table tbody .response-col_status").first).to_contain_text("200")
        expect(operation.locator(".live-responses-table")).to_contain_text("gsm-mini")
        browser.close()
    outside = [url for url in requested if urlsplit(url).netloc not in (server, "")]
    assert outside == [], f"the docs page fetched from outside the server: {outside}"
