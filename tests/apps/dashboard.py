"""Drives sup's dashboard in a real headless Chromium (Debian's chromium and
chromium-driver, with selenium from PyPI). Prints one `ok STEP` line per
step passed and exits 1 with the reason at the first that fails.

usage: dashboard.py loopback|wide URL TOKEN APP [SCREENSHOT.png]
"""

import sys

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

MODE, URL, TOKEN, APP = sys.argv[1:5]
SHOT = sys.argv[5] if len(sys.argv) > 5 else None
DEADLINE = 10


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1280,800"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def until(driver, what, cond):
    try:
        return WebDriverWait(driver, DEADLINE, poll_frequency=0.05).until(lambda d: cond(d))
    except TimeoutException:
        fail(f"{what}: not within {DEADLINE}s; page says: {driver.find_element(By.TAG_NAME, 'body').text!r}")


def fail(why):
    print(f"FAIL {why}", flush=True)
    sys.exit(1)


def row(driver):
    rows = driver.find_elements(By.CSS_SELECTOR, f'tr.app[data-app="{APP}"]')
    return rows[0] if rows else None


def cell(driver, name):
    r = row(driver)
    return r.find_element(By.CSS_SELECTOR, f"td.{name}").text if r else None


def click_action(driver, action):
    row(driver).find_element(By.CSS_SELECTOR, f'button[data-action="{action}"]').click()


def message(driver):
    m = driver.find_element(By.ID, "message")
    return m.text, "error" in (m.get_attribute("class") or "").split()


def on_loopback(driver):
    driver.get(URL)
    until(driver, "title", lambda d: d.title == "sup")
    print("ok loads", flush=True)

    until(driver, "the app online", lambda d: cell(d, "status") == "online")
    pid = cell(driver, "pid")
    if not pid.isdigit():
        fail(f"pid cell {pid!r}")
    print(f"ok shows {APP} pid {pid}", flush=True)

    until(driver, "figures", lambda d: cell(d, "memory") not in (None, "", "-"))
    print("ok figures", flush=True)

    row(driver).find_element(By.CSS_SELECTOR, "td.name").click()
    until(driver, "live logs", lambda d: "hello from the app" in d.find_element(By.ID, "logs").text)
    print("ok logs", flush=True)

    # No token: the click is refused and said so.
    click_action(driver, "restart")
    until(driver, "refusal shown", lambda d: message(d)[1] and "refused" in message(d)[0])
    print("ok refused without token", flush=True)

    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.ID, "save-token").click()
    click_action(driver, "restart")
    until(driver, "restart done", lambda d: not message(d)[1] and "done" in message(d)[0])
    until(driver, "a new pid", lambda d: cell(d, "status") == "online" and cell(d, "pid") not in (pid, "-"))
    until(driver, "new logs", lambda d: d.find_element(By.ID, "logs").text.count("hello from the app") >= 2)
    print(f"ok restarted to pid {cell(driver, 'pid')}", flush=True)
    if SHOT:
        driver.save_screenshot(SHOT)


def beyond_loopback(driver):
    """Nothing without the token, everything with it."""
    driver.get(URL)
    until(driver, "asked for the token", lambda d: "token" in message(d)[0] and message(d)[1])
    if row(driver) is not None:
        fail("apps shown beyond loopback without the token")
    driver.get(f"{URL}?token={TOKEN}")
    until(driver, "apps with the token", lambda d: cell(d, "status") == "online")
    print("ok beyond loopback needs the token", flush=True)


driver = browser()
try:
    on_loopback(driver) if MODE == "loopback" else beyond_loopback(driver)
finally:
    driver.quit()
