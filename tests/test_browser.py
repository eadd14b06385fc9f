"""The interactive runs table in a real browser: Debian's headless Chromium, driven by Selenium
through Debian's chromedriver, opens a thesis HTML file offline and sorts, filters and searches
its table, as a reader of the thesis would.

Skipped only where chromium or chromedriver is missing and CI is not set; in CI a missing
browser fails (.ci/run installs both).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from segsweep.report.document import Chapter, Document, Table, text
from segsweep.report.render import render_html

IN_CI = bool(os.environ.get("CI"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        (CHROMIUM is None or CHROMEDRIVER is None) and not IN_CI,
        reason="chromium or chromedriver not installed (apt-get install chromium chromium-driver)",
    ),
]

if not IN_CI:
    pytest.importorskip("selenium", reason="selenium not installed (pip install -e '.[test]')")

from selenium import webdriver  # noqa: E402 (after the skip above)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402

# 6 runs of 2 swept hyperparameters (a text one, a numeric one); run "c" failed, "d" is final
RUNS = pd.DataFrame(
    {
        "Run": ["a", "b", "c", "d", "e", "f"],
        "loss": ["dice", "dice", "ce", "ce", "dice_ce", "dice_ce"],
        "lr": ["0.001", "1e-4", "0.001", "1e-4", "0.001", "1e-4"],
        "Status": ["ok", "ok", "failed", "ok", "ok", "ok"],
        "Score": ["0.700", "0.650", "–", "0.810", "0.090", "0.700"],
    }
)
MARKED = [3]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A thesis of one appendix holding the interactive runs table."""
    runs = Table.of(
        "all-runs",
        "All runs. Final models are highlighted.",
        RUNS,
        long=True,
        interactive=True,
        filters=["loss", "lr"],
        search="Run",
        marked=MARKED,
        marked_label="final models",
        unit="runs",
    )
    chapter = Chapter("runs", "A", "All runs", [text("{t} lists every run.", t=runs), runs])
    document = Document("Browser test", "Tester", "2020-01-01", "made", [chapter]).number()
    path = tmp_path_factory.mktemp("browser") / "thesis.html"
    path.write_text(render_html(document), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the module's tests; the driver paths are given so that
    Selenium Manager never looks for (or downloads) a browser."""
    assert CHROMIUM and CHROMEDRIVER, "CI must install chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: webdriver.Chrome, page: Path) -> Iterator[webdriver.Chrome]:
    """The page freshly loaded (each test starts from the unsorted, unfiltered table)."""
    chromium.get_log("browser")  # the previous test's messages
    chromium.get(page.as_uri())
    yield chromium
    errors = [e for e in chromium.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors  # the script ran without an error


def shown(driver: webdriver.Chrome, column: str = "Run") -> list[str]:
    """One column of the rows the reader sees, top to bottom."""
    table = driver.find_element(By.ID, "tab-all-runs")
    headers = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    index = headers.index(column)
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    return [row.find_elements(By.TAG_NAME, "td")[index].text for row in rows if row.is_displayed()]


def header(driver: webdriver.Chrome, column: str) -> WebElement:
    path = f"//figure[@id='tab-all-runs']//th[normalize-space(.)='{column}']"
    return driver.find_element(By.XPATH, path)


def count(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.CSS_SELECTOR, "#tab-all-runs .count").text


def test_the_script_shows_the_controls_and_all_rows(browser: webdriver.Chrome) -> None:
    controls = browser.find_element(By.CSS_SELECTOR, "#tab-all-runs .table-controls")
    assert controls.is_displayed()
    assert shown(browser) == list(RUNS["Run"]) and count(browser) == "showing 6 of 6 runs"


def test_a_header_sorts_numbers_as_numbers_missing_last_then_reverses(
    browser: webdriver.Chrome,
) -> None:
    score = header(browser, "Score")
    score.click()
    assert shown(browser) == ["e", "b", "a", "f", "d", "c"]  # ties keep document order
    assert score.get_attribute("aria-sort") == "ascending"
    score.click()
    assert shown(browser) == ["d", "a", "f", "b", "e", "c"]  # "–" stays last
    assert score.get_attribute("aria-sort") == "descending"
    lr = header(browser, "lr")
    lr.click()  # 1e-4 < 0.001: numerically, not as text
    assert shown(browser, "lr") == ["1e-4"] * 3 + ["0.001"] * 3
    assert score.get_attribute("aria-sort") is None and lr.get_attribute("aria-sort")


def test_filters_search_and_final_only_combine(browser: webdriver.Chrome) -> None:
    controls = browser.find_element(By.CSS_SELECTOR, "#tab-all-runs .table-controls")
    loss, lr = (Select(s) for s in controls.find_elements(By.TAG_NAME, "select"))
    assert [o.text for o in lr.options] == ["all", "1e-4", "0.001"]
    loss.select_by_visible_text("dice")
    assert shown(browser) == ["a", "b"] and count(browser) == "showing 2 of 6 runs"
    lr.select_by_visible_text("1e-4")
    assert shown(browser) == ["b"]
    loss.select_by_visible_text("all")
    assert shown(browser) == ["b", "d", "f"]
    search = controls.find_element(By.CSS_SELECTOR, "input[type=search]")
    search.send_keys("D")  # case-insensitive substring
    assert shown(browser) == ["d"] and count(browser) == "showing 1 of 6 runs"
    search.clear()
    lr.select_by_visible_text("all")
    controls.find_element(By.CSS_SELECTOR, ".marked-only input").click()
    assert shown(browser) == ["d"]


def test_the_final_model_is_highlighted(browser: webdriver.Chrome) -> None:
    rows = browser.find_elements(By.CSS_SELECTOR, "#tab-all-runs tbody tr")
    marked = [i for i, row in enumerate(rows) if "marked" in row.get_attribute("class").split()]
    assert marked == MARKED
    cell = rows[MARKED[0]].find_element(By.TAG_NAME, "td")
    plain = rows[0].find_element(By.TAG_NAME, "td")
    assert cell.value_of_css_property("background-color") != plain.value_of_css_property(
        "background-color"
    )
