"""The report in a real browser: Playwright drives Debian's Chromium (``/usr/bin/chromium``, or
``AUDITOR_TEST_CHROMIUM``; Playwright's own browser downloads are not used) over a report with
galleries, opened from a file as a person would. What a person sees must be there (the galleries, their
pictures decoded), nothing may be fetched, and the console stays clean; the screenshots are kept in the
test's temporary directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Request, Route, sync_playwright

from auditor.report.html import render_report

from .test_galleries import N_MODES, make_previews, page

CHROMIUM = os.environ.get("AUDITOR_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium refuses its sandbox.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def open_report(browser: Browser, html: str, path: Path) -> tuple[Page, list[str], list[str]]:
    """Open ``html`` from ``path``; returns the page, every URL it asked for besides itself and data:
    URIs (each refused), and its console errors and uncaught exceptions."""
    path.write_text(html, encoding="utf-8")
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    fetched: list[str] = []
    errors: list[str] = []

    def refuse(route: Route, request: Request) -> None:
        fetched.append(request.url)
        route.abort()

    tab.route(lambda url: not url.startswith(("file://", "data:")), refuse)
    tab.on(
        "request",
        lambda request: None if request.url.startswith(("file://", "data:")) else fetched.append(request.url),
    )
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(path.as_uri(), wait_until="load")
    return tab, fetched, errors


def test_galleries_render_with_decoded_thumbnails_and_nothing_fetched(
    browser: Browser, tmp_path: Path
) -> None:
    tab, fetched, errors = open_report(browser, page(previews=make_previews()), tmp_path / "report.html")
    galleries = tab.locator("#galleries")
    assert galleries.is_visible()
    for heading in (
        "Closest copies",
        "Outside the real manifold",
        "Missing in the synthetic data",
        "Synthetic duplicates",
    ):
        assert tab.get_by_role("heading", name=heading).is_visible(), heading
    assert tab.locator("#gallery-copies .pair").count() == 2
    assert tab.locator("#modes li.mode-card").count() == N_MODES
    images = tab.evaluate(
        "Array.from(document.images).map(i => ({src: i.currentSrc.slice(0, 23), complete: i.complete, "
        "width: i.naturalWidth, shown: i.getBoundingClientRect().width}))"
    )
    assert len(images) == 7 + N_MODES
    assert all(i["complete"] and i["width"] == 32 and i["shown"] > 0 for i in images), images
    assert {i["src"] for i in images} == {"data:image/webp;base64,"}
    quote = tab.locator("#gallery-copies blockquote.preview-text")
    assert quote.is_visible() and quote.inner_text().startswith("<script>alert(1)</script>")  # shown as text
    assert tab.locator("#columns").get_by_text("malignant").is_visible()
    galleries.screenshot(path=str(tmp_path / "galleries.png"))
    tab.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "galleries.png").stat().st_size > 10_000 and (
        tmp_path / "report.png"
    ).stat().st_size > 10_000
    assert fetched == [] and errors == []


def test_withheld_previews_show_keys_and_no_images(browser: Browser, tmp_path: Path) -> None:
    tab, fetched, errors = open_report(browser, page(), tmp_path / "keys.html")
    assert tab.locator("#gallery-copies").get_by_text("synthetic/0007.png").is_visible()
    assert tab.evaluate("document.images.length") == 0
    tab.screenshot(path=str(tmp_path / "keys.png"), full_page=True)
    assert fetched == [] and errors == []


def test_a_planted_external_image_would_be_refused(browser: Browser, tmp_path: Path) -> None:
    """The harness itself: a page that does ask the network is caught (so an empty list means something)."""
    html = render_report({"audit_id": "x"}).replace(
        "</main>", '<img src="https://example.invalid/x.png"></main>'
    )
    _, fetched, errors = open_report(browser, html, tmp_path / "planted.html")
    assert fetched == ["https://example.invalid/x.png"]
    assert "Content Security Policy" in errors[0]  # and the report's CSP blocks it, saying so
