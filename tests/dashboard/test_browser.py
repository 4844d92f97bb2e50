"""The dashboard in a real browser: `alignops dashboard` serves it on a free port, headless Chromium (Debian's
chromium and chromedriver, driven by Selenium) signs a labeler in, ranks one prompt with the keyboard only,
submits, and the ranking is in the database.

Skipped where chromium is not installed, unless ALIGNOPS_REQUIRE_BROWSER=1 (set by .ci/run, which installs it)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard.conftest import PASSWORD, Project
from tests.support import processes

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,2400"]  # fmt: skip
WAIT_S = 90  # a page that reads MLflow for the first time in the server process: seconds on 2 busy cores


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file() and shutil.which("chromium")):
        if os.environ.get("ALIGNOPS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"ALIGNOPS_REQUIRE_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing: run .ci/system-deps.")
        pytest.skip("chromium is not installed (apt-get install chromium chromium-driver, or run .ci/run).")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    # An explicit driver path: selenium-manager then downloads nothing.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def server(project: Project, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`alignops dashboard --port N` (which runs `streamlit run dashboard/app.py`) in its own process group, on
    the project; the whole group is stopped after."""
    port = processes.free_port()
    log = (tmp_path_factory.mktemp("streamlit") / "server.log").open("w")
    command = [sys.executable, "-m", "alignops.cli", "dashboard", "--port", str(port)]
    env = os.environ | {"STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}  # nothing to watch; saves a thread per file
    proc = processes.start(command, env, log, cwd=project.repo)
    url = f"http://127.0.0.1:{port}"
    try:
        if not processes.wait_healthy(proc, f"{url}/_stcore/health", WAIT_S, ok=lambda body: body == b"ok"):
            log.flush()
            pytest.fail(f"streamlit did not start on {url}: {Path(log.name).read_text()[-2000:]}")
        yield url
    finally:
        processes.stop(proc, timeout=20)
        log.close()


def test_a_labeler_ranks_a_prompt_in_a_real_browser(project: Project, server: str, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    name = project.account("labeler")
    wait = WebDriverWait(browser, WAIT_S)
    browser.get(server)
    wait.until(seen.visibility_of_element_located((By.CSS_SELECTOR, "input[aria-label='Name']"))).send_keys(name)
    password = browser.find_element(By.CSS_SELECTOR, "input[aria-label='Password']")
    password.send_keys(PASSWORD, Keys.ENTER)  # Enter submits the sign-in form

    places = "input[aria-label^='Place of']"
    boxes = wait.until(lambda d: (found := d.find_elements(By.CSS_SELECTOR, places)) and len(found) == 3 and found)
    assert "models:/" not in browser.find_element(By.TAG_NAME, "body").text  # blind until submitted
    # Keyboard only: a place in the first box, Tab to the next, ..., Enter submits the form.
    boxes[0].click()
    boxes[0].send_keys("2", Keys.TAB)
    for place in ("1", "3"):
        browser.switch_to.active_element.send_keys(place, Keys.TAB)
    browser.switch_to.active_element.send_keys("A is close to B, C is off topic.", Keys.ENTER)

    wait.until(lambda d: "Saved ranking #" in d.find_element(By.TAG_NAME, "body").text)
    page = browser.find_element(By.TAG_NAME, "body").text
    assert page.count("written by models:/alignops-") == 3, page

    with project.store() as store:
        mine = [r for r in store.export_rankings()[0] if r["annotator"] == name]
    assert len(mine) == 1
    assert mine[0]["ranking"] == [1, 0, 2]  # responses in the order shown: B first, then A, then C
