"""The web page in headless Chromium (Selenium + Debian's chromium and chromium-driver): upload a clip, read the
report and the timeline, ask a question, get the answer. Slow: run with ``pytest -m slow tests/test_web.py``.

The screenshot goes to ``$EMOREASON_SCREENSHOT`` when set, else to the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.test_openai_client import serving

pytestmark = pytest.mark.slow
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", "--window-size=1400,1300")  # fmt: skip


@pytest.fixture(scope="module")
def driver():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip("needs chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    d = webdriver.Chrome(service=Service(chromedriver), options=opts)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, astronaut_speech_clip):
    root = tmp_path_factory.mktemp("web_root")
    shutil.copy(astronaut_speech_clip, root / "astronaut_speech.mp4")
    with serving(fps=5.0, max_side=360, media_root=root) as url:
        yield url


def test_upload_report_ask_answer(driver, base_url, astronaut_speech_clip, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 120)
    driver.get(base_url + "/")
    assert driver.title == "EmoReason"
    # the media root's clip is offered
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#clip-select option")) == 2)
    driver.find_element(By.ID, "file").send_keys(str(astronaut_speech_clip))
    wait.until(ec.element_to_be_clickable((By.ID, "analyze"))).click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Report ready"))
    assert driver.find_element(By.ID, "emotion").text == "happiness"
    assert "AU12" in driver.find_element(By.ID, "think").text
    assert "happy" in driver.find_element(By.ID, "transcript").text.lower()
    # the timeline canvas has been drawn on (some non-white pixels)
    painted = driver.execute_script(
        "const c = document.getElementById('timeline'); const d = c.getContext('2d').getImageData(0, 0, c.width, "
        "c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;"
    )
    assert painted > 1000
    box = driver.find_element(By.ID, "chat-input")
    box.send_keys("Is the smile genuine?")
    driver.find_element(By.ID, "chat-send").click()
    answer = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#chat-log .msg.answer")))
    assert "AU6" in answer.text and "genuine" in answer.text
    driver.execute_script("window.scrollTo(0, 0)")
    shot = Path(os.environ.get("EMOREASON_SCREENSHOT", tmp_path / "web.png"))
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_choose_a_clip_from_the_media_root(driver, base_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(driver, 120)
    driver.get(base_url + "/")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#clip-select option")) == 2)
    Select(driver.find_element(By.ID, "clip-select")).select_by_value("astronaut_speech.mp4")
    wait.until(lambda d: d.execute_script("return document.getElementById('player').src.startsWith('blob:')"))
    wait.until(ec.element_to_be_clickable((By.ID, "analyze"))).click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Report ready"))
    assert driver.find_element(By.ID, "emotion").text == "happiness"
    driver.find_element(By.ID, "chat-input").send_keys("What did the person say?")
    driver.find_element(By.ID, "chat-send").click()
    answer = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#chat-log .msg.answer")))
    assert "happy" in answer.text.lower()
