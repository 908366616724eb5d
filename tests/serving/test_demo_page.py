"""The demo page in a real browser: Debian's headless Chromium driven through its chromedriver."""

import os
import shutil
from pathlib import Path

import pytest

from tests.serving.test_live import bundle, running_server  # noqa: F401 - the module's fixture

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="Debian's chromium and chromium-driver are not installed"),
]


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1100,800"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def test_typing_commands_shows_suggestions_and_clicking_one_runs_it(bundle, browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    with running_server(bundle) as (url, _):
        browser.get(f"{url}/?session=browser-test")
        wait = WebDriverWait(browser, 20)
        wait.until(lambda d: "commands" in d.find_element(By.ID, "model").text)
        box = browser.find_element(By.ID, "command")
        box.send_keys("Wall")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#vocabulary option"))  # autocomplete filled
        browser.find_element(By.ID, "add").click()
        wait.until(ready.visibility_of_element_located((By.ID, "suggestions")))
        rows = browser.find_elements(By.CSS_SELECTOR, "#suggestions tbody tr")
        assert len(rows) == 10
        first = rows[0].find_element(By.CSS_SELECTOR, "td.cmd").text
        assert rows[0].find_elements(By.TAG_NAME, "td")[2].text.endswith("%")
        rows[0].find_element(By.CSS_SELECTOR, "td.cmd").click()  # run the top suggestion
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history .chip")) == 2)
        chips = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#history .chip")]
        assert chips == ["Wall", first]
        assert browser.find_element(By.ID, "error").text == ""
        screenshot = Path(os.environ.get("CMDREC_SCREENSHOT", tmp_path / "demo.png"))
        browser.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000
