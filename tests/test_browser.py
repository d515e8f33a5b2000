"""The smoke book as its readers see it: every page opened in headless Chromium (Selenium, Debian's
``chromium`` and ``chromium-driver``), served over HTTP from 127.0.0.1 as a reader's browser would get it.

A page fails on a console error, an image that does not load, text that looks like a progress bar
(``NN%|``), an absolute filesystem path, a path into a virtual environment (``.venv/...``: the builder's
interpreter, or a folder a reader's machine does not have under that name), a Python
warning or any stderr output, a missing provenance
line, or a height over ``MAX_PAGE_HEIGHT_PX``. The text checked is all of the page's text, the parts
behind a "show code" toggle included (a reader can open them). The book's own search must find
"feature suppression" on every page that says it.

Without Chromium the tests are skipped, unless ``MCL_REQUIRE_BROWSER=1`` (``.ci/run`` sets it, after
installing Chromium), which makes a missing browser a failure. ``MCL_SCREENSHOTS=<folder>`` also saves a
full-page PNG of every page there. ``MCL_BROWSER_SCALE=book`` checks the book already built at that scale
(``make book``) instead of building the smoke one.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, SMOKE

from mclbook.build import chapters_in_toc

pytestmark = pytest.mark.slow  # builds the smoke book and drives a browser

# The longest page at smoke scale is chapter 1 at about 20,300 px (1280 px wide window: two searches, the
# MoCo-v2 table and the workshop's exercises); at book scale its tables have more rows (more seeds), a few
# hundred px more. One bar printed per line (what this test guards against) added 3,000 to 30,000 px per
# chapter.
MAX_PAGE_HEIGHT_PX = 24_000
WINDOW = (1280, 900)
PAGES = [f"{page}.html" for page in chapters_in_toc(ROOT / "_toc.yml")]
SCALE = os.environ.get("MCL_BROWSER_SCALE", "smoke")

PROGRESS_BAR = re.compile(r"\d{1,3}%\|")
# an absolute path: a slash at the start of a word (after a space, a quote, a bracket or "="), then at
# least two path components ("it/s", "and/or", "<scale>/results/" and "https://..." are not paths)
ABSOLUTE_PATH = re.compile(r"""(?<![^\s'"(\[=,])/(?:[\w.+-]+/)+[\w.+-]*""")
FINISHED = re.compile(r"Search finished|did not match")
WARNING = re.compile(r"\b\w*Warning: |^\s*warnings\.warn\(", re.MULTILINE)
# a path into a virtual environment, e.g. the building machine's interpreter in a recorded command (a reader
# runs "python ...")
ENV_PATH = re.compile(r"\S*\.venv[/\\]\S*")

# all text of the page (not scripts or styles), the content of closed <details> toggles included
PAGE_TEXT = """
const body = document.body.cloneNode(true);
body.querySelectorAll("script, style, noscript").forEach(e => e.remove());
return body.textContent;
"""
# the page's own text: without the navigation (every page's names chapter 1, "Feature suppression"), the
# previous/next links or the scripts
ARTICLE_TEXT = """
const article = document.querySelector('article.bd-article').cloneNode(true);
article.querySelectorAll("script, style, nav, .prev-next-area, .prev-next-footer").forEach(e => e.remove());
return article.textContent;
"""
BROKEN_IMAGES = """
return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);
"""


def browser_binaries() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@pytest.fixture(scope="module")
def site(request):
    """The book's HTML (the smoke book, built here, or ``MCL_BROWSER_SCALE``'s, built before) served on
    127.0.0.1 (the search needs HTTP, not file://); yields the base URL."""
    if SCALE == "smoke":
        request.getfixturevalue("smoke_book")
    html = (SMOKE if SCALE == "smoke" else ROOT / "_build" / SCALE) / "_build" / "html"
    if not (html / "index.html").exists():
        pytest.fail(f"{html} has no book: run make book SCALE={SCALE} first")
    handler = functools.partial(QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass


@pytest.fixture(scope="module")
def browser():
    binaries = browser_binaries()
    if binaries is None:
        message = "headless Chromium not found: apt-get install -y chromium chromium-driver"
        if os.environ.get("MCL_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binaries[0]
    profile = tempfile.mkdtemp(prefix="mcl-chromium-")
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(binaries[1]))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def console_errors(browser) -> list[str]:
    """The errors logged in the console since the last call."""
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.fixture(scope="module")
def pages(site, browser) -> dict[str, dict]:
    """Every page of the table of contents, opened once: its console errors, broken images, text, stderr
    outputs, provenance line and height."""
    shots = os.environ.get("MCL_SCREENSHOTS")
    seen = {}
    for page in PAGES:
        browser.get_log("browser")  # what earlier pages logged
        browser.set_window_size(*WINDOW)
        browser.get(f"{site}/{page}")
        seen[page] = {
            "height": browser.execute_script("return document.documentElement.scrollHeight"),
            "text": browser.execute_script(PAGE_TEXT),
            "article": browser.execute_script(ARTICLE_TEXT),
            "broken_images": browser.execute_script(BROKEN_IMAGES),
            "images": browser.execute_script("return document.images.length"),
            "stderr": browser.execute_script(
                "return Array.from(document.querySelectorAll('.stderr')).map(e => e.textContent)"
            ),
            "provenance": browser.execute_script(
                "return Array.from(document.querySelectorAll('.mcl-provenance')).map(e => e.textContent)"
            ),
            "console": [
                entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"
            ],
        }
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            browser.set_window_size(WINDOW[0], min(seen[page]["height"], 16_000))
            time.sleep(0.3)
            browser.save_screenshot(str(Path(shots) / f"{Path(page).stem}.png"))
    return seen


def test_every_page_of_the_table_of_contents_is_checked():
    assert "book/intro.html" in PAGES and len(PAGES) >= 10


@pytest.mark.parametrize("page", PAGES)
def test_page_has_no_console_error_and_every_image_loads(pages, page):
    seen = pages[page]
    assert seen["console"] == [], f"{page}: console errors"
    assert seen["broken_images"] == [], f"{page}: images that do not load"


@pytest.mark.parametrize("page", PAGES)
def test_page_shows_no_progress_bar_path_or_warning(pages, page):
    text = pages[page]["text"]
    assert not PROGRESS_BAR.findall(text), f"{page}: progress bars {PROGRESS_BAR.findall(text)[:3]}"
    for path in {str(ROOT), sys.prefix, str(Path.home())} - {"/"}:
        assert path not in text, f"{page} shows {path}"
    paths = ABSOLUTE_PATH.findall(text)
    assert not paths, f"{page}: absolute paths {paths[:5]}"
    assert not WARNING.findall(text), f"{page}: warnings {WARNING.findall(text)[:3]}"
    assert not ENV_PATH.findall(text), f"{page}: {ENV_PATH.findall(text)[:3]}"
    assert pages[page]["stderr"] == [], f"{page}: stderr output {pages[page]['stderr'][:2]}"


@pytest.mark.parametrize("page", PAGES)
def test_page_says_how_it_was_built_and_is_not_too_tall(pages, page):
    seen = pages[page]
    assert len(seen["provenance"]) >= 1 and f"built at scale {SCALE}" in seen["provenance"][0].lower(), page
    assert seen["height"] <= MAX_PAGE_HEIGHT_PX, f"{page} is {seen['height']} px tall"


def test_chapters_show_their_figures(pages):
    for page in PAGES:
        if Path(page).stem[:2].isdigit():
            assert pages[page]["images"] >= 1, f"{page} has no figure"


def test_search_finds_feature_suppression_on_every_page_that_says_it(site, browser, pages):
    saying = {
        page for page in PAGES if "feature suppression" in " ".join(pages[page]["article"].split()).lower()
    }
    assert {"book/intro.html", "book/01_feature_suppression.html"} <= saying
    browser.get_log("browser")
    browser.get(f"{site}/search.html?q=feature+suppression")
    deadline = time.time() + 30
    while True:
        summary = browser.execute_script(
            "const s = document.querySelector('#search-results .search-summary'); return s && s.textContent"
        )
        if summary and FINISHED.search(summary):
            break
        if time.time() > deadline:
            pytest.fail(f"the search did not finish in 30 s: {summary!r}")
        time.sleep(0.2)
    time.sleep(0.5)  # the results are listed one by one, a few ms apart
    links = browser.execute_script(
        "return Array.from(document.querySelectorAll('#search-results ul.search li a')).map(a => a.href)"
    )
    found = {re.sub(r"^https?://[^/]+/|[?#].*$", "", link) for link in links}
    assert saying <= found, f"pages that say it and the search misses: {sorted(saying - found)}"
    assert console_errors(browser) == [], "console errors on the search page"
