"""The HTML report and the dashboard as a reader sees them: in headless Chromium (Playwright).

Playwright drives the system Chromium (Debian: ``apt-get install chromium``); it never
downloads browsers of its own. Without Chromium or the ``playwright`` package these tests
skip and say why, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from needs import free_port, required_in_ci

from autosel.report import write_report
from autosel.tasks import get_task

pytestmark = pytest.mark.slow

STUDY = "tiny-correspondence"
METRIC = get_task("correspondence").primary_metric


def find_chromium() -> str | None:
    """The system Chromium: Debian names it ``chromium``, Ubuntu and others ``chromium-browser``."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser():
    """Headless system Chromium, one for the session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        required_in_ci("the browser tests need the playwright package: pip install -e '.[dev]'")
    executable = find_chromium()
    if executable is None:
        required_in_ci("the browser tests need Chromium on the PATH (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True)
        yield chromium
        chromium.close()


class Page:
    """A browser page at one viewport width that records what the console reports."""

    def __init__(self, browser, width: int):
        self.page = browser.new_page(viewport={"width": width, "height": 900})
        self.page.set_default_timeout(90_000)  # an upper bound for a loaded machine, never a delay
        self.errors: list[str] = []
        self.page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def open(self, url: str) -> Page:
        self.page.goto(url, wait_until="load")  # the load event waits for every image
        return self

    def broken_images(self) -> list[str]:
        """The images that did not load (natural size 0), by alt text or source."""
        return self.page.eval_on_selector_all(
            "img", "images => images.filter(i => !(i.complete && i.naturalWidth > 0 && i.naturalHeight > 0))"
                   ".map(i => i.alt || i.src.slice(0, 80))")

    def images(self) -> int:
        return self.page.locator("img").count()

    def links(self) -> list[str]:
        return self.page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")

    def horizontal_overflow(self) -> int:
        """How many pixels the page is wider than the window (0: no horizontal scroll)."""
        return self.page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


@pytest.fixture
def open_page(browser):
    """``open_page(url, width=1280)`` → :class:`Page`; the pages are closed afterwards."""
    pages: list[Page] = []

    def open_(url: str, width: int = 1280) -> Page:
        pages.append(Page(browser, width))
        return pages[-1].open(url)

    yield open_
    for page in pages:
        page.page.close()


@pytest.fixture(scope="session")
def html_report(finished_search, tmp_path_factory) -> Path:
    """``report.html`` of the finished tiny search, beside the report's other files."""
    folder = tmp_path_factory.mktemp("report")
    write_report(STUDY, finished_search, folder, html=True)
    return folder / "report.html"


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def missing_link_targets(page: Page) -> list[str]:
    """The page's links that lead nowhere: a missing file, or a missing #anchor."""
    missing = []
    for link in page.links():
        parts = urllib.parse.urlparse(link)
        if parts.scheme == "file" and not Path(urllib.parse.unquote(parts.path)).is_file():
            missing.append(link)
        elif parts.scheme not in ("file", "http", "https"):
            missing.append(link)
        elif parts.fragment and page.page.locator(f"[id='{parts.fragment}'], [name='{parts.fragment}']").count() == 0:
            missing.append(link)
    return missing


def test_every_image_of_the_report_loads(open_page, html_report):
    page = open_page(html_report.as_uri())
    assert page.images() >= 4
    assert page.broken_images() == []


def test_the_report_logs_no_console_error(open_page, html_report):
    assert open_page(html_report.as_uri()).errors == []


def test_every_link_of_the_report_leads_to_an_existing_file(open_page, html_report):
    page = open_page(html_report.as_uri())
    assert page.links() and missing_link_targets(page) == []


def test_the_report_shows_the_best_config_table_beside_the_presets(open_page, html_report):
    page = open_page(html_report.as_uri()).page
    section = page.get_by_role("heading", name="Best config beside the presets (held-out split)")
    assert section.is_visible()
    table = page.locator("table", has_text="held-out %")
    assert table.locator("tr", has_text="best.yaml: trial").is_visible()
    assert table.locator("tr", has_text="preset legacy-tiny").is_visible()
    assert page.get_by_role("img", name="heldout.png").is_visible()


@pytest.mark.parametrize("width", [1280, 800])
def test_the_report_reads_without_horizontal_scroll(open_page, html_report, width):
    assert open_page(html_report.as_uri(), width).horizontal_overflow() == 0


def test_a_screenshot_of_the_report_is_written(open_page, html_report, screenshots):
    open_page(html_report.as_uri()).page.screenshot(path=screenshots / "report.png", full_page=True)
    assert (screenshots / "report.png").stat().st_size > 10_000


def test_a_missing_image_fails_the_image_check(open_page, html_report, tmp_path):
    broken = tmp_path / "report.html"
    text = html_report.read_text()
    start = text.index('src="data:image/png;base64,')
    broken.write_text(text[:start] + 'src="pareto.png"' + text[text.index('"', start + 5) + 1:])
    assert len(open_page(broken.as_uri()).broken_images()) == 1


def test_an_error_the_page_logs_fails_the_console_check(open_page, html_report, tmp_path):
    broken = tmp_path / "report.html"
    broken.write_text(html_report.read_text().replace("</body>", "<script>console.error('plot missing')</script></body>"))
    assert open_page(broken.as_uri()).errors == ["plot missing"]


def test_a_missing_file_fails_the_link_check(open_page, html_report, tmp_path):
    broken = tmp_path / "report.html"
    broken.write_text(html_report.read_text())  # trials.csv is not beside this copy
    assert [Path(link).name for link in missing_link_targets(open_page(broken.as_uri()))] == ["trials.csv"]


@pytest.fixture(scope="module")
def dashboard(finished_search, autosel_command):
    """``autosel dashboard`` on the finished search, on a free port; stopped afterwards."""
    port = free_port()
    server = subprocess.Popen([*autosel_command, "dashboard", "--storage", finished_search, "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, server)
        yield url
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_until_serving(url: str, server: subprocess.Popen, limit: float = 120) -> None:
    """Return once ``url`` answers; fail at once if the server exits (a readiness wait, not a delay)."""
    deadline = time.monotonic() + limit
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/studies", timeout=5):
                return
        except OSError:
            if server.poll() is not None:
                pytest.fail(f"autosel dashboard exited with {server.returncode}: {server.stdout.read()}")
            if time.monotonic() > deadline:
                pytest.fail(f"autosel dashboard did not answer on {url} within {limit:.0f} s")
            time.sleep(0.2)


def open_study_page(open_page, dashboard: str):
    """The dashboard's page of the study, opened from its list of studies as a user would."""
    page = open_page(f"{dashboard}/dashboard").page
    page.get_by_text(STUDY).first.click()
    page.get_by_text(f"{STUDY} (id=", exact=False).first.wait_for()
    return page


def test_the_dashboard_lists_the_study(open_page, dashboard):
    page = open_page(f"{dashboard}/dashboard").page
    page.get_by_text(STUDY).first.wait_for()  # rendered by the page's script once it has fetched the studies


def test_the_dashboard_names_the_objective_after_the_metric(open_page, dashboard):
    page = open_study_page(open_page, dashboard)
    page.get_by_text(METRIC, exact=True).first.wait_for()


def test_a_screenshot_of_the_dashboard_is_written(open_page, dashboard, screenshots):
    page = open_study_page(open_page, dashboard)
    page.get_by_text(METRIC, exact=True).first.wait_for()
    page.screenshot(path=screenshots / "dashboard.png")
    assert (screenshots / "dashboard.png").stat().st_size > 10_000
