"""Drives the page of a running `paella serve` in headless Chromium (Debian's chromium and chromium-driver, through
selenium): types the API key and a prompt, generates and waits for the image, uploads an image in the inpaint tab,
paints a mask with the mouse, inpaints and waits for that result; checks that live previews came, that no error
or console message showed, and that a phone-width window has no horizontal overflow. Saves a screenshot.
Any failed step exits with a message naming it.
    python check_page.py BASE_URL API_KEY IMAGE.png SCREENSHOT.png
"""
import contextlib
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

base, key, image_path, screenshot = sys.argv[1:5]


def fail(message):
    raise SystemExit(f"page check failed: {message}")


@contextlib.contextmanager
def step(name):
    """Runs one step; any exception ends the check with the step's name, the page's error box and console."""
    started = time.monotonic()
    try:
        yield
    except SystemExit:
        raise
    except Exception as error:  # selenium's timeouts and lookups, assertions
        shown = ""
        with contextlib.suppress(Exception):
            box = driver.find_element(By.ID, "error")
            if box.is_displayed():
                shown = f"; the page shows: {box.text!r}"
        fail(f"{name}: {type(error).__name__}: {str(error).strip() or 'no detail'}{shown}; console: {console()}")
    print(f"page: {name} ({time.monotonic() - started:.1f} s)")


def console():
    """The page's console errors and warnings so far (Chromium's own verbose notes left out)."""
    with contextlib.suppress(Exception):
        return [entry["message"] for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    return []


def wait(condition, seconds=180):
    return WebDriverWait(driver, seconds, poll_frequency=0.2).until(lambda d: condition())


def error_text():
    box = driver.find_element(By.ID, "error")
    return box.text if box.is_displayed() else None


def finished_cards():
    """Cards whose images have all loaded and decoded (naturalWidth > 0); an error shown ends the wait."""
    if error_text():
        raise AssertionError(f"the page shows an error: {error_text()!r}")
    return driver.execute_script("""
        return [...document.querySelectorAll('#gallery .card')].filter(card => {
            const images = [...card.querySelectorAll('img')];
            return images.length > 0 && images.every(img => img.complete && img.naturalWidth > 0);
        }).map(card => card.dataset.mode);""")


def overflow():
    """How many CSS pixels the page is wider than the window (0: no horizontal scrolling)."""
    return driver.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")


options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,860", "--hide-scrollbars"]:
    options.add_argument(argument)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
try:
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
except Exception as error:
    fail(f"cannot start headless Chromium through /usr/bin/chromedriver: {error}")

try:
    with step("open the page and type the API key"):
        driver.get(base + "/")
        wait(lambda: driver.find_element(By.ID, "key").is_displayed(), 10)  # the server has a key: the page asks for it
        driver.find_element(By.ID, "key").send_keys(key)
        driver.find_element(By.ID, "key-toggle").click()  # stored; the panel closes

    with step("generate from a prompt"):
        prompt = driver.find_element(By.ID, "prompt")
        prompt.send_keys("a large red circle at the top left on a white background")
        driver.find_element(By.ID, "seed").send_keys("1")
        count = driver.find_element(By.ID, "n")
        count.clear()
        count.send_keys("4")
        driver.find_element(By.ID, "run").click()
        wait(lambda: finished_cards() == ["generate"])
        previews = driver.execute_script("return Number(document.getElementById('preview').dataset.steps || 0)")
        assert previews > 0, "no step preview reached the page"
        print(f"page: {previews} live previews")

    with step("upload an image in the inpaint tab"):
        driver.find_element(By.CSS_SELECTOR, '[data-mode="inpaint"]').click()
        driver.find_element(By.ID, "upload").send_keys(image_path)
        wait(lambda: driver.execute_script("return document.getElementById('stage').dataset.loaded === 'true'"), 10)

    with step("paint a mask stroke with the mouse"):
        driver.find_element(By.ID, "brush").send_keys(Keys.END)  # the widest brush
        mask = driver.find_element(By.ID, "mask")
        width = mask.size["width"]
        # A zigzag over the lower right quarter (offsets are from the canvas's centre).
        (ActionChains(driver).move_to_element_with_offset(mask, width // 10, width // 8).click_and_hold()
         .move_by_offset(width // 4, 0).move_by_offset(-width // 4, width // 8).move_by_offset(width // 4, 0)
         .move_by_offset(-width // 4, width // 8).move_by_offset(width // 4, 0).release().perform())
        painted = driver.execute_script("""
            const c = document.getElementById('mask');
            const a = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < a.length; i += 4) if (a[i] > 0) n++;
            return n / (c.width * c.height);""")
        assert 0.05 < painted < 0.6, f"the stroke covers {painted:.1%} of the mask"
        print(f"page: the stroke covers {painted:.0%} of the image")

    with step("inpaint"):
        prompt = driver.find_element(By.ID, "prompt")
        prompt.clear()
        prompt.send_keys("a large blue square at the bottom right on a white background")
        count = driver.find_element(By.ID, "n")
        count.clear()
        count.send_keys("1")
        driver.find_element(By.ID, "run").click()
        wait(lambda: finished_cards() == ["inpaint", "generate"])

    with step("show no error and log no error or warning to the console"):
        assert error_text() is None, error_text()
        messages = console()
        assert not messages, f"console messages: {messages}"

    with step("save the screenshot"):
        driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.3)
        driver.save_screenshot(screenshot)

    with step("fit a phone-width window (390 px) without horizontal scrolling"):
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
        for mode in ["inpaint", "outpaint", "interpolate", "generate"]:
            driver.find_element(By.CSS_SELECTOR, f'[data-mode="{mode}"]').click()
            time.sleep(0.2)
            assert overflow() <= 0, f"the {mode} tab is {overflow()} px wider than a 390 px screen"
finally:
    driver.quit()
print("page: ok")
