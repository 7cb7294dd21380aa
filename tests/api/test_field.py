"""The grid worker's phone page (/field) in a real browser: Debian's Chromium, headless,
at a phone's viewport (360 × 740), driving the real service with no internet. A worker
signs in with its key, records today's patrol, reports an event at the phone's location
(set through the browser's geolocation) and moves it along its path; the records are
then read back through the API and the command line. Screenshot in
test-artifacts/field.png."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gis_grid.cli import main
from gis_grid.events import adopt_events
from layers.store import open_store
from tests.api.server import running_service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="Chromium and chromedriver are missing (scripts/setup.sh --test installs them)")


@pytest.fixture(scope="module")
def svc(request, tmp_path_factory):
    with running_service("gpkg", request, tmp_path_factory.mktemp("field")) as running:
        with open_store(running.store_url) as store:
            store.write("events", adopt_events(store.read("events")))
        yield running


@pytest.fixture(scope="module")
def phone():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-extensions",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, "
                 "EXCLUDE 127.0.0.1", "--proxy-server=http://127.0.0.1:9"):
        options.add_argument(flag)
    options.add_experimental_option("mobileEmulation", {
        "deviceMetrics": {"width": 360, "height": 740, "pixelRatio": 2.0, "touch": True}})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(driver, script: str, what: str, seconds: float = 20) -> object:
    deadline = time.monotonic() + seconds
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} never happened; console: "
                        + json.dumps(driver.get_log("browser"), ensure_ascii=False))
        time.sleep(0.1)


def _status(driver) -> str:
    return driver.find_element("id", "status").text


def test_a_workers_day_on_the_phone(svc, phone):
    from selenium.webdriver.common.by import By

    grids = svc.sample.layers["grids"]
    grid = grids[grids["worker"] == svc.sample.worker_a].iloc[0]
    spot = grid.geometry.representative_point()
    phone.get(f"{svc.url}/field")
    assert "网格员工作台" in phone.title
    # The phone's position: where the worker stands, inside its grid.
    phone.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": svc.url, "permissions": ["geolocation"]})
    phone.execute_cdp_cmd("Emulation.setGeolocationOverride", {
        "latitude": spot.y, "longitude": spot.x, "accuracy": 10})

    phone.find_element(By.ID, "key").send_keys(svc.keys.worker_a)
    phone.find_element(By.ID, "signin-button").click()
    _wait(phone, "return window.field && window.field.ready", "signing in")
    assert phone.execute_script("return document.documentElement.scrollWidth") <= 360
    count = phone.find_element(By.ID, "grid-count").text
    assert count.startswith("我的网格") and not count.endswith(" 0 个")

    # Today's patrol, one tap.
    phone.find_element(By.ID, "patrol-button").click()
    _wait(phone, "return document.getElementById('status').className === 'ok' && "
                 "document.getElementById('status').textContent.indexOf('巡查') >= 0",
          "the patrol")
    # An event where the worker stands.
    phone.find_element(By.ID, "locate-button").click()
    _wait(phone, "return window.field.state.where", "the phone's location")
    phone.find_element(By.CSS_SELECTOR, "#kind option[value='general']").click()
    phone.find_element(By.CSS_SELECTOR, "#category option[value='市容管控']").click()
    phone.find_element(By.ID, "summary").send_keys("占道经营")
    phone.find_element(By.ID, "report-button").click()
    text = _wait(phone, "var s = document.getElementById('status').textContent; "
                        "return s.indexOf('已上报') === 0 && s", "the report")
    ident = re.search(r"EV-[0-9A-Za-z-]+", text).group(0)
    assert grid["code"] in text
    # Move it: accept (受理), then handle on site (现场处理).
    for action in ("accept", "handle"):
        _wait(phone, f"return document.querySelector(\"[data-id='{ident}'] "
                     f"button[data-action='{action}']\")", f"the {action} button")
        phone.find_element(By.CSS_SELECTOR,
                           f"[data-id='{ident}'] button[data-action='{action}']").click()
        _wait(phone, f"return document.getElementById('status').textContent.indexOf("
                     f"'{ident}') >= 0 && document.getElementById('status').className"
                     " === 'ok' && !document.querySelector(\"[data-id='" + ident +
                     f"'] button[data-action='{action}']\")", f"the {action} move")
    ARTIFACTS.mkdir(exist_ok=True)
    phone.save_screenshot(str(ARTIFACTS / "field.png"))
    errors = [e for e in phone.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors

    # Read back through the API ...
    event = svc.get(f"/collections/events/items/{ident}", svc.keys.worker_a).json()
    props = event["properties"]
    assert props["state"] == "handled_on_site" and props["version"] == 3
    assert props["category"] == "市容管控" and props["summary"] == "占道经营"
    assert props["grid"] == grid["code"] and props["reporter"] == svc.sample.worker_a
    # ... and the command line.
    listed = CliRunner().invoke(main, ["events", "show", ident, "--store", svc.store_url])
    assert listed.exit_code == 0, listed.output
    assert "accept" in listed.output and "handle" in listed.output
    with open_store(svc.store_url) as store:
        patrols = store.read("patrols")
    assert ((patrols["worker"] == svc.sample.worker_a)
            & (patrols["grid"] == grid["code"])).sum() == 1


def test_a_wrong_key_stays_on_the_sign_in(svc, phone):
    from selenium.webdriver.common.by import By

    phone.get(f"{svc.url}/field")
    phone.execute_script("sessionStorage.clear()")
    phone.get(f"{svc.url}/field")
    phone.find_element(By.ID, "key").send_keys("gg_000000000000.notarealkeynotarealkey")
    phone.find_element(By.ID, "signin-button").click()
    _wait(phone, "return document.getElementById('status').className === 'error'",
          "the refusal")
    assert "登录失败" in _status(phone)
    assert phone.find_element(By.ID, "work").get_attribute("class") == "hidden"
