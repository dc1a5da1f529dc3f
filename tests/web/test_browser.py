"""The dashboard in a real headless Chromium (Debian's chromium + chromium-driver, driven by
selenium through /usr/bin/chromedriver; nothing is downloaded).

The AM runs on the real cheroot server in plain-HTTP proxy mode (127.0.0.1 is the trusted
proxy), so the browser logs in with the token through the login form. Every page must load,
the slice page's inline SVG must show the provisioned nodes and links (queried in the DOM and
rendered with a size), and the browser console must stay free of errors (CSP violations,
failed loads, ...). A screenshot of the slice page is saved in the test's tmp dir.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from am.app import create_app
from am.server import AmServer, ServerOptions
from tests.conftest import require_tool
from tests.web.populate import TOKEN

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1280,1000")


@pytest.fixture
def served(populated):
    settings = populated.settings.replace(trusted_proxies=("127.0.0.1",), proxy_mode=True)
    app = create_app(settings, populated.service, populated.authorizer, behind_proxy=True,
                     call_log=False)
    server = AmServer(app, ServerOptions(host="127.0.0.1", port=0, threads=4, tls=False))
    server.start()
    yield server.url.rstrip("/")
    server.stop()


@pytest.fixture
def browser(tmp_path, monkeypatch):
    chromium = require_tool("chromium")
    chromedriver = require_tool("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed in the venv (pip install selenium)")
    monkeypatch.setenv("SE_OFFLINE", "true")          # never let selenium-manager download
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver,
                                              log_output=str(tmp_path / "chromedriver.log")),
                              options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def console_errors(driver) -> list[dict]:
    """Browser console entries at SEVERE level since the last call (the log is drained)."""
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def test_dashboard_in_headless_chromium(served, browser, populated, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    base = f"{served}/dashboard"
    # not logged in: the 403 explanation (the failed load itself is a console error)
    browser.get(f"{base}/")
    assert "Not allowed" in browser.find_element(By.TAG_NAME, "h1").text
    browser.get_log("browser")

    browser.get(f"{base}/login")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "login-button").click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url != f"{base}/login")
    assert browser.current_url == f"{base}/", browser.page_source
    assert browser.find_element(By.TAG_NAME, "h1").text == "Overview"
    assert browser.find_element(By.ID, "live-slivers").text == "7"
    cookie = browser.get_cookie("geni_am_dashboard")
    assert cookie and cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert console_errors(browser) == []

    for path, heading in (("/slices", "Slices"), ("/failures", "Recent failures"),
                          ("/audit", "Audit log"), ("/audit?page=2", "Audit log")):
        browser.get(base + path)
        assert browser.find_element(By.TAG_NAME, "h1").text == heading, path
        assert console_errors(browser) == [], path

    browser.get(f"{base}/failures")
    reasons = [e.text for e in browser.find_elements(By.CSS_SELECTOR,
                                                     "#failed-slivers td.error")]
    assert reasons == ["injected failure in fake provision"]

    # the slice page: the picture shows what was provisioned
    browser.get(f"{base}/slices")
    browser.find_element(By.LINK_TEXT, "urn:publicid:IDN+geni-am:test:sa+slice+demo").click()
    demo_url = f"{base}/slices/{populated.slice_ids['demo']}"
    WebDriverWait(browser, 10).until(lambda d: d.current_url == demo_url)
    svg = browser.find_element(By.CSS_SELECTOR, "#topology svg")
    assert svg.size["width"] > 300 and svg.size["height"] > 300
    nodes = browser.find_elements(By.CSS_SELECTOR, "#topology svg g.node")
    assert {n.get_attribute("data-client-id") for n in nodes} == {"vm1", "ct1", "fpga1"}
    assert {n.get_attribute("data-state") for n in nodes} == {"geni_ready"}
    for n in nodes:
        shape = n.find_element(By.CSS_SELECTOR, ".shape")
        assert shape.size["width"] > 10 and shape.size["height"] > 10   # actually rendered
        assert shape.get_attribute("fill") == "#2e9d4f"
    links = browser.find_elements(By.CSS_SELECTOR, "#topology svg g.link")
    assert {l.get_attribute("data-client-id") for l in links} == {"p2p", "lan0"}
    capacities = [t.text for t in browser.find_elements(By.CSS_SELECTOR,
                                                        "#topology svg text.capacity")]
    assert capacities == ["100 Mb/s"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#topology svg g.link circle.hub")) == 1
    # the stylesheet applied (the CSP allowed it): badges are coloured
    badge = browser.find_element(By.CSS_SELECTOR, "#slivers .badge.state-ready")
    assert badge.value_of_css_property("background-color") in ("rgba(46, 157, 79, 1)",
                                                               "rgb(46, 157, 79)")
    shot = tmp_path / "slice-demo.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    keep = os.environ.get("GENI_AM_DASHBOARD_SCREENSHOT")
    if keep:
        Path(keep).write_bytes(shot.read_bytes())
    assert console_errors(browser) == []

    # the hostile slice: markup in a client_id stays text
    browser.get(f"{base}/slices/{populated.slice_ids['hostile']}")
    (hostile,) = browser.find_elements(By.CSS_SELECTOR, "#topology svg g.node")
    assert hostile.get_attribute("data-client-id").startswith("<script>")
    assert browser.find_elements(By.TAG_NAME, "script") == []
    assert console_errors(browser) == []

    # logging out ends the session
    browser.find_element(By.CSS_SELECTOR, "header form button").click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url == f"{base}/login")
    assert browser.get_cookie("geni_am_dashboard") is None
    browser.get(f"{base}/slices")
    assert "Not allowed" in browser.find_element(By.TAG_NAME, "h1").text
