"""The dashboard in a real browser: `alignops dashboard` serves it on a free port, headless Chromium (Debian's
chromium and chromedriver, driven by Selenium) signs labelers in and ranks with the keyboard only (keystrokes
counted on a 4-response task), the session survives a reload and a new tab, a task ranked in another tab
recovers, no figure is served under /media, and wrong passwords are throttled. Screenshots go to the folder
ALIGNOPS_SCREENSHOTS names, when set (for a person's look at the pages).

The server has a preference store of its own: the project's samples plus a fourth model version's, so a task
shows 4 responses. Skipped where chromium is not installed, unless ALIGNOPS_REQUIRE_BROWSER=1 (set by .ci/run,
which installs it)."""

from __future__ import annotations

import os
import shutil
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard.conftest import PASSWORD, Project, tracking_samples
from tests.support import processes

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1600"]  # fmt: skip
WAIT_S = 90  # a page that reads MLflow for the first time in the server process: seconds on 2 busy cores
FOURTH = "models:/alignops-extra/1"  # a fourth writer, so a task has 4 responses


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
def labels(project: Project, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of the server's preference store: every evaluated version's samples and a fourth version's."""
    from alignops.feedback.store import Store

    url = f"sqlite:///{tmp_path_factory.mktemp('labels') / 'feedback.db'}"
    with Store(url) as store:
        store.add_annotator(project.admin, PASSWORD, role="admin")
        for uri in project.versions.values():
            store.import_samples(uri, tracking_samples(uri))
        extra = [
            dict(s, completion=f"Another take: {s['completion']}") for s in tracking_samples(project.versions["sft"])
        ]
        store.import_samples(FOURTH, extra)
    return url


def account(url: str, role: str = "labeler") -> str:
    from alignops.feedback.store import Store

    name = f"{role}-{uuid.uuid4().hex[:8]}"
    with Store(url) as store:
        store.add_annotator(name, PASSWORD, role=role)
    return name


def mine(url: str, name: str) -> dict:
    from alignops.feedback.store import Store

    with Store(url) as store:
        return store.counts()["by_annotator"].get(name, {"rankings": 0, "skipped": 0, "ratings": 0})


@pytest.fixture(scope="module")
def server(project: Project, labels: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`alignops dashboard --port N` (which runs `streamlit run dashboard/app.py`) in its own process group, on
    the project; the whole group is stopped after."""
    port = processes.free_port()
    log = (tmp_path_factory.mktemp("streamlit") / "server.log").open("w")
    command = [sys.executable, "-m", "alignops.cli", "dashboard", "--port", str(port)]
    env = os.environ | {
        "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none",  # nothing to watch; saves a thread per file
        "ALIGNOPS_DATABASE_URL": labels,
        "ALIGNOPS_SESSION_SECRET": uuid.uuid4().hex,
    }
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


def body(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def wait_for(driver, condition):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # an element may be replaced between finding and reading it while Streamlit redraws: look again
    return WebDriverWait(driver, WAIT_S, ignored_exceptions=[StaleElementReferenceException]).until(condition)


def screenshot(driver, name: str) -> None:
    folder = os.environ.get("ALIGNOPS_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def sign_in(driver, server: str, name: str, path: str = "") -> None:
    from selenium.webdriver.common.keys import Keys

    driver.get(f"{server}/_stcore/health")  # on the site, so its cookies can be deleted: a new visitor
    driver.delete_all_cookies()
    driver.get(f"{server}/{path}")
    for label, text in (("Name", name), ("Password", PASSWORD)):
        box = wait_for(driver, lambda d, label=label: interactable(d, f"input[aria-label='{label}']"))
        box.send_keys(text)
    box.send_keys(Keys.ENTER)  # Enter submits the sign-in form


def interactable(driver, selector: str):
    """The element, once it is on screen and enabled (Streamlit disables a form's inputs while it runs)."""
    from selenium.webdriver.common.by import By

    found = [e for e in driver.find_elements(By.CSS_SELECTOR, selector) if e.is_displayed() and e.is_enabled()]
    return found[0] if found else False


def order_box(driver):
    """The Order box of a task once it has the keyboard focus (the page puts it there)."""
    from selenium.webdriver.common.by import By

    def focused(d):
        boxes = d.find_elements(By.CSS_SELECTOR, "input[aria-label='Order']")
        return boxes[0] if boxes and d.switch_to.active_element == boxes[0] else False

    return wait_for(driver, focused)


def responses_shown(driver) -> int:
    """The numbered response cards side by side (their containers carry the CSS class st-key-response-N)."""
    from selenium.webdriver.common.by import By

    return len(driver.find_elements(By.CSS_SELECTOR, "[class*='st-key-response-']"))


def test_a_4_response_ranking_takes_5_keystrokes(labels: str, server: str, browser) -> None:
    """The cursor starts in the Order box: 4 digits and Enter store the ranking and bring the next prompt."""
    from selenium.webdriver.common.keys import Keys

    name = account(labels)
    sign_in(browser, server, name)
    order_box(browser)
    assert responses_shown(browser) == 4
    assert "models:/" not in body(browser)  # blind until submitted
    screenshot(browser, "rank")
    keys = ["3", "1", "4", "2", Keys.ENTER]
    for key in keys:  # each to whatever has the focus: no click, no Tab
        browser.switch_to.active_element.send_keys(key)
    wait_for(browser, lambda d: "Saved ranking #" in body(d))
    assert body(browser).count("written by models:/alignops-") == 4
    order_box(browser)  # the next prompt is there and focused: no Next button
    screenshot(browser, "rank-after-submit")
    assert mine(labels, name)["rankings"] == 1
    assert len(keys) == 5  # the target: at most 6


def test_a_reload_and_a_new_tab_keep_the_session_and_the_deep_link(labels: str, server: str, browser) -> None:
    name = account(labels, "admin")
    sign_in(browser, server, name, path="models")  # a deep link: Models after signing in
    wait_for(browser, lambda d: "Registered model" in body(d))
    screenshot(browser, "models")
    browser.refresh()
    wait_for(browser, lambda d: "Registered model" in body(d) and f"Signed in as {name}" in body(d))
    browser.switch_to.new_window("tab")
    try:
        browser.get(f"{server}/data")
        wait_for(browser, lambda d: f"Signed in as {name}" in body(d) and "Data" in body(d))
        screenshot(browser, "data")
    finally:
        browser.close()
        browser.switch_to.window(browser.window_handles[0])


def test_no_figure_is_served_under_media(labels: str, server: str, browser) -> None:
    """The Models page's figures are inline (data: URLs), so /media holds nothing to fetch without a session."""
    from selenium.webdriver.common.by import By

    sign_in(browser, server, account(labels, "admin"), path="models")
    images = wait_for(browser, lambda d: (found := d.find_elements(By.CSS_SELECTOR, "figure img")) and found)
    sources = [img.get_attribute("src") for img in images]
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources), sources
    linked = browser.execute_script(
        "return Array.from(document.querySelectorAll('[src], [href]'))"
        ".map(e => e.getAttribute('src') || e.getAttribute('href'))"
        ".filter(u => u.includes('/media/') && !u.includes('static/media/'));"
    )
    assert linked == []  # nothing on the page points under /media (static/media holds the fonts)
    with pytest.raises(urllib.error.HTTPError) as answer:  # nothing by a guessed name either
        urllib.request.urlopen(f"{server}/media/{'0' * 56}.png", timeout=30)
    assert answer.value.code == 404


def test_a_task_ranked_in_another_tab_recovers(labels: str, server: str, browser) -> None:
    from selenium.webdriver.common.keys import Keys

    name = account(labels)
    sign_in(browser, server, name)
    order_box(browser)
    first_tab = browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:  # the second tab is signed in by the cookie and shows the same prompt (nobody else ranks here)
        browser.get(server)
        order_box(browser).send_keys("1234", Keys.ENTER)
        wait_for(browser, lambda d: "Saved ranking #" in body(d))
    finally:
        browser.close()
        browser.switch_to.window(first_tab)
    order_box(browser).send_keys("4321", Keys.ENTER)  # the stale task: dropped, the next one loads
    wait_for(browser, lambda d: "already ranked" in body(d))
    order_box(browser)
    screenshot(browser, "rank-stale")
    assert mine(labels, name)["rankings"] == 1


def test_a_rating_is_three_clicks_and_ctrl_enter_in_the_comment(labels: str, server: str, browser) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    name = account(labels)
    sign_in(browser, server, name, path="rate")
    scales = wait_for(
        browser, lambda d: len(found := d.find_elements(By.XPATH, "//button[.='4 mostly']")) == 3 and found
    )
    screenshot(browser, "rate")
    for button in scales:  # the scales' meanings are on the buttons themselves
        button.click()
    comment = wait_for(browser, lambda d: interactable(d, "textarea"))
    comment.send_keys("Clear and polite.")
    ActionChains(browser).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()
    wait_for(browser, lambda d: "Saved rating #" in body(d))
    assert mine(labels, name)["ratings"] == 1


def test_pages_open_warm(labels: str, server: str, browser, record_property) -> None:
    """Every page of an admin, opened twice in one session: the second time is the warm time recorded for the
    issue's note (pytest --junitxml); the machine is shared, so the figure is indicative."""
    import time

    from selenium.webdriver.common.by import By

    sign_in(browser, server, account(labels, "admin"))
    wait_for(browser, lambda d: "Signed in as" in body(d))
    titles = {"Runs": "Runs", "Models": "Models", "Generations": "Generations", "Data": "Data",
              "Rank": "Rank responses", "Rate": "Rate a response", "Labels": "Labels"}  # fmt: skip
    for visit in ("cold", "warm"):
        for link, title in titles.items():
            start = time.perf_counter()
            links = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stSidebarNavLink']")
            next(a for a in links if a.text.strip() == link).click()
            wait_for(browser, lambda d, title=title: any(h.text == title for h in d.find_elements(By.TAG_NAME, "h1"))
                     and not d.find_elements(By.CSS_SELECTOR, "[data-testid='stStatusWidget']"))  # fmt: skip
            record_property(f"{visit}_s_{link}", round(time.perf_counter() - start, 3))


def test_wrong_passwords_are_throttled(labels: str, server: str, browser) -> None:
    """Last in this module: it locks this client's address out for the rest of the server's life. Each try on
    a fresh page (a new session: the count is the server's, per account and address, not the page's)."""
    from selenium.webdriver.common.keys import Keys

    from dashboard.throttle import FREE_ATTEMPTS

    name = account(labels)
    for attempt in range(FREE_ATTEMPTS + 1):
        right = attempt == FREE_ATTEMPTS  # the right password, after FREE_ATTEMPTS wrong ones
        browser.get(f"{server}/_stcore/health")
        browser.delete_all_cookies()
        browser.get(server)
        typed = {"Name": name, "Password": PASSWORD if right else f"wrong {attempt}"}
        for label, text in typed.items():
            box = wait_for(browser, lambda d, label=label: interactable(d, f"input[aria-label='{label}']"))
            box.send_keys(text)
        box.send_keys(Keys.ENTER)
        expected = "Too many failed sign-ins" if right else "Wrong name or password."
        wait_for(browser, lambda d, expected=expected: expected in body(d))
    screenshot(browser, "throttled")
    assert "Signed in as" not in body(browser)
