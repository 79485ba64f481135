"""The web page in a real browser: Debian's headless Chromium, driven by Selenium through
Debian's chromedriver (nothing is downloaded), against the server of ``pipeline.serve``.

upload → the damage found is shown → a brush stroke → Repair → download the result and the mask,
and the downloaded result is checked: the photo's size, and every pixel outside the mask that was
used is the photo's own. ``--screenshot=docs/web-page.png`` also writes the README's picture.
"""

import shutil
import socket
import threading
import time

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from data.damage import Damage
from data.io import load_image, to_pixels
from pipeline.inference.inpainter import BlindInpainter
from pipeline.web.server import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "no Chromium or chromedriver on PATH: install Debian's chromium and chromium-driver (.ci/run does)",
        allow_module_level=True,
    )

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server():
    """The app of ``python -m pipeline.serve`` with the shipped model, on a free loopback port."""
    import uvicorn

    app = create_app(lambda: BlindInpainter.from_pretrained())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,860"):
        options.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


def damaged_photo(path):
    """A bundled photo (512 × 288) with a caption of the project's synthetic damage over it: a kind
    the shipped model finds (IoU 0.85 on this one)."""
    corrupted, _ = Damage("text")(load_image(ROOT / "data" / "photos" / "lomiri_bridge.jpg"), np.random.default_rng(1))
    image = to_pixels(corrupted.permute(1, 2, 0).numpy(), np.uint8)
    Image.fromarray(image).save(path)
    return image


def wait_for_state(driver, *states, timeout=120):
    def reached(d):
        return d.execute_script("return document.body.dataset.state") in states

    WebDriverWait(driver, timeout, poll_frequency=0.1).until(reached)
    return driver.execute_script("return document.body.dataset.state")


def painted_pixels(driver) -> int:
    return driver.execute_script(
        """const c = document.getElementById('overlay');
           const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
           let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;"""
    )


def wait_for_file(folder, suffix, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in folder.iterdir() if p.name.endswith(suffix) and not p.name.endswith(".crdownload")]
        if done:
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no *{suffix} was downloaded into {folder}: {sorted(p.name for p in folder.iterdir())}")


def test_upload_correct_repair_and_download(server, browser, tmp_path, request):
    photo = tmp_path / "bridge.png"
    original = damaged_photo(photo)
    browser.get(server)
    assert wait_for_state(browser, "empty", timeout=20) == "empty"
    browser.find_element(By.ID, "file-input").send_keys(str(photo))
    assert wait_for_state(browser, "ready", "error") == "ready", browser.find_element(By.ID, "error").text

    overlay = browser.find_element(By.ID, "overlay")
    assert overlay.is_displayed()
    view = browser.execute_script("const c = arguments[0]; return [c.width, c.height];", overlay)
    assert view == [512, 288]
    found = painted_pixels(browser)
    assert found > 0, "the damage found is not on the overlay"

    # the soft mask as a heat map, and back (keyboard: H)
    ActionChains(browser).send_keys("h").perform()
    assert browser.find_element(By.ID, "heat").is_displayed() and not overlay.is_displayed()
    ActionChains(browser).send_keys("h").perform()
    assert overlay.is_displayed() and not browser.find_element(By.ID, "heat").is_displayed()
    # masked mode starts from an empty mask; undo (Ctrl+Z) brings the damage found back
    Select(browser.find_element(By.ID, "mode")).select_by_value("masked")
    WebDriverWait(browser, 10).until(lambda d: painted_pixels(d) == 0)
    ActionChains(browser).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()
    assert painted_pixels(browser) == found
    # denoise mode starts from the soft mask already received: no second analysis
    Select(browser.find_element(By.ID, "mode")).select_by_value("denoise")
    WebDriverWait(browser, 10).until(lambda d: painted_pixels(d) != found)
    Select(browser.find_element(By.ID, "mode")).select_by_value("blind")
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.body.dataset.state") == "ready")
    assert painted_pixels(browser) == found
    analyses = "return performance.getEntriesByType('resource').filter(e => e.name.endsWith('/api/mask')).length"
    assert browser.execute_script(analyses) == 1

    # a brush stroke across an untouched corner of the photo
    browser.find_element(By.ID, "tool-brush").click()
    size = browser.find_element(By.ID, "brush-size")
    browser.execute_script(
        "arguments[0].value = 12; arguments[0].dispatchEvent(new Event('input', {bubbles: true}))", size
    )
    box = overlay.rect
    start_x, start_y = -box["width"] * 0.4, box["height"] * 0.35
    ActionChains(browser).move_to_element_with_offset(overlay, start_x, start_y).click_and_hold().move_by_offset(
        60, 0
    ).move_by_offset(40, -10).release().perform()
    after_stroke = painted_pixels(browser)
    assert after_stroke > found + 500, (found, after_stroke)
    browser.find_element(By.ID, "undo").click()
    assert painted_pixels(browser) == found
    browser.find_element(By.ID, "redo").click()
    assert painted_pixels(browser) == after_stroke

    browser.find_element(By.ID, "repair").click()
    assert wait_for_state(browser, "done", "error") == "done", browser.find_element(By.ID, "error").text
    assert browser.find_element(By.ID, "compare").is_displayed()
    slider = browser.find_element(By.ID, "compare-slider")
    browser.execute_script(
        "arguments[0].value = 50; arguments[0].dispatchEvent(new Event('input', {bubbles: true}))", slider
    )

    screenshot = request.config.getoption("--screenshot")
    if screenshot:  # the whole page, from the top
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1280, min(max(860, height), 1600))
        browser.execute_script("window.scrollTo(0, 0); for (const e of document.querySelectorAll('*')) e.scrollTop = 0")
        time.sleep(0.3)
        (ROOT / screenshot).parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ROOT / screenshot))

    browser.find_element(By.ID, "download-result").click()
    result_file = wait_for_file(browser.downloads, "_repaired.png")
    browser.find_element(By.ID, "download-mask").click()
    mask_file = wait_for_file(browser.downloads, "_mask.png")
    result = np.asarray(Image.open(result_file).convert("RGB"))
    mask = np.asarray(Image.open(mask_file).convert("L"))
    assert result.shape == original.shape and mask.shape == original.shape[:2]
    assert np.array_equal(result[mask == 0], original[mask == 0])  # outside the final mask: untouched
    assert not np.array_equal(result[mask == 255], original[mask == 255])
    assert (mask > 0).sum() >= after_stroke * 0.9  # the mask sent is the one drawn (the view is full size here)


def test_a_mask_file_becomes_the_hole_and_one_of_another_size_is_explained(server, browser, tmp_path):
    """Load a mask file (white = hole) for the photo: the page switches to masked mode with that
    hole, repairs it, and a mask of another size is refused on the page, saying both sizes."""
    photo = tmp_path / "bridge.png"
    damaged_photo(photo)
    height, width = np.asarray(Image.open(photo)).shape[:2]
    hole = np.zeros((height, width), np.uint8)
    hole[height // 4 : height // 2, width // 4 : width // 2] = 255
    Image.fromarray(hole).save(tmp_path / "bridge_mask.png")
    Image.fromarray(hole[: height // 2]).save(tmp_path / "small_mask.png")
    browser.get(server)
    browser.find_element(By.ID, "file-input").send_keys(str(photo))
    assert wait_for_state(browser, "ready", "error") == "ready", browser.find_element(By.ID, "error").text
    browser.find_element(By.ID, "mask-file").send_keys(str(tmp_path / "small_mask.png"))
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert f"{width} × {height // 2}, the photo {width} × {height}" in browser.find_element(By.ID, "error").text
    browser.find_element(By.ID, "mask-file").send_keys(str(tmp_path / "bridge_mask.png"))
    WebDriverWait(browser, 10).until(
        lambda d: Select(d.find_element(By.ID, "mode")).first_selected_option.text.startswith("masked")
    )
    overlay = browser.find_element(By.ID, "overlay")
    view_w, view_h = browser.execute_script("const c = arguments[0]; return [c.width, c.height];", overlay)
    expected = (hole > 0).mean() * view_w * view_h
    assert abs(painted_pixels(browser) - expected) < 0.05 * expected
    browser.find_element(By.ID, "repair").click()
    assert wait_for_state(browser, "done", "error") == "done", browser.find_element(By.ID, "error").text


def test_zoom_and_pan_keep_the_brush_on_the_pixel_under_it(server, browser, tmp_path):
    """The wheel zooms in where the pointer is, Space+drag moves the zoomed photo, 0 shows it whole
    again; a click paints the canvas pixel under the pointer whatever the zoom."""
    photo = tmp_path / "bridge.png"
    damaged_photo(photo)
    browser.get(server)
    browser.find_element(By.ID, "file-input").send_keys(str(photo))
    assert wait_for_state(browser, "ready", "error") == "ready", browser.find_element(By.ID, "error").text
    Select(browser.find_element(By.ID, "mode")).select_by_value("masked")  # an empty mask to paint on
    WebDriverWait(browser, 10).until(lambda d: painted_pixels(d) == 0)
    stage = browser.find_element(By.ID, "stage")
    box = stage.rect
    zoom = "return getComputedStyle(document.getElementById('layers')).transform"
    for _ in range(3):  # three notches at the stage's centre: 1.25³
        browser.execute_script(
            "const r = arguments[0].getBoundingClientRect(); arguments[0].dispatchEvent(new WheelEvent('wheel', {"
            "deltaY: -100, clientX: r.left + r.width / 2, clientY: r.top + r.height / 2, bubbles: true, "
            "cancelable: true}))",
            stage,
        )
    scale = float(browser.execute_script(zoom).split("(")[1].split(",")[0])
    assert abs(scale - 1.25**3) < 1e-3
    browser.find_element(By.ID, "tool-brush").click()
    # a click a quarter of the stage right of its centre lands on the canvas pixel there, zoomed
    ActionChains(browser).move_to_element_with_offset(stage, box["width"] / 4, 0).click().perform()
    overlay = browser.find_element(By.ID, "overlay")
    width, height = browser.execute_script("const c = arguments[0]; return [c.width, c.height];", overlay)
    expected_x = width / 2 + (width / 4) / scale
    alpha = browser.execute_script(
        "const c = arguments[0].getContext('2d'); return c.getImageData(arguments[1], arguments[2], 1, 1).data[3];",
        overlay, round(expected_x), round(height / 2),
    )  # fmt: skip
    assert alpha > 0, "the dot is not under the pointer"
    # Space + drag pans; 0 shows the whole photo again
    ActionChains(browser).move_to_element(stage).key_down(Keys.SPACE).click_and_hold().move_by_offset(
        -40, 0
    ).release().key_up(Keys.SPACE).perform()
    moved = browser.execute_script(zoom)
    assert float(moved.split(",")[4]) != 0 or float(moved.split(",")[5].rstrip(")")) != 0
    ActionChains(browser).send_keys("0").perform()
    assert browser.execute_script(zoom) in ("none", "matrix(1, 0, 0, 1, 0, 0)")


def test_a_file_that_is_not_an_image_is_explained_on_the_page(server, browser, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    browser.get(server)
    wait_for_state(browser, "empty", timeout=20)
    browser.find_element(By.ID, "file-input").send_keys(str(text))
    assert wait_for_state(browser, "error") == "error"
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed() and "notes.png is not an image this server can read" in error.text
