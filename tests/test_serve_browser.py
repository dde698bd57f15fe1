"""The search page in a real headless Chromium (Debian's package) driven by Playwright:
search, see results, toggle an overlay, upload a PDF and find it, delete it.

Skipped where /usr/bin/chromium is missing (CI installs it with apt). Playwright never
downloads a browser here: it drives the system one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pdfgen import make_sample_pdf
from serve_helpers import CHART_QUESTION, build_text_index, live_server

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = os.environ.get("MM_RETRIEVER_SCREENSHOTS")  # a folder: save the page's screenshots

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium) for the browser test",
)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, minilm_path: str):
    from mm_retriever.serve import ServeSettings, create_app

    index = build_text_index(tmp_path_factory.mktemp("browser"), minilm_path, dpi=110)
    with live_server(create_app(ServeSettings(index=str(index)))) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _images_loaded(page, selector: str) -> None:
    page.wait_for_function(
        """sel => { const imgs = [...document.querySelectorAll(sel)];
                   return imgs.length > 0
                          && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
        arg=selector,
        timeout=60_000,
    )


def test_search_overlay_upload_delete(browser, base_url: str, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(base_url + "/")
    page.wait_for_selector("#docs .doc-row")
    assert page.locator("#docs .doc-row").count() == 2
    assert page.locator("#legs input").count() == 3

    # search: results with citation, fused score, per-leg chips, the matched chart crop
    page.fill("#q", CHART_QUESTION)
    page.click("#search-btn")
    page.wait_for_selector(".result")
    first = page.locator(".result").first
    assert first.locator(".citation").inner_text() == "solar_market_outlook_2025.pdf, p. 2"
    chips = first.locator(".chip").all_inner_texts()
    assert {c.split()[0] for c in chips} == {"text", "bm25", "figure"}
    assert first.locator(".figure img").count() == 1
    marked = {t.lower() for t in first.locator(".snippet mark").all_inner_texts()}
    assert {"solar", "capacity", "region"} <= marked
    _images_loaded(page, ".result .page-img")
    _images_loaded(page, ".result .figure img")

    # thumbnails large enough to read a chart: 420 CSS px wide beside the text
    assert first.locator(".thumb").bounding_box()["width"] >= 400
    assert first.locator(".figure").bounding_box()["width"] >= 300

    # the overlay is on by default; toggling swaps the page image and back
    img = first.locator(".page-img")
    assert "/overlay?" in img.get_attribute("src")
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / "search-page.png"))
    first.locator(".overlay-toggle").click()
    page.wait_for_function(
        "() => !document.querySelector('.result .page-img').src.includes('/overlay')"
    )
    first.locator(".overlay-toggle").click()
    page.wait_for_function(
        "() => document.querySelector('.result .page-img').src.includes('/overlay')"
    )
    _images_loaded(page, ".result .page-img")

    # the page viewer with the overlay, large
    first.locator(".thumb").click()
    page.wait_for_selector("#viewer[open]")
    _images_loaded(page, "#viewer-img")
    assert "/overlay?" in page.locator("#viewer-img").get_attribute("src")
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / "page-viewer.png"))
    page.click("#viewer-close")

    # upload a PDF: progress, then it is listed and searchable
    pdf = make_sample_pdf(
        tmp_path / "orchard_report.pdf",
        {1: "The Quintessa orchards harvested 812 tonnes of pears in 2023."},
        n_pages=3,
    )
    page.set_input_files("#upload-input", str(pdf))
    page.wait_for_selector(".job.done", timeout=120_000)
    page.wait_for_selector("#docs .doc-row >> text=orchard_report.pdf")
    page.fill("#q", "How many tonnes of pears did the Quintessa orchards harvest?")
    page.click("#search-btn")
    page.wait_for_function(
        "() => document.querySelector('.result .citation')?.textContent === "
        "'orchard_report.pdf, p. 2'"
    )

    # filter by document: only the new one
    row = page.locator("#docs .doc-row", has_text="orchard_report.pdf")
    row.locator("input[type=checkbox]").check()
    page.fill("#q", CHART_QUESTION)
    page.click("#search-btn")
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('in 1')")
    assert set(page.locator(".result .citation").all_inner_texts()) <= {
        f"orchard_report.pdf, p. {n}" for n in (1, 2, 3)
    }
    _images_loaded(page, ".result .page-img")  # (no request left in flight before the delete)
    row.locator("input[type=checkbox]").uncheck()

    # delete it: gone from the list and from search
    page.once("dialog", lambda d: d.accept())
    row.locator(".doc-delete").click()
    page.wait_for_function(
        "() => ![...document.querySelectorAll('#docs .doc-name')]"
        ".some(e => e.textContent === 'orchard_report.pdf')",
        timeout=60_000,
    )
    page.fill("#q", "Quintessa orchards pears")
    page.click("#search-btn")
    page.wait_for_selector('#results[data-query="Quintessa orchards pears"]')
    assert "orchard_report.pdf" not in " ".join(page.locator(".citation").all_inner_texts())
    assert not errors, errors
    page.close()


NO_OVERFLOW = "() => document.documentElement.scrollWidth <= innerWidth"


def test_phone_width_layout_and_viewer(browser, base_url: str) -> None:
    """At 390x844 (a phone): the header is one row, nothing overflows sideways, results come
    first, and the page viewer fills the screen with its close button in reach."""
    page = browser.new_page(viewport={"width": 390, "height": 844})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base_url + "/")
    page.wait_for_selector("#docs .doc-row")
    assert page.evaluate(NO_OVERFLOW)
    rows = page.evaluate(
        """() => [...document.querySelector('.topbar').children].map(e => {
               const r = e.getBoundingClientRect(); return [r.top, r.bottom, r.right]; })"""
    )
    assert max(top for top, _, _ in rows) < min(bottom for _, bottom, _ in rows)  # one row
    assert max(right for _, _, right in rows) <= 390

    page.fill("#q", CHART_QUESTION)
    page.click("#search-btn")
    page.wait_for_selector(".result")
    _images_loaded(page, ".result .page-img")
    _images_loaded(page, ".result .figure img")
    assert page.evaluate(NO_OVERFLOW)
    first = page.locator(".result").first
    box = first.locator(".thumb").bounding_box()
    assert box["width"] >= 330 and box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert box["y"] < page.locator(".sidebar").bounding_box()["y"]  # results above the sidebar
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / "search-390.png"))

    first.locator(".thumb").click()
    page.wait_for_selector("#viewer[open]")
    _images_loaded(page, "#viewer-img")
    assert page.evaluate(NO_OVERFLOW)
    viewer = page.locator("#viewer").bounding_box()
    assert viewer["x"] >= 0 and viewer["x"] + viewer["width"] <= 390
    assert page.evaluate("() => document.querySelector('#viewer').scrollWidth <= 390")
    img = page.locator("#viewer-img").bounding_box()
    assert img["x"] >= 0 and img["x"] + img["width"] <= 390  # the page fits the width
    swatches = page.locator("#viewer .legend .sw")
    assert [swatches.nth(i).bounding_box()["width"] for i in range(4)] == [14, 14, 14, 14]
    close = page.locator("#viewer-close").bounding_box()
    assert close["x"] >= 0 and close["x"] + close["width"] <= 390
    assert close["y"] >= 0 and close["y"] + close["height"] <= 844
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / "viewer-390.png"))
    page.click("#viewer-close")
    page.wait_for_function("() => !document.querySelector('#viewer').open")
    first.locator(".thumb").click()  # and Escape closes it too
    page.wait_for_selector("#viewer[open]")
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.querySelector('#viewer').open")
    assert page.evaluate(NO_OVERFLOW)
    assert not errors, errors
    page.close()


def test_api_docs_render_offline(browser, base_url: str) -> None:
    """/docs draws Swagger UI with every request to other hosts cut off."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    outside: list[str] = []

    def only_local(route) -> None:
        if route.request.url.startswith(base_url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(base_url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=60_000)
    assert "mm-retriever" in page.locator(".swagger-ui .info .title").inner_text()
    page.wait_for_selector(".opblock-summary-path[data-path='/search']")
    assert not outside, outside
    page.close()
