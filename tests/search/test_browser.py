"""A real headless browser (Debian's ``chromium`` + ``chromium-driver``, driven by selenium) loads the search
page, types a query and sees ranked moments; "more like this" leads to another page of moments.

Skipped without them. To run it: ``apt-get install chromium chromium-driver``, ``pip install 'tvts[browser]'``,
then ``pytest tests/search/test_browser.py``."""

from __future__ import annotations

import shutil
import threading

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install 'tvts[browser]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def page_server(small_index, tiny_model):
    from tvts.search.serve import SearchApp, make_server

    srv = make_server(SearchApp(small_index, model=tiny_model[0]), "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_type_a_query_and_see_moments(page_server, browser, small_index, tiny_model):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from tvts.search.query import SearchIndex

    names = set(SearchIndex(small_index).by_name)
    browser.get(page_server + "/")
    assert browser.find_elements(By.CSS_SELECTOR, "li.moment") == []
    box = browser.find_element(By.ID, "q")
    box.send_keys("the red square moves left")
    box.send_keys(Keys.ENTER)
    WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, "li.moment")))
    cards = browser.find_elements(By.CSS_SELECTOR, "li.moment")
    from tvts.search.query import text_query

    want = SearchIndex(small_index).search(text_query(tiny_model[0], "the red square moves left"), 10)  # the page's k
    assert [c.find_element(By.CSS_SELECTOR, ".name").text for c in cards] == [w.video for w in want]
    assert browser.find_element(By.ID, "q").get_attribute("value") == "the red square moves left"
    assert "the red square moves left" in browser.find_element(By.ID, "heading").text
    first = cards[0]
    assert first.find_element(By.CSS_SELECTOR, ".name").text in names
    video = first.find_element(By.TAG_NAME, "video")
    assert "#t=" in video.get_attribute("src") and "/video/" in video.get_attribute("src")
    # the poster (thumbnail) really loads as an image in the page (the page's policy allows images from itself)
    width = browser.execute_async_script(
        "const done = arguments[arguments.length - 1]; const img = new Image();"
        "img.onload = () => done(img.naturalWidth); img.onerror = () => done(-1); img.src = arguments[0];",
        video.get_attribute("poster"))
    assert width > 0
    # the video element starts at the moment (media fragment #t=start,end), over HTTP range requests
    start = float(video.get_attribute("src").split("#t=")[1].split(",")[0])
    got = browser.execute_async_script(
        "const done = arguments[arguments.length - 1]; const v = arguments[0];"
        "v.addEventListener('loadedmetadata', () => done([v.currentTime, v.duration]));"
        "v.addEventListener('error', () => done(['error', v.error && v.error.code]));"
        "v.preload = 'metadata'; v.load();", video)
    assert got[0] == pytest.approx(start, abs=0.3) and got[1] > start, got
    scores = [float(c.find_element(By.CSS_SELECTOR, ".score").text) for c in cards]
    assert scores == sorted(scores, reverse=True)

    first.find_element(By.CSS_SELECTOR, "a.more").click()
    WebDriverWait(browser, 30).until(EC.text_to_be_present_in_element((By.ID, "heading"), "Moments like"))
    assert browser.find_elements(By.CSS_SELECTOR, "li.moment")
